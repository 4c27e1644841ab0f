package search

import (
	"slices"
	"testing"

	"github.com/kapfhir/kapfhir/internal/store"
)

// A reference is found by the form it was written in and, when it is a
// literal Type/id (also at the end of an absolute URL, or versioned), by
// Type/id and by the bare id.
func TestReferenceForms(t *testing.T) {
	obs := func(ref string) *store.Index {
		return indexOf(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+ref+`"}}`)
	}
	docs := map[string]*store.Index{
		"rel":     obs("Patient/p1"),
		"abs":     obs("http://other.org/fhir/Patient/p1"),
		"absver":  obs("http://other.org/fhir/Patient/p2/_history/3"),
		"version": obs("Patient/p3/_history/1"),
		"urn":     obs("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"),
		"opaque":  obs("http://other.org/people?id=7"),
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"subject=Patient/p1", []string{"abs", "rel"}},
		{"subject=p1", []string{"abs", "rel"}},
		{"subject=http://other.org/fhir/Patient/p1", []string{"abs"}},
		{"subject=http://other.org/fhir/Patient/p2", []string{"absver"}},
		{"subject=http://other.org/fhir/Patient/p2/_history/3", []string{"absver"}},
		{"subject=http://elsewhere.org/fhir/Patient/p1", nil},
		{"subject=Patient/p3", []string{"version"}},
		{"subject=urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", []string{"urn"}},
		{"subject=http://other.org/people?id=7", []string{"opaque"}},
	} {
		if got := matches(t, "Observation", tc.query, docs); !slices.Equal(got, tc.want) {
			t.Errorf("Observation?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
}
