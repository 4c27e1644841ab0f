package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestImportOperation posts NDJSON to $import: resources are stored under
// their ids, conditional references resolved, bad lines reported by line
// number with their expression, and the CapabilityStatement lists it.
func TestImportOperation(t *testing.T) {
	e := newEnv(t)
	body := strings.Join([]string{
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient?identifier=urn:mrn|1"}}`,
		`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"1"}],"multipleBirthInteger":2}`,
		`{"resourceType":"Patient","id":"p2","birthDate":"soon"}`,
		``,
	}, "\n")
	ndjson := []string{"Content-Type", "application/fhir+ndjson"}
	r := e.do("POST", "/fhir/$import", body, ndjson...)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got []string
	for _, is := range r.json(t)["issue"].([]any) {
		m := is.(map[string]any)
		s := m["severity"].(string) + " " + m["diagnostics"].(string)
		if x, ok := m["expression"].([]any); ok {
			s += " @" + x[0].(string)
		}
		got = append(got, s)
	}
	want := []string{
		"information Encounter: 1 lines, 1 created, 0 updated, 0 unchanged, 0 failed",
		"information Patient: 2 lines, 1 created, 0 updated, 0 unchanged, 1 failed",
	}
	if len(got) != 3 || !strings.HasPrefix(got[2], "error line 3: ") || !strings.HasSuffix(got[2], "@Patient.birthDate") {
		t.Errorf("issues %q: want a third for line 3 at Patient.birthDate", got)
	} else if d := cmp.Diff(want, got[:2]); d != "" {
		t.Errorf("issues (-want +got):\n%s", d)
	}
	if r := e.get("/fhir/Encounter/e1"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"subject":{"reference":"Patient/p1"}`) {
		t.Errorf("Encounter/e1: %d %s", r.status, r.body)
	}
	// Again: nothing changes.
	r = e.do("POST", "/fhir/$import", body, ndjson...)
	if !strings.Contains(string(r.body), "Encounter: 1 lines, 0 created, 0 updated, 1 unchanged, 0 failed") {
		t.Errorf("re-import: %s", r.body)
	}
	if r := e.do("POST", "/fhir/$import", body); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("$import with a JSON body: %d, want 415", r.status)
	}
	if r := e.get("/fhir/metadata"); !strings.Contains(string(r.body), `"operation":[{"name":"import","definition":"`) {
		t.Errorf("the CapabilityStatement does not list $import: %s", r.body)
	}
}
