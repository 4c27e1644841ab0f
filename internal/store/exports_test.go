package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// TestExportChunks: a chunk written again replaces the first one (a
// resumed runner redoes its last batch), and deleting a job removes its
// chunks, those written past its saved count included.
func TestExportChunks(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	job := &store.ExportJob{ID: "j1", Level: store.ExportSystem, TransactionTime: now, Created: now}
	if err := s.CreateExport(ctx, job); err != nil {
		t.Fatal(err)
	}
	for n, data := range []string{"a\n", "b\n", "c\n"} {
		if err := s.PutChunk(ctx, "j1", int64(n), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutChunk(ctx, "j1", 1, []byte("B\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Chunk(ctx, "j1", 1); err != nil || string(got) != "B\n" {
		t.Errorf("chunk 1 = %q, %v; want the rewritten one", got, err)
	}
	// The saved job knows one chunk; two more were written after it.
	claimed, err := s.ClaimExport(ctx, "j1", "me", now, now.Add(time.Minute))
	if err != nil || claimed == nil {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	if other, err := s.ClaimExport(ctx, "j1", "other", now, now.Add(time.Minute)); err != nil || other != nil {
		t.Errorf("a second owner claimed a held job: %v, %v", other, err)
	}
	claimed.Chunks = 1
	if ok, err := s.SaveExport(ctx, claimed); err != nil || !ok {
		t.Fatalf("save: %v, %v", ok, err)
	}
	gone, err := s.DeleteExport(ctx, "j1")
	if err != nil || gone == nil || gone.Chunks != 1 {
		t.Fatalf("delete: %+v, %v", gone, err)
	}
	for n := range int64(3) {
		if _, err := s.Chunk(ctx, "j1", n); !fault.Is(err, fault.NotFound) {
			t.Errorf("chunk %d after delete: %v, want not found", n, err)
		}
	}
	if _, err := s.Export(ctx, "j1"); !fault.Is(err, fault.NotFound) {
		t.Errorf("job after delete: %v, want not found", err)
	}
	if ok, err := s.SaveExport(ctx, claimed); err != nil || ok {
		t.Errorf("save after delete: %v, %v; want not saved", ok, err)
	}
	if again, err := s.DeleteExport(ctx, "j1"); err != nil || again != nil {
		t.Errorf("delete again: %+v, %v; want nothing", again, err)
	}
}
