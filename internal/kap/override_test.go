package kap

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolve(t *testing.T) {
	vs := []Violation{
		{RuleEscortRequired, "no escort", "escort"},
		{RuleConsentRequired, "no consent", "program"},
	}
	override := func(reason, clinician string, rules ...RuleCode) *OverrideRequest {
		return &OverrideRequest{Rules: rules, Reason: reason, Clinician: clinician}
	}
	for _, tc := range []struct {
		name      string
		vs        []Violation
		o         *OverrideRequest
		status    int      // 0: accepted
		exprs     []string // of the issues when refused
		overrides []RuleCode
	}{
		{"no violations", nil, nil, 0, nil, nil},
		{"refused: one issue per violation", vs, nil, 422, []string{"escort", "program"}, nil},
		{"one overridden, one left", vs, override("escort is on the way", "Practitioner/p1", RuleEscortRequired), 422, []string{"program"}, nil},
		{"both overridden", vs, override("clinical judgement", "Practitioner/p1", RuleConsentRequired, RuleEscortRequired), 0, nil,
			[]RuleCode{RuleEscortRequired, RuleConsentRequired}},
		{"overriding a rule that holds records nothing", nil, override("just in case", "Practitioner/p1", RuleEscortRequired), 0, nil, nil},
		{"no reason", vs, override("  ", "Practitioner/p1", RuleEscortRequired, RuleConsentRequired), 400, []string{"override.reason"}, nil},
		{"no reason, even without violations", nil, override("", "Practitioner/p1", RuleEscortRequired), 400, []string{"override.reason"}, nil},
		{"no clinician", vs, override("reason", "", RuleEscortRequired), 400, []string{"override.clinician"}, nil},
		{"no rules", vs, override("reason", "Practitioner/p1"), 400, []string{"override.rules"}, nil},
		{"unknown rule", vs, override("reason", "Practitioner/p1", RuleEscortRequired, "dosing.escort"), 400, []string{"override.rules[1]"}, nil},
		{"every problem at once", vs, override("", "", "x"), 400, []string{"override.reason", "override.clinician", "override.rules[0]"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.vs, tc.o, t0)
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				var rules []RuleCode
				for _, o := range got {
					rules = append(rules, o.Rule)
					if o.Reason != tc.o.Reason || o.Clinician != tc.o.Clinician || !o.At.Equal(t0) || o.Message == "" {
						t.Errorf("override %+v", o)
					}
				}
				if diff := cmp.Diff(tc.overrides, rules); diff != "" {
					t.Errorf("overridden rules (-want +got):\n%s", diff)
				}
				return
			}
			if fault.Status(err) != tc.status || got != nil {
				t.Fatalf("Resolve = %v, %v; want %d", got, err, tc.status)
			}
			var exprs []string
			for _, is := range fault.As(err).Issues {
				exprs = append(exprs, is.Expression...)
			}
			if diff := cmp.Diff(tc.exprs, exprs); diff != "" {
				t.Errorf("expressions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverrideCounter(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := NewOverrideCounter(reg)
	c.Count([]Override{{Rule: RuleEscortRequired}, {Rule: RuleEscortRequired}, {Rule: RuleObservationTime}})
	if n := testutil.CollectAndCount(reg, "kapfhir_kap_rule_overrides_total"); n != len(RuleCodes()) {
		t.Errorf("%d series, want one per rule code (%d)", n, len(RuleCodes()))
	}
	for rule, want := range map[RuleCode]float64{RuleEscortRequired: 2, RuleObservationTime: 1, RuleProgramInactive: 0} {
		if got := testutil.ToFloat64(c.c.WithLabelValues(string(rule))); got != want {
			t.Errorf("%s = %v, want %v", rule, got, want)
		}
	}
}
