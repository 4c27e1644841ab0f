package embedded

import (
	"io"
	"strings"
	"testing"
)

// A second process on the same data directory is refused until the first
// stops (flock locks are per open file, so a second Start in this process
// stands for it).
func TestStartLocksTheDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(dir, io.Discard); err == nil || !strings.Contains(err.Error(), "in use by another kapfhir process") {
		t.Fatalf("second Start on the same dir: %v, want in use", err)
	}
	s.Close()
	s, err = Start(dir, io.Discard)
	if err != nil {
		t.Fatalf("Start after Close: %v", err)
	}
	s.Close()
}
