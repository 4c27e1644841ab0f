package kap

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/golden"
)

func TestSummaryPHQ9(t *testing.T) {
	day := func(d int) time.Time { return at(d * 24 * 60) }
	pct := func(s string) *Decimal { return ptr(dec(t, s)) }
	for _, tc := range []struct {
		name   string
		scores []Score
		want   *PHQ9Summary
	}{
		{"no PHQ-9", nil, nil},
		{"one PHQ-9: nothing to compare yet", []Score{{4, day(0)}},
			&PHQ9Summary{Count: 1, Baseline: Score{4, day(0)}, Latest: Score{4, day(0)}, PercentChange: pct("0.0")}},
		{"improving, no response yet", []Score{{18, day(0)}, {12, day(7)}},
			&PHQ9Summary{Count: 2, Baseline: Score{18, day(0)}, Latest: Score{12, day(7)}, Change: -6, PercentChange: pct("-33.3")}},
		{"response at exactly 50 %", []Score{{18, day(0)}, {12, day(7)}, {9, day(14)}},
			&PHQ9Summary{Count: 3, Baseline: Score{18, day(0)}, Latest: Score{9, day(14)}, Change: -9, PercentChange: pct("-50.0"), Response: true}},
		{"response just under 50 %", []Score{{19, day(0)}, {10, day(14)}},
			&PHQ9Summary{Count: 2, Baseline: Score{19, day(0)}, Latest: Score{10, day(14)}, Change: -9, PercentChange: pct("-47.4")}},
		{"remission, scores out of order", []Score{{4, day(21)}, {22, day(0)}, {11, day(7)}},
			&PHQ9Summary{Count: 3, Baseline: Score{22, day(0)}, Latest: Score{4, day(21)}, Change: -18, PercentChange: pct("-81.8"), Response: true, Remission: true}},
		{"worse", []Score{{10, day(0)}, {15, day(7)}},
			&PHQ9Summary{Count: 2, Baseline: Score{10, day(0)}, Latest: Score{15, day(7)}, Change: 5, PercentChange: pct("50.0")}},
		{"baseline 0: no percent, no response", []Score{{0, day(0)}, {3, day(7)}},
			&PHQ9Summary{Count: 2, Baseline: Score{0, day(0)}, Latest: Score{3, day(7)}, Change: 3, Remission: true}},
		{"latest 5 is no remission", []Score{{20, day(0)}, {5, day(7)}},
			&PHQ9Summary{Count: 2, Baseline: Score{20, day(0)}, Latest: Score{5, day(7)}, Change: -15, PercentChange: pct("-75.0"), Response: true}},
	} {
		got := Summarize(DefaultRules(), SummaryFacts{At: t0, PHQ9: tc.scores}).PHQ9
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestSummary(t *testing.T) {
	facts := SummaryFacts{
		At: at(0),
		Sessions: []Session{
			{ID: "s1", Kind: Intake, Status: "finished"},
			{ID: "s2", Kind: MedicalAssessment, Status: "finished"},
			{ID: "s3", Kind: Preparation, Status: "finished"},
			{ID: "s4", Kind: Preparation, Status: "finished"},
			{ID: "s5", Kind: Preparation, Status: "cancelled"},
			{ID: "s6", Kind: Dosing, Status: "finished"},
			{ID: "s7", Kind: Dosing, Status: "finished"},
			{ID: "s8", Kind: Dosing, Status: "in-progress"},
			{ID: "s9", Kind: Dosing, Status: "planned"},
			{ID: "s10", Kind: Integration, Status: "planned"},
		},
		Administrations: []Administration{
			{Product: Ketamine, Route: Sublingual, Status: "completed"},
			{Product: Ketamine, Route: Sublingual, Status: "completed"},
			{Product: Ketamine, Route: Intramuscular, Status: "completed"},
			{Product: Ketamine, Route: Intramuscular, Status: "entered-in-error"},
			{Product: Ketamine, Route: Intramuscular, Status: "in-progress"},
		},
		PHQ9: []Score{{19, at(-30 * 24 * 60)}, {8, at(-60)}},
		NoDriving: []NoDrivingFlag{
			{Session: "s7", Status: "active", End: at(60)},       // still running
			{Session: "s6", Status: "active", End: at(0)},        // ended just now
			{Session: "s8", Status: "inactive", End: at(8 * 60)}, // withdrawn
		},
	}
	s := Summarize(DefaultRules(), facts)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/summary.json", string(b)+"\n")

	// The program's own series wins over the clinic's default.
	facts.RecommendedDosingSessions = 2
	if got := Summarize(DefaultRules(), facts).Dosing; got != (DosingProgress{Completed: 2, Recommended: 2, Reached: true}) {
		t.Errorf("own series: %+v", got)
	}
	// An empty program still has empty lists and maps, never null.
	b, err = json.Marshal(Summarize(DefaultRules(), SummaryFacts{At: t0}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sessions":{},"dosesByRoute":{},"dosing":{"completed":0,"recommended":3,"reached":false},"openSafetyItems":[]}`
	if string(b) != want {
		t.Errorf("empty summary:\n%s\nwant\n%s", b, want)
	}
}
