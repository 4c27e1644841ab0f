// Package kap holds the rules of the KAP treatment process (when a dosing
// session may start, which dose may be given, when a client may leave) and
// the program summary, as pure functions over small fact types the service
// fills from stored FHIR resources. No store, no HTTP, no clock: every time
// is an input. docs/kap-rules.md lists the rules, codes and defaults.
package kap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Route is a route of administration in clinic terms.
type Route string

// The routes of the treatment process (mapping spec §4.2).
const (
	Intravenous   Route = "intravenous"
	Intramuscular Route = "intramuscular"
	Sublingual    Route = "sublingual"
	Buccal        Route = "buccal"
	Oral          Route = "oral"
	Intranasal    Route = "intranasal"
)

// Routes lists every known route.
func Routes() []Route {
	return []Route{Intravenous, Intramuscular, Sublingual, Buccal, Oral, Intranasal}
}

// Product is the product family of a prescription or administration.
type Product string

// The product families.
const (
	Ketamine   Product = "ketamine"
	Esketamine Product = "esketamine"
)

// Rules are the parameters of the treatment process one clinic may change
// (docs/kap-rules.md, "Configuration").
type Rules struct {
	// MinPreparationSessions completed before the first dosing session.
	MinPreparationSessions int
	// MinObservation after an administration, per route, before discharge.
	MinObservation map[Route]time.Duration
	// NoDriving is the length of the no-driving/machinery/work instruction
	// that starts at discharge.
	NoDriving time.Duration
	// RecommendedDosingSessions is the series the summary compares with,
	// unless the program states its own.
	RecommendedDosingSessions int
	// EscortRequired: a confirmed escort before dosing and release to the
	// escort at discharge.
	EscortRequired bool
	// BloodPressureRequired: a pre-dose and a post-dose blood pressure
	// before discharge.
	BloodPressureRequired bool
	// PostDoseBloodPressureAfter: a blood pressure counts as post-dose when
	// taken at least this long after the last administration.
	PostDoseBloodPressureAfter time.Duration
}

// DefaultRules are the clinic's process as the issue states it, with the
// esketamine REMS times (mapping spec §14).
func DefaultRules() Rules {
	return Rules{
		MinPreparationSessions: 2,
		MinObservation: map[Route]time.Duration{
			Intravenous:   time.Hour,
			Intramuscular: 90 * time.Minute,
			Sublingual:    2 * time.Hour,
			Buccal:        2 * time.Hour,
			Oral:          2 * time.Hour,
			Intranasal:    2 * time.Hour,
		},
		NoDriving:                  8 * time.Hour,
		RecommendedDosingSessions:  3,
		EscortRequired:             true,
		BloodPressureRequired:      true,
		PostDoseBloodPressureAfter: 40 * time.Minute,
	}
}

// observation is the minimum observation after an administration by route;
// a route the rules do not name gets the longest one configured.
func (r Rules) observation(route Route) time.Duration {
	if d, ok := r.MinObservation[route]; ok {
		return d
	}
	var longest time.Duration
	for _, d := range r.MinObservation {
		longest = max(longest, d)
	}
	return longest
}

// rulesFile is the JSON form of Rules; a field left out keeps its default.
type rulesFile struct {
	MinPreparationSessions     *int              `json:"minPreparationSessions"`
	MinObservation             map[string]string `json:"minObservation"`
	NoDriving                  *string           `json:"noDriving"`
	RecommendedDosingSessions  *int              `json:"recommendedDosingSessions"`
	EscortRequired             *bool             `json:"escortRequired"`
	BloodPressureRequired      *bool             `json:"bloodPressureRequired"`
	PostDoseBloodPressureAfter *string           `json:"postDoseBloodPressureAfter"`
}

// LoadRules reads the clinic's rules file (KAPFHIR_KAP_RULES); an empty
// path means the defaults. A path that cannot be read is an error: a
// clinic that configured rules must not silently get others.
func LoadRules(path string) (Rules, error) {
	if path == "" {
		return DefaultRules(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Rules{}, fmt.Errorf("KAP rules: %w", err)
	}
	r, err := ParseRules(data)
	if err != nil {
		return Rules{}, fmt.Errorf("KAP rules %s: %w", path, err)
	}
	return r, nil
}

// ParseRules reads a rules file over the defaults. Unknown fields are
// errors (a misspelt field would otherwise leave a default in force), and
// every error names the field.
func ParseRules(data []byte) (Rules, error) {
	var f rulesFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Rules{}, err
	}
	if dec.More() {
		return Rules{}, errors.New("more than one JSON value")
	}
	r := DefaultRules()
	var errs []error
	if f.MinPreparationSessions != nil {
		r.MinPreparationSessions = *f.MinPreparationSessions
		if r.MinPreparationSessions < 0 {
			errs = append(errs, errors.New("minPreparationSessions: must be 0 or more"))
		}
	}
	if f.RecommendedDosingSessions != nil {
		r.RecommendedDosingSessions = *f.RecommendedDosingSessions
		if r.RecommendedDosingSessions < 1 {
			errs = append(errs, errors.New("recommendedDosingSessions: must be 1 or more"))
		}
	}
	if f.EscortRequired != nil {
		r.EscortRequired = *f.EscortRequired
	}
	if f.BloodPressureRequired != nil {
		r.BloodPressureRequired = *f.BloodPressureRequired
	}
	duration := func(field string, s *string, dst *time.Duration, positive bool) {
		if s == nil {
			return
		}
		d, err := time.ParseDuration(*s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a duration such as \"90m\" or \"2h\"", field, *s))
		case d < 0:
			errs = append(errs, fmt.Errorf("%s: must not be negative", field))
		case positive && d == 0:
			errs = append(errs, fmt.Errorf("%s: must be positive", field))
		default:
			*dst = d
		}
	}
	duration("noDriving", f.NoDriving, &r.NoDriving, true)
	duration("postDoseBloodPressureAfter", f.PostDoseBloodPressureAfter, &r.PostDoseBloodPressureAfter, false)
	// Sorted, so the errors come in a stable order.
	for _, k := range slices.Sorted(maps.Keys(f.MinObservation)) {
		field := "minObservation." + k
		if !slices.Contains(Routes(), Route(k)) {
			errs = append(errs, fmt.Errorf("%s: unknown route (known: %s)", field, routeList()))
			continue
		}
		v := f.MinObservation[k]
		d := r.MinObservation[Route(k)]
		duration(field, &v, &d, false)
		r.MinObservation[Route(k)] = d
	}
	return r, errors.Join(errs...)
}

func routeList() string {
	var s []string
	for _, r := range Routes() {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}
