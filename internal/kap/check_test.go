package kap

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/fault"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.FixedZone("EST", -5*3600))

func at(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }

func ptr[T any](v T) *T { return &v }

// ruleCase is one rule at one decision point: the facts that meet its
// precondition, and a change that breaks only that rule.
type ruleCase[F any] struct {
	name  string
	rule  RuleCode // "" when the change must still be accepted
	field string
	brk   func(*F)
}

// runRuleCases checks each case three ways: accepted with the
// precondition, refused (422, the rule code in issue.details) without it,
// and accepted with an Override when a clinician overrides it with a
// reason. check gives the violations of the facts and the decision time.
func runRuleCases[F any](t *testing.T, good func() F, check func(F) ([]Violation, time.Time), cases []ruleCase[F]) {
	t.Helper()
	if vs, _ := check(good()); len(vs) != 0 {
		t.Fatalf("the facts meeting every precondition are refused: %+v", vs)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := good()
			tc.brk(&f)
			vs, when := check(f)
			if tc.rule == "" {
				if len(vs) != 0 {
					t.Fatalf("refused: %+v", vs)
				}
				return
			}
			if len(vs) != 1 || vs[0].Rule != tc.rule || vs[0].Field != tc.field || vs[0].Message == "" {
				t.Fatalf("violations = %+v, want exactly %s at %s", vs, tc.rule, tc.field)
			}
			// Refused: a 422 whose issue carries the rule code.
			_, err := Resolve(vs, nil, when)
			if fault.Status(err) != 422 {
				t.Fatalf("Resolve without override = %v, want a 422", err)
			}
			var oo struct {
				Issue []fault.Issue `json:"issue"`
			}
			if err := json.Unmarshal(fault.Outcome(err), &oo); err != nil {
				t.Fatal(err)
			}
			want := []fault.Issue{{Severity: "error", Code: "business-rule",
				Details:     &fault.CodeableConcept{Coding: []fault.Coding{{System: CodeSystem, Code: string(tc.rule)}}},
				Diagnostics: vs[0].Message, Expression: []string{tc.field}}}
			if diff := cmp.Diff(want, oo.Issue); diff != "" {
				t.Errorf("OperationOutcome issues (-want +got):\n%s", diff)
			}
			// Overridden with a reason: accepted, the override recorded.
			o := &OverrideRequest{Rules: []RuleCode{tc.rule}, Reason: "clinical judgement", Clinician: "Practitioner/p1"}
			got, err := Resolve(vs, o, when)
			if err != nil {
				t.Fatalf("Resolve with override: %v", err)
			}
			wantO := []Override{{Rule: tc.rule, Message: vs[0].Message, Reason: "clinical judgement", Clinician: "Practitioner/p1", At: when}}
			if diff := cmp.Diff(wantO, got); diff != "" {
				t.Errorf("overrides (-want +got):\n%s", diff)
			}
		})
	}
}

func prescription() Prescription {
	return Prescription{ID: "rx1", Product: Ketamine, Code: "238083", Route: Intramuscular, Status: "active"}
}

