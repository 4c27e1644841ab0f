package kap

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadRules(t *testing.T) {
	got, err := LoadRules("testdata/rules-valid.json")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultRules()
	want.MinPreparationSessions = 3
	want.MinObservation[Sublingual] = 150 * time.Minute
	want.MinObservation[Intravenous] = 45 * time.Minute // the other routes keep their defaults
	want.NoDriving = 12 * time.Hour
	want.RecommendedDosingSessions = 6
	want.BloodPressureRequired = false
	want.PostDoseBloodPressureAfter = 30 * time.Minute
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}

	if got, err := LoadRules(""); err != nil || !cmp.Equal(got, DefaultRules()) {
		t.Errorf(`LoadRules("") = %v, %v; want the defaults`, got, err)
	}
	if _, err := LoadRules("testdata/rules-invalid.json"); err == nil ||
		!strings.Contains(err.Error(), "testdata/rules-invalid.json") || !strings.Contains(err.Error(), "minObservation.nasal: unknown route") {
		t.Errorf("invalid file: %v", err)
	}
	if _, err := LoadRules("testdata/absent.json"); err == nil {
		t.Error("a configured file that does not exist was accepted")
	}
}

func TestDefaultRules(t *testing.T) {
	r := DefaultRules()
	// The REMS of intranasal esketamine: 2 h of observation, BP ~40 min after.
	if r.MinObservation[Intranasal] != 2*time.Hour || r.PostDoseBloodPressureAfter != 40*time.Minute {
		t.Errorf("REMS times: %v, %v", r.MinObservation[Intranasal], r.PostDoseBloodPressureAfter)
	}
	for _, route := range Routes() {
		if _, ok := r.MinObservation[route]; !ok {
			t.Errorf("no default observation for %s", route)
		}
	}
	if r.MinPreparationSessions != 2 || r.NoDriving != 8*time.Hour || r.RecommendedDosingSessions != 3 || !r.EscortRequired || !r.BloodPressureRequired {
		t.Errorf("defaults differ from the issue: %+v", r)
	}
	other := DefaultRules()
	other.MinObservation[Oral] = 0
	if r.MinObservation[Oral] == 0 {
		t.Error("DefaultRules shares its map between calls")
	}
}

func TestParseRulesErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{`{"minPreparationSessions": -1}`, "minPreparationSessions: must be 0 or more"},
		{`{"minPreparationSessions": "two"}`, "minPreparationSessions"},
		{`{"recommendedDosingSessions": 0}`, "recommendedDosingSessions: must be 1 or more"},
		{`{"noDriving": "8"}`, `noDriving: "8" is not a duration`},
		{`{"noDriving": "0s"}`, "noDriving: must be positive"},
		{`{"postDoseBloodPressureAfter": "-5m"}`, "postDoseBloodPressureAfter: must not be negative"},
		{`{"minObservation": {"oral": "2 hours"}}`, `minObservation.oral: "2 hours" is not a duration`},
		{`{"minObservation": {"oral": "-1h"}}`, "minObservation.oral: must not be negative"},
		{`{"minObservation": {"rectal": "1h"}}`, "minObservation.rectal: unknown route"},
		{`{"escortRequired": "yes"}`, "escortRequired"},
		{`{"noDrivingHours": 8}`, `unknown field "noDrivingHours"`},
		{`{} {}`, "more than one JSON value"},
		{`{"minPreparationSessions": -1, "noDriving": "x"}`, "noDriving"}, // all errors, not the first only
	} {
		_, err := ParseRules([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRules(%s) = %v, want an error containing %q", tc.file, err, tc.want)
		}
	}
}
