package kap

import "time"

// The facts are what the service knows at a decision point, read from the
// stored FHIR resources of the program. Statuses are the FHIR status codes
// of those resources, so they are copied as they are.

// SessionKind is the kind of a session (mapping spec §3.3). An esketamine
// session (kap#dosing-esketamine) is a Dosing session.
type SessionKind string

// The session kinds of the treatment process.
const (
	Intake            SessionKind = "intake"
	MedicalAssessment SessionKind = "medical-assessment"
	Preparation       SessionKind = "preparation"
	Dosing            SessionKind = "dosing"
	Integration       SessionKind = "integration"
)

// Session is one Encounter of the program.
type Session struct {
	ID     string      // the Encounter id, named in the summary's safety items
	Kind   SessionKind // from Encounter.type
	Status string      // Encounter.status: planned, arrived, in-progress, finished, …
}

// DoseUnit is the unit of an ordered or given dose.
type DoseUnit string

// The dose units (UCUM).
const (
	Mg      DoseUnit = "mg"
	MgPerKg DoseUnit = "mg/kg"
)

// Dose is an amount in mg or mg/kg.
type Dose struct {
	Value Decimal
	Unit  DoseUnit
}

// Prescription is one MedicationRequest of the program.
type Prescription struct {
	ID      string  // the MedicationRequest id
	Product Product // product family, from the medication's ingredient
	Code    string  // the product code (RxNorm, NDC or local), "" when unknown
	Route   Route   // dosageInstruction.route
	Status  string  // MedicationRequest.status; "active" counts
	// MaxMg is dosageInstruction.maxDosePerAdministration in mg; nil when
	// the prescription states none.
	MaxMg *Decimal
}

// Order names what a dosing session or an administration gives.
type Order struct {
	// Prescription is the id the request names; "" means any active
	// prescription matching product and route.
	Prescription string
	Product      Product
	Code         string // the product code, "" to match any code of the family
	Route        Route
}

// Consent is a treatment Consent (scope treatment, provision permit) of the
// client.
type Consent struct {
	Status     string    // Consent.status; "active" counts
	Start, End time.Time // provision.period (else Consent.dateTime as the start); zero when open
}

// BodyWeight is a body weight Observation recorded in the program.
type BodyWeight struct {
	Kg Decimal
	At time.Time // effectiveDateTime
}

// DosingFacts: may a dosing session start at At?
type DosingFacts struct {
	At              time.Time
	ProgramStatus   string // EpisodeOfCare.status; "active" counts
	Sessions        []Session
	Order           Order
	Prescriptions   []Prescription
	Consents        []Consent
	EscortConfirmed bool // kap#escort-confirmed true in this session
}

// AdministrationFacts: may this dose be given at Time?
type AdministrationFacts struct {
	Time          time.Time
	Order         Order
	Dose          Dose
	Prescriptions []Prescription
	Weights       []BodyWeight
}

// Administration is one MedicationAdministration of a session.
type Administration struct {
	Product Product
	Route   Route
	Status  string    // MedicationAdministration.status; not-done and entered-in-error were not given
	Time    time.Time // effectiveDateTime, or the start of effectivePeriod
	End     time.Time // the end of effectivePeriod (an infusion); zero for a point in time
}

// given reports whether the drug was (at least partly) given.
func (a Administration) given() bool {
	return a.Status != "not-done" && a.Status != "entered-in-error"
}

// end is when the administration finished.
func (a Administration) end() time.Time {
	if a.End.IsZero() {
		return a.Time
	}
	return a.End
}

// DischargeFacts: may the client leave the dosing session at Time?
type DischargeFacts struct {
	Time            time.Time
	Administrations []Administration // of this session
	BloodPressures  []time.Time      // effective times of the session's BP Observations
	Ready           []time.Time      // times kap#discharge-ready was observed true
	EscortReleased  bool             // kap#released-to-escort true, or the escort is named in the request
}
