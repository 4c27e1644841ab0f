package mappings

import (
	"encoding/json"
	"fmt"
)

const (
	sysMRCategory     = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
	sysCourse         = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
	sysDoseRateType   = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
	sysPerformFunc    = "http://terminology.hl7.org/CodeSystem/med-admin-perform-function"
	sysMACategory     = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
	containedMedID    = "med"
	unitMg, unitMgKg  = "mg", "mg/kg"
	functionPerformer = "performer"
	functionWitness   = "witness"
)

// Dose is an ordered dose: a value in mg, or in mg/kg of body weight.
type Dose struct {
	Value json.Number `json:"value"`
	Unit  string      `json:"unit"` // mg | mg/kg
}

// Prescription is a ketamine or esketamine order (MedicationRequest; a
// compounded troche is a contained Medication).
type Prescription struct {
	ID        string `json:"id"`
	ClientID  string `json:"clientId"`
	ProgramID string `json:"programId"`
	SessionID string `json:"sessionId,omitempty"` // the medical assessment
	Product   string `json:"product"`
	// StrengthMg is the strength of one compounded troche.
	StrengthMg json.Number `json:"strengthMg,omitempty"`
	Route      string      `json:"route"`
	Dose       Dose        `json:"dose"`
	// CalculatedMg and WeightObservationID go together, for a mg/kg dose
	// only: the caller computes the mg from the recorded body weight. Both
	// absent is an mg/kg order written without a weight (a clinician
	// overrode dose.weight-required): the ordered dose alone.
	CalculatedMg           json.Number `json:"calculatedMg,omitempty"`
	WeightObservationID    string      `json:"weightObservationId,omitempty"`
	MaxPerAdministrationMg json.Number `json:"maxPerAdministrationMg,omitempty"`
	PlannedSessions        int         `json:"plannedSessions,omitempty"`
	Status                 string      `json:"status"`
	PrescriberID           string      `json:"prescriberId"`
	AuthoredOn             string      `json:"authoredOn"`
	IndicationIDs          []string    `json:"indicationIds,omitempty"`
	Course                 string      `json:"course,omitempty"` // acute | continuous
	Text                   string      `json:"text,omitempty"`
}

// Administration is a dose given in a dosing session
// (MedicationAdministration).
type Administration struct {
	ID             string      `json:"id"`
	ClientID       string      `json:"clientId"`
	SessionID      string      `json:"sessionId"`
	PrescriptionID string      `json:"prescriptionId,omitempty"`
	Product        string      `json:"product"`
	StrengthMg     json.Number `json:"strengthMg,omitempty"`
	Route          string      `json:"route"`
	DoseMg         json.Number `json:"doseMg"`
	// Time for a dose given at once, or Start/End for an infusion or a troche
	// held until swallowed.
	Time  string `json:"time,omitempty"`
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	// PerformerID is the team member who gave the dose; SelfAdministered
	// (esketamine) makes the client the performer, observed by WitnessID.
	PerformerID      string `json:"performerId,omitempty"`
	SelfAdministered bool   `json:"selfAdministered,omitempty"`
	WitnessID        string `json:"witnessId,omitempty"`
	LotNumber        string `json:"lotNumber,omitempty"`
	Status           string `json:"status"`
}

var (
	prescriptionStatuses   = []string{"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft"}
	administrationStatuses = []string{"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped"}
	courses                = map[string]Coding{
		"acute":      {System: sysCourse, Code: "acute", Display: "Short course (acute) therapy"},
		"continuous": {System: sysCourse, Code: "continuous", Display: "Continuous long term therapy"},
	}
)

