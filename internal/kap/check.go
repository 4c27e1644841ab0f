package kap

import (
	"fmt"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// RuleCode is the stable code of a rule: clients match on it
// (OperationOutcome.issue.details), overrides name it, metrics count it.
type RuleCode string

// The rules (docs/kap-rules.md).
const (
	RuleProgramInactive      RuleCode = "dosing.program-inactive"
	RuleAssessmentRequired   RuleCode = "dosing.assessment-required"
	RulePreparationMinimum   RuleCode = "dosing.preparation-minimum"
	RulePrescriptionRequired RuleCode = "dosing.prescription-required"
	RuleConsentRequired      RuleCode = "dosing.consent-required"
	RuleEscortRequired       RuleCode = "dosing.escort-required"
	RuleDoseMaxExceeded      RuleCode = "dose.max-exceeded"
	RuleWeightRequired       RuleCode = "dose.weight-required"
	RuleBloodPressurePre     RuleCode = "discharge.bp-pre"
	RuleBloodPressurePost    RuleCode = "discharge.bp-post"
	RuleReadiness            RuleCode = "discharge.readiness"
	RuleObservationTime      RuleCode = "discharge.observation-time"
	RuleDischargeEscort      RuleCode = "discharge.escort"
)

// RuleCodes lists every rule code.
func RuleCodes() []RuleCode {
	return []RuleCode{
		RuleProgramInactive, RuleAssessmentRequired, RulePreparationMinimum, RulePrescriptionRequired,
		RuleConsentRequired, RuleEscortRequired, RuleDoseMaxExceeded, RuleWeightRequired,
		RuleBloodPressurePre, RuleBloodPressurePost, RuleReadiness, RuleObservationTime, RuleDischargeEscort,
	}
}

// CodeSystem is the local kap CodeSystem; rule codes are among its codes.
const CodeSystem = "https://kapfhir.org/fhir/CodeSystem/kap"

// Violation is one rule a request breaks.
type Violation struct {
	Rule    RuleCode
	Message string // for the clinic: what is missing and what would satisfy the rule
	Field   string // the request field it concerns: the OperationOutcome expression
}

// The statuses that count (FHIR codes).
const (
	statusActive   = "active"   // EpisodeOfCare, MedicationRequest, Consent
	statusFinished = "finished" // Encounter
)

// timeFormat shows times in messages as the client sent them (with offset).
const timeFormat = "2006-01-02 15:04 -07:00"

// CheckDosing checks that a dosing session may start: all rules it breaks.
func CheckDosing(r Rules, f DosingFacts) []Violation {
	var vs []Violation
	if f.ProgramStatus != statusActive {
		vs = append(vs, Violation{RuleProgramInactive, fmt.Sprintf(
			"The program is %s; dosing needs an active program.", orNone(f.ProgramStatus)), "program"})
	}
	if finished(f.Sessions, MedicalAssessment) == 0 {
		vs = append(vs, Violation{RuleAssessmentRequired,
			"Dosing needs a completed medical assessment session.", "program"})
	}
	if n := finished(f.Sessions, Preparation); n < r.MinPreparationSessions {
		vs = append(vs, Violation{RulePreparationMinimum, fmt.Sprintf(
			"%d of the %d preparation sessions required before dosing are completed.", n, r.MinPreparationSessions), "program"})
	}
	if v := prescriptionMissing(f.Order, f.Prescriptions); v != nil {
		vs = append(vs, *v)
	}
	if !consentInForce(f.Consents, f.At) {
		vs = append(vs, Violation{RuleConsentRequired, fmt.Sprintf(
			"No treatment consent is in force at %s.", f.At.Format(timeFormat)), "program"})
	}
	if r.EscortRequired && !f.EscortConfirmed {
		vs = append(vs, Violation{RuleEscortRequired,
			"Dosing needs a confirmed escort who will take the client home.", "escort"})
	}
	return vs
}

func orNone(status string) string {
	if status == "" {
		return "without status"
	}
	return status
}

// finished counts the completed sessions of kind.
func finished(sessions []Session, kind SessionKind) int {
	n := 0
	for _, s := range sessions {
		if s.Kind == kind && s.Status == statusFinished {
			n++
		}
	}
	return n
}

// prescriptionsFor are the active prescriptions the order may be given
// under: the one it names, else those of its product family, code and
// route.
func prescriptionsFor(o Order, ps []Prescription) []Prescription {
	var out []Prescription
	for _, p := range ps {
		if p.Status != statusActive || p.Product != o.Product || p.Route != o.Route ||
			o.Code != "" && p.Code != "" && p.Code != o.Code ||
			o.Prescription != "" && p.ID != o.Prescription {
			continue
		}
		out = append(out, p)
	}
	return out
}

func prescriptionMissing(o Order, ps []Prescription) *Violation {
	if len(prescriptionsFor(o, ps)) > 0 {
		return nil
	}
	if o.Prescription != "" {
		return &Violation{RulePrescriptionRequired, fmt.Sprintf(
			"The prescription named is not an active prescription of %s by the %s route.", o.Product, o.Route), "prescription"}
	}
	return &Violation{RulePrescriptionRequired, fmt.Sprintf(
		"There is no active prescription of %s by the %s route.", o.Product, o.Route), "product"}
}

// consentInForce: an active consent whose period (ends included, as FHIR
// periods are) holds t.
func consentInForce(cs []Consent, t time.Time) bool {
	for _, c := range cs {
		if c.Status == statusActive && (c.Start.IsZero() || !t.Before(c.Start)) && (c.End.IsZero() || !t.After(c.End)) {
			return true
		}
	}
	return false
}

// Calculation is a dose in mg: as given, or calculated from mg/kg.
type Calculation struct {
	Mg     Decimal
	Weight *BodyWeight // the weight an mg/kg dose was calculated with; nil for an mg dose
}

// mgPlaces: a dose calculated from mg/kg is rounded to 0.1 mg, half away
// from zero (docs/kap-rules.md).
const mgPlaces = 1

// CheckAdministration checks a dose given at f.Time and gives it in mg.
// The calculation is nil when an mg/kg dose has no weight to go by. The
// error is a 400 for a unit other than mg and mg/kg.
func CheckAdministration(f AdministrationFacts) (*Calculation, []Violation, error) {
	var vs []Violation
	if v := prescriptionMissing(f.Order, f.Prescriptions); v != nil {
		vs = append(vs, *v)
	}
	var calc *Calculation
	switch f.Dose.Unit {
	case Mg:
		calc = &Calculation{Mg: f.Dose.Value}
	case MgPerKg:
		if w := latestWeight(f.Weights, f.Time); w != nil {
			calc = &Calculation{Mg: f.Dose.Value.Mul(w.Kg).Round(mgPlaces), Weight: w}
		} else {
			vs = append(vs, Violation{RuleWeightRequired,
				"A dose in mg/kg needs a body weight recorded in the program before the administration.", "dose"})
		}
	default:
		return nil, nil, fault.New(fault.Invalid, "dose.unit", "the dose unit must be mg or mg/kg, not %q", f.Dose.Unit)
	}
	if calc == nil {
		return nil, vs, nil
	}
	// Several matching prescriptions: the lowest maximum holds.
	var limit *Decimal
	for _, p := range prescriptionsFor(f.Order, f.Prescriptions) {
		if p.MaxMg != nil && (limit == nil || p.MaxMg.Cmp(*limit) < 0) {
			limit = p.MaxMg
		}
	}
	if limit != nil && calc.Mg.Cmp(*limit) > 0 {
		given := calc.Mg.String() + " mg"
		if calc.Weight != nil {
			given += fmt.Sprintf(" (%s mg/kg at %s kg)", f.Dose.Value, calc.Weight.Kg)
		}
		vs = append(vs, Violation{RuleDoseMaxExceeded, fmt.Sprintf(
			"The dose of %s is above the prescription's maximum of %s mg per administration.", given, limit), "dose"})
	}
	return calc, vs, nil
}

// latestWeight is the last weight recorded at or before t.
func latestWeight(ws []BodyWeight, t time.Time) *BodyWeight {
	var best *BodyWeight
	for i := range ws {
		if !ws[i].At.After(t) && (best == nil || !ws[i].At.Before(best.At)) {
			best = &ws[i]
		}
	}
	return best
}

// CheckDischarge checks that the client may leave the dosing session at
// f.Time. With no administration given, only readiness and the escort
// apply.
func CheckDischarge(r Rules, f DischargeFacts) []Violation {
	var vs []Violation
	var given []Administration
	for _, a := range f.Administrations {
		if a.given() {
			given = append(given, a)
		}
	}
	var first, last time.Time // start of the first and end of the last administration
	earliest := f.Time        // the earliest discharge the observation times allow
	var slowest Administration
	for i, a := range given {
		if i == 0 || a.Time.Before(first) {
			first = a.Time
		}
		last = laterOf(last, a.end())
		if until := a.end().Add(r.observation(a.Route)); i == 0 || until.After(earliest) {
			earliest, slowest = until, a
		}
	}
	if len(given) > 0 && r.BloodPressureRequired {
		if !anyTime(f.BloodPressures, func(t time.Time) bool { return !t.After(first) }) {
			vs = append(vs, Violation{RuleBloodPressurePre, fmt.Sprintf(
				"Discharge needs a blood pressure taken before the first administration (%s).", first.Format(timeFormat)), "session"})
		}
		from := last.Add(r.PostDoseBloodPressureAfter)
		if !anyTime(f.BloodPressures, func(t time.Time) bool { return t.After(last) && !t.Before(from) && !t.After(f.Time) }) {
			vs = append(vs, Violation{RuleBloodPressurePost, fmt.Sprintf(
				"Discharge needs a blood pressure taken after the last administration, at %s or later.", from.Format(timeFormat)), "session"})
		}
	}
	if !anyTime(f.Ready, func(t time.Time) bool { return (len(given) == 0 || t.After(last)) && !t.After(f.Time) }) {
		vs = append(vs, Violation{RuleReadiness,
			"Discharge needs the client observed ready to leave after the last administration.", "readiness"})
	}
	if len(given) > 0 && f.Time.Before(earliest) {
		vs = append(vs, Violation{RuleObservationTime, fmt.Sprintf(
			"The client must be observed for %s after the %s administration ending %s: discharge at %s or later.",
			minutes(r.observation(slowest.Route)), slowest.Route, slowest.end().Format(timeFormat), earliest.Format(timeFormat)), "time"})
	}
	if r.EscortRequired && !f.EscortReleased {
		vs = append(vs, Violation{RuleDischargeEscort,
			"The client must be released to the escort.", "escort"})
	}
	return vs
}

// minutes shows a duration as clinicians write it: "2 h", "90 min".
func minutes(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%d h", d/time.Hour)
	}
	return fmt.Sprintf("%d min", d/time.Minute)
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func anyTime(ts []time.Time, ok func(time.Time) bool) bool {
	for _, t := range ts {
		if ok(t) {
			return true
		}
	}
	return false
}

// Period is a span of time.
type Period struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Instruction is the no-driving/machinery/work period that starts at
// discharge.
func Instruction(discharge time.Time, r Rules) Period {
	return Period{Start: discharge, End: discharge.Add(r.NoDriving)}
}