func TestCheckDosing(t *testing.T) {
	r := DefaultRules()
	good := func() DosingFacts {
		return DosingFacts{
			At:            at(0),
			ProgramStatus: "active",
			Sessions: []Session{
				{ID: "e1", Kind: Intake, Status: "finished"},
				{ID: "e2", Kind: MedicalAssessment, Status: "finished"},
				{ID: "e3", Kind: Preparation, Status: "finished"},
				{ID: "e4", Kind: Preparation, Status: "finished"},
				{ID: "e5", Kind: Dosing, Status: "arrived"},
			},
			Order:           Order{Product: Ketamine, Route: Intramuscular},
			Prescriptions:   []Prescription{{ID: "rx0", Product: Ketamine, Route: Sublingual, Status: "active"}, prescription()},
			Consents:        []Consent{{Status: "active", Start: at(-7 * 24 * 60), End: at(90 * 24 * 60)}},
			EscortConfirmed: true,
		}
	}
	check := func(f DosingFacts) ([]Violation, time.Time) { return CheckDosing(r, f), f.At }
	runRuleCases(t, good, check, []ruleCase[DosingFacts]{
		{"program on hold", RuleProgramInactive, "program", func(f *DosingFacts) { f.ProgramStatus = "onhold" }},
		{"program planned", RuleProgramInactive, "program", func(f *DosingFacts) { f.ProgramStatus = "planned" }},
		{"assessment planned only", RuleAssessmentRequired, "program", func(f *DosingFacts) { f.Sessions[1].Status = "planned" }},
		{"no assessment", RuleAssessmentRequired, "program", func(f *DosingFacts) { f.Sessions[1].Kind = Intake }},
		{"one preparation", RulePreparationMinimum, "program", func(f *DosingFacts) { f.Sessions[3].Status = "cancelled" }},
		{"three preparations", "", "", func(f *DosingFacts) {
			f.Sessions = append(f.Sessions, Session{ID: "e6", Kind: Preparation, Status: "finished"})
		}},
		{"no prescription for the route", RulePrescriptionRequired, "product", func(f *DosingFacts) { f.Order.Route = Intravenous }},
		{"no prescription for the product", RulePrescriptionRequired, "product", func(f *DosingFacts) { f.Order.Product = Esketamine }},
		{"prescription stopped", RulePrescriptionRequired, "product", func(f *DosingFacts) { f.Prescriptions[1].Status = "stopped" }},
		{"prescription of another product code", RulePrescriptionRequired, "product", func(f *DosingFacts) { f.Order.Code = "238084" }},
		{"product code matches", "", "", func(f *DosingFacts) { f.Order.Code = "238083" }},
		{"named prescription is another route", RulePrescriptionRequired, "prescription", func(f *DosingFacts) { f.Order.Prescription = "rx0" }},
		{"named prescription matches", "", "", func(f *DosingFacts) { f.Order.Prescription = "rx1" }},
		{"no consent", RuleConsentRequired, "program", func(f *DosingFacts) { f.Consents = nil }},
		{"consent revoked", RuleConsentRequired, "program", func(f *DosingFacts) { f.Consents[0].Status = "inactive" }},
		{"consent not yet in force", RuleConsentRequired, "program", func(f *DosingFacts) { f.Consents[0].Start = at(1) }},
		{"consent expired", RuleConsentRequired, "program", func(f *DosingFacts) { f.Consents[0].End = at(-1) }},
		{"consent starting at the session", "", "", func(f *DosingFacts) { f.Consents[0].Start = at(0) }},
		{"consent ending at the session", "", "", func(f *DosingFacts) { f.Consents[0].End = at(0) }},
		{"open-ended consent", "", "", func(f *DosingFacts) { f.Consents[0] = Consent{Status: "active"} }},
		{"no escort", RuleEscortRequired, "escort", func(f *DosingFacts) { f.EscortConfirmed = false }},
	})

	// The clinic's own numbers: no escort needed, three preparations.
	clinic := DefaultRules()
	clinic.EscortRequired = false
	clinic.MinPreparationSessions = 3
	f := good()
	f.EscortConfirmed = false
	if diff := cmp.Diff([]RuleCode{RulePreparationMinimum}, codes(CheckDosing(clinic, f))); diff != "" {
		t.Errorf("configured rules (-want +got):\n%s", diff)
	}
	// Nothing in place: every rule at once, in a stable order.
	want := []RuleCode{RuleProgramInactive, RuleAssessmentRequired, RulePreparationMinimum, RulePrescriptionRequired, RuleConsentRequired, RuleEscortRequired}
	if diff := cmp.Diff(want, codes(CheckDosing(r, DosingFacts{At: t0}))); diff != "" {
		t.Errorf("empty facts (-want +got):\n%s", diff)
	}
}