func (m *Mapper) checkProduct(productKey string, strength json.Number, routeKey string) error {
	if err := check(
		checkEnum("product", productKey, keys(m.t.products, func(p *product) string { return p.Product }), true),
		checkEnum("route", routeKey, keys(m.t.routes, func(r *route) string { return r.Route }), true),
		checkDecimal("strengthMg", strength, false),
	); err != nil {
		return err
	}
	p := m.t.product(productKey)
	if p.Compounded && strength == "" {
		return missing("strengthMg")
	}
	if !p.Compounded && strength != "" {
		return invalid("strengthMg", "strengthMg applies to a compounded product only")
	}
	return nil
}

// medication codes a product (§4.1): a coded product is a
// medicationCodeableConcept; a compounded one, or one with a lot number, is
// a contained Medication referred to as #med.
func (m *Mapper) medication(productKey string, strength json.Number, lot string) (*codeableConcept, []medicationRes, *reference) {
	p := m.t.product(productKey)
	code := Coding{System: sysRxNorm, Code: p.RxNorm, Display: p.Display}
	if !p.Compounded && lot == "" {
		return cc(code), nil, nil
	}
	med := medicationRes{base: base{ResourceType: "Medication", ID: containedMedID}}
	if p.Compounded {
		med.Meta = &meta{Profile: []string{usCore("us-core-medication")}}
		med.Code = &codeableConcept{Text: fmt.Sprintf(p.Text, strength)}
		med.Ingredient = []ingredient{{
			ItemCodeableConcept: cc(code),
			Strength: &ratio{
				Numerator:   &quantity{Value: strength, Unit: unitMg, System: sysUCUM, Code: unitMg},
				Denominator: &quantity{Value: "1", Unit: "troche", System: sysUCUM, Code: "{troche}"},
			},
		}}
	} else {
		med.Code = cc(code)
	}
	if lot != "" {
		med.Batch = &batch{LotNumber: lot}
	}
	return nil, []medicationRes{med}, &reference{Reference: "#" + containedMedID}
}

// productOf reads the product back: the RxNorm code of the concept or of the
// contained Medication; a contained Medication with a RxNorm ingredient and
// an mg strength is the compounded product.
func (m *Mapper) productOf(c *codeableConcept, contained []medicationRes, r *reference) (key string, strength json.Number, lot string) {
	if r != nil && len(r.Reference) > 1 && r.Reference[0] == '#' {
		for _, med := range contained {
			if med.ID != r.Reference[1:] {
				continue
			}
			if med.Batch != nil {
				lot = med.Batch.LotNumber
			}
			c = med.Code
			for _, p := range m.t.products {
				if p.Compounded && len(med.Ingredient) > 0 && med.Ingredient[0].ItemCodeableConcept.has(sysRxNorm, p.RxNorm) &&
					med.Ingredient[0].Strength != nil && med.Ingredient[0].Strength.Numerator != nil && med.Ingredient[0].Strength.Numerator.Code == unitMg {
					return p.Product, med.Ingredient[0].Strength.Numerator.Value, lot
				}
			}
		}
	}
	for _, p := range m.t.products {
		if !p.Compounded && c.has(sysRxNorm, p.RxNorm) {
			return p.Product, "", lot
		}
	}
	return "", "", ""
}

func (m *Mapper) routeCC(key string) *codeableConcept {
	r := m.t.route(key)
	return cc(Coding{System: sysSNOMED, Code: r.Code, Display: r.Display})
}

func (m *Mapper) routeOf(c *codeableConcept) string {
	for _, r := range m.t.routes {
		if c.has(sysSNOMED, r.Code) {
			return r.Route
		}
	}
	return ""
}

func mg(v json.Number) *quantity {
	if v == "" {
		return nil
	}
	return &quantity{Value: v, Unit: unitMg, System: sysUCUM, Code: unitMg}
}

