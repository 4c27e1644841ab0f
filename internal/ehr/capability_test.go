package ehr

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/golden"
)

// fhirServer serves testdata/capability-epic.json at /metadata.
func fhirServer(t *testing.T) *httptest.Server {
	t.Helper()
	cs, err := os.ReadFile("testdata/capability-epic.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fhir/metadata" || r.Header.Get("Accept") != "application/fhir+json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
		_, _ = w.Write(cs)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDiscover reads an Epic-like CapabilityStatement (mapping spec §13):
// the profile is in testdata/capability-epic.profile.json.
func TestDiscover(t *testing.T) {
	srv := fhirServer(t)
	p, err := Discover(t.Context(), srv.Client(), srv.URL+"/fhir")
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/capability-epic.profile.json", string(out)+"\n")

	// The facts §13 states, independently of the golden file.
	for _, tc := range []struct {
		typ                          string
		create, update, identifierSP bool
	}{
		{"Observation", true, true, true},
		{"DocumentReference", true, true, true},
		{"Condition", true, false, true},
		{"Encounter", false, false, true}, // read/search only; its client-mode create is ignored
		{"MedicationAdministration", false, false, false},
		{"EpisodeOfCare", false, false, false},
		{"Consent", false, false, false},
		{"Subscription", false, false, false}, // not exposed
	} {
		c := p[tc.typ]
		if c.Create != tc.create || c.Update != tc.update || c.Searches("identifier") != tc.identifierSP || c.ConditionalCreate || c.ConditionalUpdate {
			t.Errorf("%s: %+v, want create %v update %v identifier search %v, no conditional writes", tc.typ, c, tc.create, tc.update, tc.identifierSP)
		}
	}
}

func TestMerge(t *testing.T) {
	yes, no := true, false
	discovered := Profile{
		"Observation": {Read: true, Create: true, Update: true, SearchParams: []string{"identifier"}},
		"Encounter":   {Read: true, SearchType: true},
	}
	got := discovered.Merge(map[string]Override{
		"Observation": {Update: &no},
		"Encounter":   {Create: &yes, ConditionalCreate: &yes},
		"Goal":        {Create: &yes},
	})
	want := Profile{
		"Observation": {Read: true, Create: true, SearchParams: []string{"identifier"}},
		"Encounter":   {Read: true, SearchType: true, Create: true, ConditionalCreate: true},
		"Goal":        {Create: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
	if !discovered["Observation"].Update {
		t.Error("Merge changed the discovered profile")
	}
}

func TestDiscoverErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   string
	}{
		{"unauthorized", 401, "application/fhir+json", `{}`, "401 Unauthorized"},
		{"html", 200, "text/html", `<html/>`, `answered "text/html"`},
		{"not json", 200, "application/fhir+json", `{`, "not a CapabilityStatement"},
		{"other resource", 200, "application/fhir+json", `{"resourceType":"OperationOutcome"}`, `resourceType "OperationOutcome"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, err := Discover(t.Context(), srv.Client(), srv.URL)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
