package mappings

import "encoding/json"

// FHIR R4 data types and resources, reduced to the elements the KAP model
// writes or reads. They are only used inside this package: emitted JSON is
// exactly these structs (field order = output order), and reading ignores
// every element not declared here. Decimals are json.Number, so their
// lexemes survive both ways.

type codeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

type period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type quantity struct {
	Value  json.Number `json:"value,omitempty"`
	Unit   string      `json:"unit,omitempty"`
	System string      `json:"system,omitempty"`
	Code   string      `json:"code,omitempty"`
}

type identifier struct {
	Type   *codeableConcept `json:"type,omitempty"`
	System string           `json:"system,omitempty"`
	Value  string           `json:"value,omitempty"`
}

type humanName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

type contactPoint struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
	Use    string `json:"use,omitempty"`
}

type meta struct {
	Profile  []string `json:"profile,omitempty"`
	Security []Coding `json:"security,omitempty"`
}

type narrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

type annotation struct {
	Text string `json:"text"`
}

// base is the head every resource shares.
type base struct {
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id,omitempty"`
	Meta         *meta      `json:"meta,omitempty"`
	Text         *narrative `json:"text,omitempty"`
}

type patientRes struct {
	base
	Identifier []identifier   `json:"identifier,omitempty"`
	Name       []humanName    `json:"name,omitempty"`
	Telecom    []contactPoint `json:"telecom,omitempty"`
	Gender     string         `json:"gender,omitempty"`
	BirthDate  string         `json:"birthDate,omitempty"`
}

type practitionerRes struct {
	base
	Identifier []identifier   `json:"identifier,omitempty"`
	Active     *bool          `json:"active,omitempty"`
	Name       []humanName    `json:"name,omitempty"`
	Telecom    []contactPoint `json:"telecom,omitempty"`
}

type practitionerRoleRes struct {
	base
	Active       *bool             `json:"active,omitempty"`
	Practitioner *reference        `json:"practitioner,omitempty"`
	Code         []codeableConcept `json:"code,omitempty"`
	Telecom      []contactPoint    `json:"telecom,omitempty"`
}

type relatedPersonRes struct {
	base
	Active       *bool             `json:"active,omitempty"`
	Patient      *reference        `json:"patient,omitempty"`
	Relationship []codeableConcept `json:"relationship,omitempty"`
	Name         []humanName       `json:"name,omitempty"`
	Telecom      []contactPoint    `json:"telecom,omitempty"`
}

type statusHistory struct {
	Status string `json:"status"`
	Period period `json:"period"`
}

type eocDiagnosis struct {
	Condition reference        `json:"condition"`
	Role      *codeableConcept `json:"role,omitempty"`
	Rank      int              `json:"rank,omitempty"`
}

type episodeOfCareRes struct {
	base
	Status        string            `json:"status,omitempty"`
	StatusHistory []statusHistory   `json:"statusHistory,omitempty"`
	Type          []codeableConcept `json:"type,omitempty"`
	Diagnosis     []eocDiagnosis    `json:"diagnosis,omitempty"`
	Patient       *reference        `json:"patient,omitempty"`
	Period        *period           `json:"period,omitempty"`
	CareManager   *reference        `json:"careManager,omitempty"`
	Team          []reference       `json:"team,omitempty"`
}

type conditionRes struct {
	base
	ClinicalStatus     *codeableConcept  `json:"clinicalStatus,omitempty"`
	VerificationStatus *codeableConcept  `json:"verificationStatus,omitempty"`
	Category           []codeableConcept `json:"category,omitempty"`
	Code               *codeableConcept  `json:"code,omitempty"`
	Subject            *reference        `json:"subject,omitempty"`
	OnsetDateTime      string            `json:"onsetDateTime,omitempty"`
	RecordedDate       string            `json:"recordedDate,omitempty"`
	Note               []annotation      `json:"note,omitempty"`
}

type careTeamParticipant struct {
	Role   []codeableConcept `json:"role,omitempty"`
	Member *reference        `json:"member,omitempty"`
}

type careTeamRes struct {
	base
	Status      string                `json:"status,omitempty"`
	Subject     *reference            `json:"subject,omitempty"`
	Participant []careTeamParticipant `json:"participant,omitempty"`
}

type timingRepeat struct {
	Count      int    `json:"count,omitempty"`
	Frequency  int    `json:"frequency,omitempty"`
	Period     int    `json:"period,omitempty"`
	PeriodUnit string `json:"periodUnit,omitempty"`
}

type timing struct {
	Repeat *timingRepeat `json:"repeat,omitempty"`
}

