package fhir

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCompartmentParams(t *testing.T) {
	for _, tc := range []struct {
		compartment, typ string
		want             []string
	}{
		{"Patient", "Observation", []string{"performer", "subject"}},
		{"Patient", "Patient", []string{"link"}},
		{"Patient", "Organization", nil},
		{"Encounter", "Encounter", []string{}}, // only {def}
		{"Observation", "Patient", nil},        // not a compartment
	} {
		if diff := cmp.Diff(tc.want, CompartmentParams(tc.compartment, tc.typ)); diff != "" {
			t.Errorf("CompartmentParams(%s, %s) (-want +got):\n%s", tc.compartment, tc.typ, diff)
		}
	}
	if !IsCompartment("Patient") || IsCompartment("Observation") {
		t.Error("IsCompartment: Patient is one, Observation is not")
	}
}

// TestCompartmentParamsAreReferences checks every parameter of every
// compartment against the registry: a reference parameter of that type
// that may refer to the compartment's type, so a compartment search can
// always be compiled.
func TestCompartmentParamsAreReferences(t *testing.T) {
	reg := NewRegistry()
	n := 0
	for comp, byType := range compartmentsGet() {
		for typ := range byType {
			for _, code := range CompartmentParams(comp, typ) {
				n++
				p := reg.Lookup(typ, code)
				switch {
				case p == nil:
					t.Errorf("%s compartment: %s has no parameter %s", comp, typ, code)
				case p.Type != "reference":
					t.Errorf("%s compartment: %s.%s is a %s parameter", comp, typ, code, p.Type)
				case len(p.Targets) > 0 && !slices.Contains(p.Targets, comp):
					t.Errorf("%s compartment: %s.%s cannot refer to a %s (%v)", comp, typ, code, comp, p.Targets)
				}
			}
		}
	}
	t.Logf("%d compartment parameters checked", n)
}
