package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestImportCommand runs `kapfhir import DIR` as an operator would: it loads
// the files into the embedded store and prints a summary without patient
// data; a server then serves what was imported, and while it runs a second
// import on the same data directory is refused.
func TestImportCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if runtime.GOOS == "windows" {
		t.Skip("the data directory lock needs flock")
	}
	bin := buildBinary(t)
	family := "Zqximport" + randomHex(4)
	dir := t.TempDir()
	files := map[string]string{
		"Patient.000.ndjson": `{"resourceType":"Patient","id":"imp1","identifier":[{"system":"urn:mrn","value":"m1"}],"name":[{"family":"` + family + `"}]}` + "\n" +
			`{"resourceType":"Patient","id":"imp2","name":[{"family":"` + family + `"}],"colour":"` + family + `"}` + "\n",
		"Encounter.000.ndjson": `{"resourceType":"Encounter","id":"enc1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient?identifier=urn:mrn|m1"}}` + "\n",
		"log.ndjson":           `{"eventId":"kickoff"}` + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := childEnv("KAPFHIR_HTTP_ADDR=127.0.0.1:0", "KAPFHIR_DATA_DIR="+t.TempDir(), "KAPFHIR_LOG_LEVEL=info")
	importCmd := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "import", dir)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := importCmd()
	// One bad line: the import finishes and exits with an error status.
	if err == nil || !strings.Contains(out, "1 lines were not imported") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s*Encounter\s+1\s+1\s+0\s+0\s+0\s*$`),
		regexp.MustCompile(`(?m)^\s*Patient\s+2\s+1\s+0\s+0\s+1\s*$`),
		regexp.MustCompile(`(?m)^skipped log\.ndjson`),
		regexp.MustCompile(`(?m)^Patient\.000\.ndjson line 2: structure at Patient\.colour$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("summary lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, family) {
		t.Errorf("the summary contains patient data:\n%s", out)
	}

	p := startBinary(t, bin, env)
	listening := p.waitLog(t, "kapfhir listening", 2*time.Minute)
	c := &client{t: t, base: "http://" + listening["addr"].(string), http: &http.Client{Timeout: 30 * time.Second}}
	_, b := c.expect("GET", "/fhir/Encounter/enc1", nil, "", http.StatusOK)
	if !strings.Contains(string(b), `"subject":{"reference":"Patient/imp1"}`) {
		t.Errorf("the imported encounter's conditional reference was not resolved: %s", b)
	}
	out, err = importCmd()
	if err == nil || !strings.Contains(out, "in use by another kapfhir process") {
		t.Errorf("import while a server runs on the data directory: %v\n%s", err, out)
	}
}
