package bulkexport

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPatientID(t *testing.T) {
	for _, tc := range []struct {
		ref, id string
		ok      bool
	}{
		{"Patient/p1", "p1", true},
		{"http://example.org/fhir/Patient/p1", "p1", true},
		{"Patient/p1/_history/2", "", false},
		{"Practitioner/p1", "", false},
		{"Patient/", "", false},
		{"Patient/bad id", "", false},
		{"p1", "", false},
		{"#p1", "", false},
	} {
		id, ok := PatientID(tc.ref)
		if id != tc.id || ok != tc.ok {
			t.Errorf("PatientID(%q) = %q, %v; want %q, %v", tc.ref, id, ok, tc.id, tc.ok)
		}
	}
}

func TestMembers(t *testing.T) {
	got, err := members(`{"resourceType":"Group","member":[
		{"entity":{"reference":"Patient/b"}},
		{"entity":{"reference":"Patient/a"}},
		{"entity":{"reference":"Patient/b"}},
		{"entity":{"reference":"Patient/c"},"inactive":true},
		{"entity":{"reference":"Practitioner/d"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
}
