package kap

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/prometheus/client_golang/prometheus"
)

// OverrideRequest is a clinician's decision, sent with a request, to go
// ahead although the named rules are broken.
type OverrideRequest struct {
	Rules     []RuleCode
	Reason    string
	Clinician string // the clinician's reference (Practitioner or PractitionerRole)
}

// Override is one overridden violation, for the Provenance the service
// records and the overrides metric.
type Override struct {
	Rule      RuleCode
	Message   string // the violation overridden
	Reason    string
	Clinician string
	At        time.Time
}

// Resolve decides a request given the violations its check found and its
// override (nil when it has none): the violations the override names
// become Overrides; any other one refuses the request with a 422 listing
// each (issue.details carries the rule code). An override without a
// reason or clinician, or naming an unknown rule, is a 400 whatever the
// violations. Naming a rule that is not broken is allowed and records
// nothing.
func Resolve(vs []Violation, o *OverrideRequest, at time.Time) ([]Override, error) {
	if o != nil {
		if err := o.validate(); err != nil {
			return nil, err
		}
	}
	var overrides []Override
	var refused []fault.Issue
	for _, v := range vs {
		if o != nil && slices.Contains(o.Rules, v.Rule) {
			overrides = append(overrides, Override{Rule: v.Rule, Message: v.Message, Reason: o.Reason, Clinician: o.Clinician, At: at})
			continue
		}
		refused = append(refused, fault.Issue{
			Severity:    "error",
			Code:        "business-rule",
			Details:     &fault.CodeableConcept{Coding: []fault.Coding{{System: CodeSystem, Code: string(v.Rule)}}},
			Diagnostics: v.Message,
			Expression:  []string{v.Field},
		})
	}
	if len(refused) > 0 {
		return nil, &fault.Error{Kind: fault.Unprocessable, Issues: refused}
	}
	return overrides, nil
}

func (o *OverrideRequest) validate() error {
	var issues []fault.Issue
	bad := func(expr, format string, args ...any) {
		issues = append(issues, fault.New(fault.Invalid, expr, format, args...).WithCode("required").Issues...)
	}
	if strings.TrimSpace(o.Reason) == "" {
		bad("override.reason", "an override needs a reason")
	}
	if strings.TrimSpace(o.Clinician) == "" {
		bad("override.clinician", "an override needs the clinician who decides it")
	}
	if len(o.Rules) == 0 {
		bad("override.rules", "an override names the rules it overrides")
	}
	for i, r := range o.Rules {
		if !slices.Contains(RuleCodes(), r) {
			issues = append(issues, fault.New(fault.Invalid, fmt.Sprintf("override.rules[%d]", i),
				"unknown rule %q", r).WithCode("code-invalid").Issues...)
		}
	}
	if len(issues) > 0 {
		return &fault.Error{Kind: fault.Invalid, Issues: issues}
	}
	return nil
}

// OverrideCounter counts overridden rules.
type OverrideCounter struct {
	c *prometheus.CounterVec
}

// NewOverrideCounter registers kapfhir_kap_rule_overrides_total{rule} on
// reg. The label is the rule code (a fixed set), never anything of the
// client; every code starts at 0 so rates work from the first override.
func NewOverrideCounter(reg prometheus.Registerer) *OverrideCounter {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kapfhir_kap_rule_overrides_total",
		Help: "KAP rule violations a clinician overrode, by rule code.",
	}, []string{"rule"})
	for _, r := range RuleCodes() {
		c.WithLabelValues(string(r))
	}
	reg.MustRegister(c)
	return &OverrideCounter{c: c}
}

// Count records overrides.
func (c *OverrideCounter) Count(os []Override) {
	for _, o := range os {
		c.c.WithLabelValues(string(o.Rule)).Inc()
	}
}