type serviceRequestRes struct {
	base
	Status           string            `json:"status,omitempty"`
	Intent           string            `json:"intent,omitempty"`
	Category         []codeableConcept `json:"category,omitempty"`
	Code             *codeableConcept  `json:"code,omitempty"`
	QuantityQuantity *quantity         `json:"quantityQuantity,omitempty"`
	Subject          *reference        `json:"subject,omitempty"`
	OccurrenceTiming *timing           `json:"occurrenceTiming,omitempty"`
	AuthoredOn       string            `json:"authoredOn,omitempty"`
	Requester        *reference        `json:"requester,omitempty"`
	ReasonReference  []reference       `json:"reasonReference,omitempty"`
	SupportingInfo   []reference       `json:"supportingInfo,omitempty"`
}

type encounterParticipant struct {
	Type       []codeableConcept `json:"type,omitempty"`
	Period     *period           `json:"period,omitempty"`
	Individual *reference        `json:"individual,omitempty"`
}

type hospitalization struct {
	DischargeDisposition *codeableConcept `json:"dischargeDisposition,omitempty"`
}

type encounterRes struct {
	base
	Status          string                 `json:"status,omitempty"`
	Class           *Coding                `json:"class,omitempty"`
	Type            []codeableConcept      `json:"type,omitempty"`
	Subject         *reference             `json:"subject,omitempty"`
	EpisodeOfCare   []reference            `json:"episodeOfCare,omitempty"`
	Participant     []encounterParticipant `json:"participant,omitempty"`
	Period          *period                `json:"period,omitempty"`
	ReasonReference []reference            `json:"reasonReference,omitempty"`
	Hospitalization *hospitalization       `json:"hospitalization,omitempty"`
}

type ratio struct {
	Numerator   *quantity `json:"numerator,omitempty"`
	Denominator *quantity `json:"denominator,omitempty"`
}

type ingredient struct {
	ItemCodeableConcept *codeableConcept `json:"itemCodeableConcept,omitempty"`
	Strength            *ratio           `json:"strength,omitempty"`
}

type batch struct {
	LotNumber string `json:"lotNumber,omitempty"`
}

type medicationRes struct {
	base
	Code       *codeableConcept `json:"code,omitempty"`
	Ingredient []ingredient     `json:"ingredient,omitempty"`
	Batch      *batch           `json:"batch,omitempty"`
}

type doseAndRate struct {
	Type         *codeableConcept `json:"type,omitempty"`
	DoseQuantity *quantity        `json:"doseQuantity,omitempty"`
}

type dosage struct {
	Text                     string           `json:"text,omitempty"`
	Timing                   *timing          `json:"timing,omitempty"`
	Route                    *codeableConcept `json:"route,omitempty"`
	DoseAndRate              []doseAndRate    `json:"doseAndRate,omitempty"`
	MaxDosePerAdministration *quantity        `json:"maxDosePerAdministration,omitempty"`
}

type medicationRequestRes struct {
	base
	Contained                 []medicationRes   `json:"contained,omitempty"`
	Status                    string            `json:"status,omitempty"`
	Intent                    string            `json:"intent,omitempty"`
	Category                  []codeableConcept `json:"category,omitempty"`
	ReportedBoolean           *bool             `json:"reportedBoolean,omitempty"`
	MedicationCodeableConcept *codeableConcept  `json:"medicationCodeableConcept,omitempty"`
	MedicationReference       *reference        `json:"medicationReference,omitempty"`
	Subject                   *reference        `json:"subject,omitempty"`
	Encounter                 *reference        `json:"encounter,omitempty"`
	SupportingInformation     []reference       `json:"supportingInformation,omitempty"`
	AuthoredOn                string            `json:"authoredOn,omitempty"`
	Requester                 *reference        `json:"requester,omitempty"`
	ReasonReference           []reference       `json:"reasonReference,omitempty"`
	CourseOfTherapyType       *codeableConcept  `json:"courseOfTherapyType,omitempty"`
	DosageInstruction         []dosage          `json:"dosageInstruction,omitempty"`
}

type adminPerformer struct {
	Function *codeableConcept `json:"function,omitempty"`
	Actor    reference        `json:"actor"`
}

type adminDosage struct {
	Text  string           `json:"text,omitempty"`
	Route *codeableConcept `json:"route,omitempty"`
	Dose  *quantity        `json:"dose,omitempty"`
}