func (m *Mapper) checkPrescription(p Prescription) error {
	if err := check(
		checkID("id", p.ID, true),
		checkID("clientId", p.ClientID, true),
		checkID("programId", p.ProgramID, true),
		checkID("sessionId", p.SessionID, false),
		m.checkProduct(p.Product, p.StrengthMg, p.Route),
		checkDecimal("dose.value", p.Dose.Value, true),
		checkEnum("dose.unit", p.Dose.Unit, []string{unitMg, unitMgKg}, true),
		checkDecimal("calculatedMg", p.CalculatedMg, p.WeightObservationID != ""),
		checkID("weightObservationId", p.WeightObservationID, p.CalculatedMg != ""),
		checkDecimal("maxPerAdministrationMg", p.MaxPerAdministrationMg, false),
		checkEnum("status", p.Status, prescriptionStatuses, true),
		checkID("prescriberId", p.PrescriberID, true),
		checkDateTime("authoredOn", p.AuthoredOn, true),
		checkIDs("indicationIds", p.IndicationIDs),
		checkEnum("course", p.Course, mapKeys(courses), false),
	); err != nil {
		return err
	}
	if p.Dose.Unit == unitMg && p.CalculatedMg != "" {
		return invalid("calculatedMg", "calculatedMg applies to a mg/kg dose only")
	}
	if p.PlannedSessions < 0 {
		return invalid("plannedSessions", "plannedSessions must not be negative")
	}
	return nil
}

// PrescriptionToFHIR maps a prescription to a US Core MedicationRequest
// (§4.3): intent order, category outpatient, route (§4.2), the ordered dose
// (and for mg/kg the calculated mg, with the weight Observation in
// supportingInformation, when a weight was recorded), the maximum per administration, and the planned
// sessions as timing.repeat.count. l is the program's label set.
func (m *Mapper) PrescriptionToFHIR(p Prescription, l Labels) ([]Resource, error) {
	if err := m.checkPrescription(p); err != nil {
		return nil, err
	}
	concept, contained, medRef := m.medication(p.Product, p.StrengthMg, "")
	d := dosage{Text: p.Text, Route: m.routeCC(p.Route), MaxDosePerAdministration: mg(p.MaxPerAdministrationMg)}
	if p.PlannedSessions > 0 {
		d.Timing = &timing{Repeat: &timingRepeat{Count: p.PlannedSessions}}
	}
	if p.Dose.Unit == unitMg {
		d.DoseAndRate = []doseAndRate{{DoseQuantity: mg(p.Dose.Value)}}
	} else {
		d.DoseAndRate = []doseAndRate{
			{Type: cc(Coding{System: sysDoseRateType, Code: "ordered", Display: "Ordered"}), DoseQuantity: &quantity{Value: p.Dose.Value, Unit: unitMgKg, System: sysUCUM, Code: unitMgKg}},
		}
		if p.CalculatedMg != "" {
			d.DoseAndRate = append(d.DoseAndRate, doseAndRate{Type: cc(Coding{System: sysDoseRateType, Code: "calculated", Display: "Calculated"}), DoseQuantity: mg(p.CalculatedMg)})
		}
	}
	mr := medicationRequestRes{
		base:                      base{ResourceType: "MedicationRequest", ID: p.ID, Meta: m.meta("us-core-medicationrequest", l)},
		Contained:                 contained,
		Status:                    p.Status,
		Intent:                    "order",
		Category:                  []codeableConcept{{Coding: []Coding{{System: sysMRCategory, Code: "outpatient", Display: "Outpatient"}}}},
		ReportedBoolean:           ptr(false),
		MedicationCodeableConcept: concept,
		MedicationReference:       medRef,
		Subject:                   ref("Patient", p.ClientID),
		Encounter:                 ref("Encounter", p.SessionID),
		SupportingInformation:     []reference{*ref("EpisodeOfCare", p.ProgramID)},
		AuthoredOn:                p.AuthoredOn,
		Requester:                 ref("Practitioner", p.PrescriberID),
		ReasonReference:           refs("Condition", p.IndicationIDs),
		DosageInstruction:         []dosage{d},
	}
	if p.WeightObservationID != "" {
		mr.SupportingInformation = append(mr.SupportingInformation, *ref("Observation", p.WeightObservationID))
	}
	if c, ok := courses[p.Course]; ok {
		mr.CourseOfTherapyType = cc(c)
	}
	var e emitter
	e.add("MedicationRequest", p.ID, mr)
	return e.result()
}

