package httpapi_test

import (
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Export everything, import it into an empty store: the contents are the
// same (acceptance 3 of the bulk data issue). The data are the export
// tests' resources and a Synthea patient stored by a transaction, so
// references between types make the trip too.
func TestExportImportRoundTrip(t *testing.T) {
	src := newEnv(t)
	src.loadExportData()
	bundle, err := os.ReadFile("../../testdata/synthea/Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json")
	if err != nil {
		t.Fatal(err)
	}
	if r := src.do("POST", "/fhir", string(bundle)); r.status != http.StatusOK {
		t.Fatalf("transaction: %d %.500s", r.status, r.body)
	}
	exported := exportAll(src)

	dst := newEnv(t)
	var body strings.Builder
	n := 0
	for _, typ := range slices.Sorted(maps.Keys(exported)) {
		for _, line := range exported[typ] {
			body.WriteString(line + "\n")
			n++
		}
	}
	r := dst.do("POST", "/fhir/$import", body.String(), "Content-Type", "application/fhir+ndjson")
	if r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	for _, is := range r.json(t)["issue"].([]any) {
		if sev := is.(map[string]any)["severity"]; sev != "information" {
			t.Errorf("import issue: %v", is)
		}
	}
	if n < 70 {
		t.Fatalf("only %d resources exported", n)
	}

	imported := exportAll(dst)
	if diff := cmp.Diff(slices.Sorted(maps.Keys(exported)), slices.Sorted(maps.Keys(imported))); diff != "" {
		t.Fatalf("types (-exported +imported):\n%s", diff)
	}
	for typ, lines := range exported {
		if len(imported[typ]) != len(lines) {
			t.Errorf("%s: %d exported, %d after the import", typ, len(lines), len(imported[typ]))
		}
		for id, line := range lines {
			got, ok := imported[typ][id]
			if !ok {
				t.Errorf("%s/%s is missing after the import", typ, id)
				continue
			}
			// The importing server gives its own version and time.
			if diff := cmp.Diff(withoutServerMeta(t, []byte(line)), withoutServerMeta(t, []byte(got))); diff != "" {
				t.Errorf("%s/%s differs (-exported +imported):\n%s", typ, id, diff)
			}
		}
	}
}

// exportAll runs a system export of e to the end and returns its lines by
// type and id.
func exportAll(e *env) map[string]map[string]string {
	e.t.Helper()
	status := e.kickoff("GET", "/fhir/$export", "")
	e.runExports()
	return e.exported(status, true)
}
