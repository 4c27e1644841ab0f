package bulkexport

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
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

// TestQueriesAreIndexed checks that every query an export sends, at each
// level and for each type, filters on fields served by a declared
// {type, field} index and sorts by {type, rid}: on MongoDB no export batch
// scans the collection.
func TestQueriesAreIndexed(t *testing.T) {
	indexed := map[string]bool{}
	for _, ix := range store.Indexes()["resources"] {
		if len(ix.Keys) >= 2 && ix.Keys[0].Key == "type" {
			indexed[ix.Keys[1].Key] = true
		}
	}
	var fields func(c store.Cond) []string
	fields = func(c store.Cond) []string {
		out := []string{}
		for _, sub := range append(append([]store.Cond{}, c.Or...), c.And...) {
			out = append(out, fields(sub)...)
		}
		if c.Field != "" {
			out = append(out, c.Field)
		}
		return out
	}
	since := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	jobs := []*store.ExportJob{
		{Level: store.ExportSystem, Since: since, After: "x"},
		{Level: store.ExportPatient},
		{Level: store.ExportPatient, Patients: []string{"a", "b"}},
		{Level: store.ExportGroup, Patients: []string{"a"}, Since: since},
	}
	for _, job := range jobs {
		for _, typ := range fhir.ResourceTypes() {
			if job.Level != store.ExportSystem && !InPatientCompartment(typ) {
				continue
			}
			q := query(job, typ, 10)
			if len(q.Sort) != 1 || q.Sort[0].Field != "rid" || !indexed["rid"] {
				t.Errorf("%s %s: sort %v is not served by {type, rid}", job.Level, typ, q.Sort)
			}
			for _, c := range q.And {
				for _, f := range fields(c) {
					if !indexed[f] {
						t.Errorf("%s %s: condition on %q has no {type, %s} index", job.Level, typ, f, f)
					}
				}
			}
			if job.Level != store.ExportSystem && typ != "Patient" && len(q.And) == 0 {
				t.Errorf("%s %s: no compartment condition", job.Level, typ)
			}
		}
	}
}