type medicationAdministrationRes struct {
	base
	Contained                 []medicationRes  `json:"contained,omitempty"`
	Status                    string           `json:"status,omitempty"`
	Category                  *codeableConcept `json:"category,omitempty"`
	MedicationCodeableConcept *codeableConcept `json:"medicationCodeableConcept,omitempty"`
	MedicationReference       *reference       `json:"medicationReference,omitempty"`
	Subject                   *reference       `json:"subject,omitempty"`
	Context                   *reference       `json:"context,omitempty"`
	EffectiveDateTime         string           `json:"effectiveDateTime,omitempty"`
	EffectivePeriod           *period          `json:"effectivePeriod,omitempty"`
	Performer                 []adminPerformer `json:"performer,omitempty"`
	Request                   *reference       `json:"request,omitempty"`
	Dosage                    *adminDosage     `json:"dosage,omitempty"`
}

type obsComponent struct {
	Code          codeableConcept `json:"code"`
	ValueQuantity *quantity       `json:"valueQuantity,omitempty"`
}

type observationRes struct {
	base
	Status               string            `json:"status,omitempty"`
	Category             []codeableConcept `json:"category,omitempty"`
	Code                 *codeableConcept  `json:"code,omitempty"`
	Subject              *reference        `json:"subject,omitempty"`
	Focus                []reference       `json:"focus,omitempty"`
	Encounter            *reference        `json:"encounter,omitempty"`
	EffectiveDateTime    string            `json:"effectiveDateTime,omitempty"`
	Performer            []reference       `json:"performer,omitempty"`
	ValueQuantity        *quantity         `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *codeableConcept  `json:"valueCodeableConcept,omitempty"`
	ValueBoolean         *bool             `json:"valueBoolean,omitempty"`
	ValueInteger         *int              `json:"valueInteger,omitempty"`
	HasMember            []reference       `json:"hasMember,omitempty"`
	DerivedFrom          []reference       `json:"derivedFrom,omitempty"`
	Component            []obsComponent    `json:"component,omitempty"`
}

type consentActor struct {
	Role      codeableConcept `json:"role"`
	Reference reference       `json:"reference"`
}

type consentProvision struct {
	Type    string            `json:"type,omitempty"`
	Period  *period           `json:"period,omitempty"`
	Actor   []consentActor    `json:"actor,omitempty"`
	Purpose []Coding          `json:"purpose,omitempty"`
	Code    []codeableConcept `json:"code,omitempty"`
}

type consentPolicy struct {
	URI string `json:"uri,omitempty"`
}

type consentRes struct {
	base
	Status          string            `json:"status,omitempty"`
	Scope           *codeableConcept  `json:"scope,omitempty"`
	Category        []codeableConcept `json:"category,omitempty"`
	Patient         *reference        `json:"patient,omitempty"`
	DateTime        string            `json:"dateTime,omitempty"`
	SourceReference *reference        `json:"sourceReference,omitempty"`
	Policy          []consentPolicy   `json:"policy,omitempty"`
	PolicyRule      *codeableConcept  `json:"policyRule,omitempty"`
	Provision       *consentProvision `json:"provision,omitempty"`
}

type goalRes struct {
	base
	LifecycleStatus string            `json:"lifecycleStatus,omitempty"`
	Category        []codeableConcept `json:"category,omitempty"`
	Description     *codeableConcept  `json:"description,omitempty"`
	Subject         *reference        `json:"subject,omitempty"`
	StartDate       string            `json:"startDate,omitempty"`
	ExpressedBy     *reference        `json:"expressedBy,omitempty"`
	Addresses       []reference       `json:"addresses,omitempty"`
}

type activityDetail struct {
	Code            *codeableConcept `json:"code,omitempty"`
	Status          string           `json:"status"`
	ScheduledPeriod *period          `json:"scheduledPeriod,omitempty"`
	Description     string           `json:"description,omitempty"`
}

type carePlanActivity struct {
	Detail *activityDetail `json:"detail,omitempty"`
}

type carePlanRes struct {
	base
	Status    string             `json:"status,omitempty"`
	Intent    string             `json:"intent,omitempty"`
	Category  []codeableConcept  `json:"category,omitempty"`
	Subject   *reference         `json:"subject,omitempty"`
	Encounter *reference         `json:"encounter,omitempty"`
	Period    *period            `json:"period,omitempty"`
	Activity  []carePlanActivity `json:"activity,omitempty"`
}

type flagRes struct {
	base
	Status    string            `json:"status,omitempty"`
	Category  []codeableConcept `json:"category,omitempty"`
	Code      *codeableConcept  `json:"code,omitempty"`
	Subject   *reference        `json:"subject,omitempty"`
	Period    *period           `json:"period,omitempty"`
	Encounter *reference        `json:"encounter,omitempty"`
}