// PrescriptionFromFHIR reads a MedicationRequest whose medication is a
// product of the table (§4.1). Dose, route and the rest are read where
// present; an unknown route is left empty.
func (m *Mapper) PrescriptionFromFHIR(rs []Resource) (Prescription, bool) {
	mr, ok := first[medicationRequestRes](newGroup(rs), "MedicationRequest")
	if !ok {
		return Prescription{}, false
	}
	key, strength, _ := m.productOf(mr.MedicationCodeableConcept, mr.Contained, mr.MedicationReference)
	if key == "" {
		return Prescription{}, false
	}
	p := Prescription{
		ID: mr.ID, ClientID: refID(mr.Subject, "Patient"), SessionID: refID(mr.Encounter, "Encounter"),
		Product: key, StrengthMg: strength, Status: mr.Status, PrescriberID: refID(mr.Requester, "Practitioner"),
		AuthoredOn: mr.AuthoredOn, IndicationIDs: refIDs(mr.ReasonReference, "Condition"),
	}
	if ids := refIDs(mr.SupportingInformation, "EpisodeOfCare"); len(ids) > 0 {
		p.ProgramID = ids[0]
	}
	if ids := refIDs(mr.SupportingInformation, "Observation"); len(ids) > 0 {
		p.WeightObservationID = ids[0]
	}
	for k, c := range courses {
		if mr.CourseOfTherapyType.has(c.System, c.Code) {
			p.Course = k
		}
	}
	if len(mr.DosageInstruction) == 0 {
		return p, true
	}
	d := mr.DosageInstruction[0]
	p.Text, p.Route = d.Text, m.routeOf(d.Route)
	if d.Timing != nil && d.Timing.Repeat != nil {
		p.PlannedSessions = d.Timing.Repeat.Count
	}
	if q := d.MaxDosePerAdministration; q != nil && q.Code == unitMg {
		p.MaxPerAdministrationMg = q.Value
	}
	for _, dr := range d.DoseAndRate {
		q := dr.DoseQuantity
		switch {
		case q == nil:
		case q.Code == unitMgKg:
			p.Dose = Dose{Value: q.Value, Unit: unitMgKg}
		case q.Code == unitMg && dr.Type.has(sysDoseRateType, "calculated"):
			p.CalculatedMg = q.Value
		case q.Code == unitMg:
			p.Dose = Dose{Value: q.Value, Unit: unitMg}
		}
	}
	return p, true
}

func (m *Mapper) checkAdministration(a Administration) error {
	if err := check(
		checkID("id", a.ID, true),
		checkID("clientId", a.ClientID, true),
		checkID("sessionId", a.SessionID, true),
		checkID("prescriptionId", a.PrescriptionID, false),
		m.checkProduct(a.Product, a.StrengthMg, a.Route),
		checkDecimal("doseMg", a.DoseMg, true),
		checkDateTime("time", a.Time, false),
		checkDateTime("start", a.Start, false),
		checkDateTime("end", a.End, false),
		checkID("performerId", a.PerformerID, false),
		checkID("witnessId", a.WitnessID, false),
		checkEnum("status", a.Status, administrationStatuses, true),
	); err != nil {
		return err
	}
	switch {
	case a.Time == "" && a.Start == "":
		return missing("time")
	case a.Time != "" && (a.Start != "" || a.End != ""):
		return invalid("time", "give time or start/end, not both")
	case a.SelfAdministered && m.t.product(a.Product).Family != "esketamine":
		return invalid("selfAdministered", "only esketamine is self-administered")
	case a.SelfAdministered && a.PerformerID != "":
		return invalid("performerId", "a self-administered dose has the client as performer: give witnessId")
	case !a.SelfAdministered && a.PerformerID == "":
		return missing("performerId")
	}
	return nil
}

