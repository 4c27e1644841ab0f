package httpapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/auth"
)

// TestScopeRuleColumn parses the scope column of every route, and checks
// that every FHIR route but the two discovery documents needs something.
func TestScopeRuleColumn(t *testing.T) {
	for _, rt := range routes {
		r, err := parseScopeRule(rt.scope)
		if err != nil {
			t.Errorf("%s %s: %v", rt.method, rt.path, err)
		}
		if r.public && rt.path != "/fhir/metadata" && rt.path != smartConfigRoute {
			t.Errorf("%s %s is public", rt.method, rt.path)
		}
	}
}

func TestParseScopeRule(t *testing.T) {
	tests := []struct {
		in   string
		want scopeRule
		bad  bool
	}{
		{in: "public", want: scopeRule{public: true}},
		{in: "handler", want: scopeRule{handler: true}},
		{in: ":type.r patient", want: scopeRule{needs: []scopeNeed{{typ: ":type", perm: auth.Read}}, patient: true}},
		{in: "system/Endpoint.u", want: scopeRule{needs: []scopeNeed{{typ: "Endpoint", perm: auth.Update, system: true}}}},
		{in: "Patient.r client", want: scopeRule{needs: []scopeNeed{{typ: "Patient", perm: auth.Read}}, client: true}},
		{in: "Encounter.ru Observation.c", want: scopeRule{needs: []scopeNeed{{typ: "Encounter", perm: auth.Read | auth.Update}, {typ: "Observation", perm: auth.Create}}}},
		{in: "", bad: true},
		{in: "patient", bad: true},
		{in: "public handler", bad: true},
		{in: "public Patient.r", bad: true},
		{in: "Patient.x", bad: true},
		{in: "Nonsense.r", bad: true},
		{in: "user/Patient.r", bad: true},
	}
	for _, tt := range tests {
		got, err := parseScopeRule(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("parseScopeRule(%q): error %v, want bad %v", tt.in, err, tt.bad)
			continue
		}
		if !tt.bad {
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(scopeRule{}, scopeNeed{})); diff != "" {
				t.Errorf("parseScopeRule(%q) (-want +got):\n%s", tt.in, diff)
			}
		}
	}
}
