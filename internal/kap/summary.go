package kap

import (
	"slices"
	"time"
)

// Score is one PHQ-9 total (LOINC 44261-6).
type Score struct {
	Total int       `json:"total"`
	Time  time.Time `json:"time"`
}

// NoDrivingFlag is a kap#no-driving safety Flag of the program.
type NoDrivingFlag struct {
	Session string // the Encounter the flag was issued in (Flag.encounter)
	Status  string // Flag.status; "active" counts
	End     time.Time
}

// SummaryFacts are a program's records, read at At.
type SummaryFacts struct {
	At              time.Time
	Sessions        []Session
	Administrations []Administration
	PHQ9            []Score
	// RecommendedDosingSessions of the program (its planned series); 0
	// means the rules' default.
	RecommendedDosingSessions int
	NoDriving                 []NoDrivingFlag
}

// Summary is the program summary as the API returns it.
type Summary struct {
	// Sessions counts sessions by kind, then status.
	Sessions map[SessionKind]map[string]int `json:"sessions"`
	// DosesByRoute counts the administrations given, by route.
	DosesByRoute    map[Route]int  `json:"dosesByRoute"`
	PHQ9            *PHQ9Summary   `json:"phq9,omitempty"` // nil without any PHQ-9
	Dosing          DosingProgress `json:"dosing"`
	OpenSafetyItems []SafetyItem   `json:"openSafetyItems"`
}

// PHQ9Summary compares the latest PHQ-9 total with the first.
type PHQ9Summary struct {
	Count    int   `json:"count"`
	Baseline Score `json:"baseline"`
	Latest   Score `json:"latest"`
	// Change is latest minus baseline (negative: fewer symptoms).
	Change int `json:"change"`
	// PercentChange is Change relative to the baseline, in percent to 0.1;
	// absent when the baseline is 0.
	PercentChange *Decimal `json:"percentChange,omitempty"`
	// Response: the latest total is at least 50 % below the baseline.
	Response bool `json:"response"`
	// Remission: the latest total is under 5.
	Remission bool `json:"remission"`
}

// DosingProgress compares completed dosing sessions with the recommendation.
type DosingProgress struct {
	Completed   int  `json:"completed"`
	Recommended int  `json:"recommended"`
	Reached     bool `json:"reached"`
}

// SafetyItem is something that still needs attention.
type SafetyItem struct {
	// Kind: "no-driving" (the instruction is still running) or
	// "undischarged-session" (a dosing session started and not finished).
	Kind    string     `json:"kind"`
	Session string     `json:"session"`
	Until   *time.Time `json:"until,omitempty"` // the end of a no-driving period
}

// remissionBelow: PHQ-9 remission is a total under 5.
const remissionBelow = 5

// inProgress: the Encounter status of a session that started and has not
// finished.
func inProgress(status string) bool {
	switch status {
	case "arrived", "triaged", "in-progress", "onleave":
		return true
	}
	return false
}

// Summarize builds the program summary.
func Summarize(r Rules, f SummaryFacts) Summary {
	s := Summary{
		Sessions:        map[SessionKind]map[string]int{},
		DosesByRoute:    map[Route]int{},
		OpenSafetyItems: []SafetyItem{},
		Dosing:          DosingProgress{Completed: finished(f.Sessions, Dosing), Recommended: f.RecommendedDosingSessions},
	}
	for _, ses := range f.Sessions {
		if s.Sessions[ses.Kind] == nil {
			s.Sessions[ses.Kind] = map[string]int{}
		}
		s.Sessions[ses.Kind][ses.Status]++
		if ses.Kind == Dosing && inProgress(ses.Status) {
			s.OpenSafetyItems = append(s.OpenSafetyItems, SafetyItem{Kind: "undischarged-session", Session: ses.ID})
		}
	}
	for _, a := range f.Administrations {
		if a.given() {
			s.DosesByRoute[a.Route]++
		}
	}
	if s.Dosing.Recommended == 0 {
		s.Dosing.Recommended = r.RecommendedDosingSessions
	}
	s.Dosing.Reached = s.Dosing.Completed >= s.Dosing.Recommended
	for _, fl := range f.NoDriving {
		if fl.Status == statusActive && f.At.Before(fl.End) {
			s.OpenSafetyItems = append(s.OpenSafetyItems, SafetyItem{Kind: "no-driving", Session: fl.Session, Until: &fl.End})
		}
	}
	s.PHQ9 = phq9(f.PHQ9)
	return s
}

// phq9 compares the last total with the first, by time. With one total
// there is nothing to compare: no response or remission yet.
func phq9(scores []Score) *PHQ9Summary {
	if len(scores) == 0 {
		return nil
	}
	sorted := slices.SortedStableFunc(slices.Values(scores), func(a, b Score) int { return a.Time.Compare(b.Time) })
	base, latest := sorted[0], sorted[len(sorted)-1]
	p := &PHQ9Summary{Count: len(scores), Baseline: base, Latest: latest, Change: latest.Total - base.Total}
	if base.Total != 0 {
		pc := ratio(int64(p.Change)*100, int64(base.Total), 1)
		p.PercentChange = &pc
	}
	if len(scores) > 1 {
		// ≥ 50 % reduction, in integers: 2·(baseline − latest) ≥ baseline.
		p.Response = base.Total > 0 && 2*(base.Total-latest.Total) >= base.Total
		p.Remission = latest.Total < remissionBelow
	}
	return p
}