// AdministrationToFHIR maps a dose to a MedicationAdministration (§4.4, no
// US Core profile): performer and witness functions, the session as context,
// the lot number on a contained Medication. l is the program's label set.
func (m *Mapper) AdministrationToFHIR(a Administration, l Labels) ([]Resource, error) {
	if err := m.checkAdministration(a); err != nil {
		return nil, err
	}
	concept, contained, medRef := m.medication(a.Product, a.StrengthMg, a.LotNumber)
	performer := ref("Practitioner", a.PerformerID)
	if a.SelfAdministered {
		performer = ref("Patient", a.ClientID)
	}
	function := func(code, display string) *codeableConcept {
		return cc(Coding{System: sysPerformFunc, Code: code, Display: display})
	}
	ma := medicationAdministrationRes{
		base:                      base{ResourceType: "MedicationAdministration", ID: a.ID, Meta: m.meta("", l)},
		Contained:                 contained,
		Status:                    a.Status,
		Category:                  cc(Coding{System: sysMACategory, Code: "outpatient", Display: "Outpatient"}),
		MedicationCodeableConcept: concept,
		MedicationReference:       medRef,
		Subject:                   ref("Patient", a.ClientID),
		Context:                   ref("Encounter", a.SessionID),
		EffectiveDateTime:         a.Time,
		Performer:                 []adminPerformer{{Function: function(functionPerformer, "Performer"), Actor: *performer}},
		Request:                   ref("MedicationRequest", a.PrescriptionID),
		Dosage:                    &adminDosage{Route: m.routeCC(a.Route), Dose: mg(a.DoseMg)},
	}
	if a.Start != "" {
		ma.EffectivePeriod = &period{Start: a.Start, End: a.End}
	}
	if a.WitnessID != "" {
		ma.Performer = append(ma.Performer, adminPerformer{Function: function(functionWitness, "Witness"), Actor: *ref("Practitioner", a.WitnessID)})
	}
	var e emitter
	e.add("MedicationAdministration", a.ID, ma)
	return e.result()
}

// AdministrationFromFHIR reads a MedicationAdministration whose medication is
// a product of the table and whose dose is in mg.
func (m *Mapper) AdministrationFromFHIR(rs []Resource) (Administration, bool) {
	ma, ok := first[medicationAdministrationRes](newGroup(rs), "MedicationAdministration")
	if !ok || ma.Dosage == nil || ma.Dosage.Dose == nil || ma.Dosage.Dose.Code != unitMg {
		return Administration{}, false
	}
	key, strength, lot := m.productOf(ma.MedicationCodeableConcept, ma.Contained, ma.MedicationReference)
	if key == "" {
		return Administration{}, false
	}
	a := Administration{
		ID: ma.ID, ClientID: refID(ma.Subject, "Patient"), SessionID: refID(ma.Context, "Encounter"),
		PrescriptionID: refID(ma.Request, "MedicationRequest"), Product: key, StrengthMg: strength,
		Route: m.routeOf(ma.Dosage.Route), DoseMg: ma.Dosage.Dose.Value, Time: ma.EffectiveDateTime,
		LotNumber: lot, Status: ma.Status,
	}
	if ma.EffectivePeriod != nil {
		a.Start, a.End = ma.EffectivePeriod.Start, ma.EffectivePeriod.End
	}
	for _, p := range ma.Performer {
		switch {
		case p.Function.has(sysPerformFunc, functionWitness) || p.Function.has(sysPerformFunc, "verifier"):
			a.WitnessID = refID(&p.Actor, "Practitioner")
		case refID(&p.Actor, "Patient") != "":
			a.SelfAdministered = true
		default:
			a.PerformerID = refID(&p.Actor, "Practitioner")
		}
	}
	return a, true
}