func codes(vs []Violation) []RuleCode {
	var out []RuleCode
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestCheckAdministration(t *testing.T) {
	good := func() AdministrationFacts {
		rx := prescription()
		rx.MaxMg = ptr(dec(t, "50.7"))
		return AdministrationFacts{
			Time:          at(10),
			Order:         Order{Product: Ketamine, Route: Intramuscular},
			Dose:          Dose{Value: dec(t, "0.7"), Unit: MgPerKg},
			Prescriptions: []Prescription{rx},
			Weights:       []BodyWeight{{Kg: dec(t, "80"), At: at(-30 * 24 * 60)}, {Kg: dec(t, "72.4"), At: at(-20)}, {Kg: dec(t, "90"), At: at(11)}},
		}
	}
	check := func(f AdministrationFacts) ([]Violation, time.Time) {
		_, vs, err := CheckAdministration(f)
		if err != nil {
			t.Fatal(err)
		}
		return vs, f.Time
	}
	runRuleCases(t, good, check, []ruleCase[AdministrationFacts]{
		{"mg dose above the maximum", RuleDoseMaxExceeded, "dose", func(f *AdministrationFacts) { f.Dose = Dose{dec(t, "50.8"), Mg} }},
		{"mg dose at the maximum", "", "", func(f *AdministrationFacts) { f.Dose = Dose{dec(t, "50.70"), Mg} }},
		{"mg/kg dose above the maximum once rounded", RuleDoseMaxExceeded, "dose", func(f *AdministrationFacts) { f.Prescriptions[0].MaxMg = ptr(dec(t, "50.69")) }},
		{"no maximum stated", "", "", func(f *AdministrationFacts) { f.Prescriptions[0].MaxMg = nil; f.Dose = Dose{dec(t, "500"), Mg} }},
		{"the lowest maximum of two prescriptions", RuleDoseMaxExceeded, "dose", func(f *AdministrationFacts) {
			rx := f.Prescriptions[0]
			rx.ID, rx.MaxMg = "rx2", ptr(dec(t, "40"))
			f.Prescriptions = append(f.Prescriptions, rx)
		}},
		{"the named prescription's maximum", "", "", func(f *AdministrationFacts) {
			rx := f.Prescriptions[0]
			rx.ID, rx.MaxMg = "rx2", ptr(dec(t, "40"))
			f.Prescriptions = append(f.Prescriptions, rx)
			f.Order.Prescription = "rx1"
		}},
		{"no weight", RuleWeightRequired, "dose", func(f *AdministrationFacts) { f.Weights = nil }},
		{"weight recorded only after the administration", RuleWeightRequired, "dose", func(f *AdministrationFacts) { f.Weights = f.Weights[2:] }},
		{"mg dose without weight", "", "", func(f *AdministrationFacts) { f.Weights = nil; f.Dose = Dose{dec(t, "35"), Mg} }},
		{"no active prescription", RulePrescriptionRequired, "product", func(f *AdministrationFacts) { f.Prescriptions[0].Status = "completed" }},
	})
}

func TestDoseCalculation(t *testing.T) {
	for _, tc := range []struct {
		dose, kg string
		max      string
		want     string
		refused  bool
	}{
		{"0.5", "72.4", "", "36.2", false},
		{"0.7", "72.4", "", "50.7", false}, // 50.68 rounds to 50.7
		{"0.7", "72.4", "50.7", "50.7", false},
		{"0.7", "72.4", "50.68", "50.7", true}, // the rounded dose is what is given
		{"0.25", "145", "", "36.3", false},     // 36.25: half away from zero
		{"1", "72.45", "", "72.5", false},
	} {
		f := AdministrationFacts{
			Time:          t0,
			Order:         Order{Product: Ketamine, Route: Intravenous},
			Dose:          Dose{dec(t, tc.dose), MgPerKg},
			Prescriptions: []Prescription{{Product: Ketamine, Route: Intravenous, Status: "active"}},
			Weights:       []BodyWeight{{Kg: dec(t, tc.kg), At: t0}},
		}
		if tc.max != "" {
			f.Prescriptions[0].MaxMg = ptr(dec(t, tc.max))
		}
		calc, vs, err := CheckAdministration(f)
		if err != nil {
			t.Fatal(err)
		}
		want := &Calculation{Mg: dec(t, tc.want), Weight: &f.Weights[0]}
		if diff := cmp.Diff(want, calc); diff != "" || calc.Mg.String() != tc.want {
			t.Errorf("%s mg/kg × %s kg (-want +got):\n%s%s", tc.dose, tc.kg, diff, calc.Mg)
		}
		if refused := len(vs) > 0; refused != tc.refused {
			t.Errorf("%s mg/kg × %s kg, max %s: violations %+v", tc.dose, tc.kg, tc.max, vs)
		}
	}

	f := AdministrationFacts{Dose: Dose{dec(t, "35"), Mg}}
	if calc, _, _ := CheckAdministration(f); calc == nil || calc.Mg.String() != "35" || calc.Weight != nil {
		t.Errorf("mg dose: %+v", calc)
	}
	f.Dose.Unit = "g"
	if _, _, err := CheckAdministration(f); fault.Status(err) != 400 || !strings.Contains(string(fault.Outcome(err)), `"dose.unit"`) {
		t.Errorf("unit g: %v", err)
	}
}

func TestCheckDischarge(t *testing.T) {
	r := DefaultRules()
	good := func() DischargeFacts {
		return DischargeFacts{
			Time: at(130),
			Administrations: []Administration{
				{Product: Esketamine, Route: Intranasal, Status: "completed", Time: at(0)},
				{Product: Esketamine, Route: Intranasal, Status: "completed", Time: at(5)},
				{Product: Esketamine, Route: Intranasal, Status: "completed", Time: at(10)},
			},
			BloodPressures: []time.Time{at(-10), at(50), at(125)},
			Ready:          []time.Time{at(128)},
			EscortReleased: true,
		}
	}
	check := func(f DischargeFacts) ([]Violation, time.Time) { return CheckDischarge(r, f), f.Time }
	runRuleCases(t, good, check, []ruleCase[DischargeFacts]{
		{"no pre-dose BP", RuleBloodPressurePre, "session", func(f *DischargeFacts) { f.BloodPressures = f.BloodPressures[1:] }},
		{"pre-dose BP at the first administration", "", "", func(f *DischargeFacts) { f.BloodPressures[0] = at(0) }},
		{"pre-dose BP after the first administration", RuleBloodPressurePre, "session", func(f *DischargeFacts) { f.BloodPressures[0] = at(1) }},
		{"no post-dose BP", RuleBloodPressurePost, "session", func(f *DischargeFacts) { f.BloodPressures = f.BloodPressures[:1] }},
		{"post-dose BP too early", RuleBloodPressurePost, "session", func(f *DischargeFacts) { f.BloodPressures = []time.Time{at(-10), at(49)} }},
		{"post-dose BP 40 min after the last administration", "", "", func(f *DischargeFacts) { f.BloodPressures = []time.Time{at(-10), at(50)} }},
		{"post-dose BP after the discharge time", RuleBloodPressurePost, "session", func(f *DischargeFacts) { f.BloodPressures = []time.Time{at(-10), at(131)} }},
		{"no readiness", RuleReadiness, "readiness", func(f *DischargeFacts) { f.Ready = nil }},
		{"readiness before the last administration", RuleReadiness, "readiness", func(f *DischargeFacts) { f.Ready = []time.Time{at(8)} }},
		{"readiness after the discharge time", RuleReadiness, "readiness", func(f *DischargeFacts) { f.Ready = []time.Time{at(131)} }},
		{"readiness at the discharge time", "", "", func(f *DischargeFacts) { f.Ready = []time.Time{at(130)} }},
		{"observation one minute short", RuleObservationTime, "time", func(f *DischargeFacts) { f.Time, f.Ready = at(129), []time.Time{at(129)} }},
		{"observation exactly the minimum", "", "", func(f *DischargeFacts) { f.Time = at(130) }},
		{"a not-done administration does not count", "", "", func(f *DischargeFacts) {
			f.Administrations = append(f.Administrations, Administration{Product: Esketamine, Route: Intranasal, Status: "not-done", Time: at(60)})
		}},
		{"an infusion counts from its end", RuleObservationTime, "time", func(f *DischargeFacts) {
			f.Administrations = []Administration{{Product: Ketamine, Route: Intravenous, Status: "completed", Time: at(0), End: at(71)}}
			f.BloodPressures = []time.Time{at(0), at(115)}
		}},
		{"an infusion observed 1 h after its end", "", "", func(f *DischargeFacts) {
			f.Administrations = []Administration{{Product: Ketamine, Route: Intravenous, Status: "completed", Time: at(0), End: at(70)}}
			f.BloodPressures = []time.Time{at(0), at(115)}
		}},
		{"the slowest route decides", RuleObservationTime, "time", func(f *DischargeFacts) {
			// An IM booster later than the intranasal doses: 90 min from 50 → 140.
			f.Administrations = append(f.Administrations, Administration{Product: Ketamine, Route: Intramuscular, Time: at(50)})
			f.BloodPressures, f.Ready = []time.Time{at(-10), at(95)}, []time.Time{at(100)}
		}},
		{"not released to the escort", RuleDischargeEscort, "escort", func(f *DischargeFacts) { f.EscortReleased = false }},
	})

	// A session without an administration: readiness and escort only.
	if diff := cmp.Diff([]RuleCode{RuleReadiness, RuleDischargeEscort}, codes(CheckDischarge(r, DischargeFacts{Time: t0}))); diff != "" {
		t.Errorf("no administration (-want +got):\n%s", diff)
	}
	// BP not required by the clinic; a route the rules do not name gets the
	// longest observation.
	clinic := DefaultRules()
	clinic.BloodPressureRequired = false
	clinic.MinObservation = map[Route]time.Duration{Sublingual: 90 * time.Minute, Oral: 150 * time.Minute}
	f := DischargeFacts{Time: at(149), Administrations: []Administration{{Route: Buccal, Time: at(0)}}, Ready: []time.Time{at(120)}, EscortReleased: true}
	vs := CheckDischarge(clinic, f)
	if diff := cmp.Diff([]Violation{{RuleObservationTime,
		"The client must be observed for 150 min after the buccal administration ending 2026-03-10 09:00 -05:00: discharge at 2026-03-10 11:30 -05:00 or later.", "time"}}, vs); diff != "" {
		t.Errorf("configured rules (-want +got):\n%s", diff)
	}
}

func TestInstruction(t *testing.T) {
	r := DefaultRules()
	if diff := cmp.Diff(Period{Start: at(130), End: at(130 + 8*60)}, Instruction(at(130), r)); diff != "" {
		t.Errorf("instruction (-want +got):\n%s", diff)
	}
	r.NoDriving = 24 * time.Hour // an esketamine clinic: until the next day
	if got := Instruction(at(0), r).End; !got.Equal(at(24 * 60)) {
		t.Errorf("24 h instruction ends %v", got)
	}
}
