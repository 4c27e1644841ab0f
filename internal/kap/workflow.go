package kap

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/mappings"
)

// The writes the rules decide on: sessions starting, prescriptions,
// administrations and discharges.

// started: the Encounter statuses of a session under way.
func started(status string) bool {
	return status == "arrived" || status == "in-progress"
}

// fields renames the request fields a refusal names (the rules name
// "program", "dose", ...) to the JSON fields of the request at hand.
func fields(err error, names map[string]string) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	for i := range fe.Issues {
		for j, e := range fe.Issues[i].Expression {
			if n, ok := names[e]; ok {
				fe.Issues[i].Expression[j] = n
			}
		}
	}
	return err
}

var dosingFields = map[string]string{"program": "programId", "prescription": "prescriptionId", "product": "route", "escort": "escortId"}

// programOf reads the program a request names in field, with the client's
// records when facts is set: a 422 naming the field when it is not stored.
func (s *Service) programOf(ctx context.Context, field, id string, facts bool) (*records, error) {
	if id == "" {
		return nil, fault.New(fault.Invalid, field, "%s is required", field).WithCode("required")
	}
	read := s.program
	if facts {
		read = s.programRecords
	}
	r, err := read(ctx, id)
	if fault.Is(err, fault.NotFound) {
		return nil, fault.New(fault.Unprocessable, field, "%s %q names no program", field, id)
	}
	return r, err
}

// order is what a dosing session gives: the named prescription, or the
// session's product by route.
func (r *records) order(o DosingOrder, product string) (Order, error) {
	if o.PrescriptionID != "" {
		for _, p := range r.prescriptions {
			if p.ID == o.PrescriptionID {
				rt, _ := route(r.m, p.Route)
				return Order{Prescription: p.ID, Product: family(r.m, p.Product), Code: productCode(r.m, p.Product), Route: rt}, nil
			}
		}
		rt, _ := route(r.m, o.Route)
		return Order{Prescription: o.PrescriptionID, Product: family(r.m, product), Route: rt}, nil
	}
	rt, ok := route(r.m, o.Route)
	switch {
	case o.Route == "":
		return Order{}, fault.New(fault.Invalid, "route", "starting a dosing session needs prescriptionId or route").WithCode("required")
	case !ok:
		return Order{}, routeKeyError(r.m, o.Route)
	}
	return Order{Product: family(r.m, product), Route: rt}, nil
}

// checkStart applies the dosing rules to a dosing session starting at at.
func (s *Service) checkStart(r *records, se mappings.Session, o DosingOrder, escortConfirmed bool, ov *OverrideInput, at time.Time) ([]Override, error) {
	order, err := r.order(o, se.Product)
	if err != nil {
		return nil, err
	}
	f := DosingFacts{
		At: at, ProgramStatus: r.program.val.Status, Sessions: r.factSessions(), Order: order,
		Prescriptions: r.factPrescriptions(), Consents: r.factConsents(),
		EscortConfirmed: escortConfirmed || len(r.times(se.ID, "escort-confirmed")) > 0,
	}
	os, err := Resolve(CheckDosing(s.rules, f), ov.request(), at)
	return os, fields(err, dosingFields)
}

// CreateSession stores a session of a program. A dosing session created
// arrived or in-progress starts now: the dosing rules apply, and an
// escortId given confirms the escort in the same write.
func (s *Service) CreateSession(ctx context.Context, in SessionInput) (mappings.Session, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Session, error) { return s.createSession(ctx, in) })
}

func (s *Service) createSession(ctx context.Context, in SessionInput) (mappings.Session, error) {
	se := in.Session
	se.ID = resource.NewID()
	// Only a dosing session that starts needs the program's facts: a new
	// session has no doses or measurements yet for its note.
	r, err := s.programOf(ctx, "programId", se.ProgramID, se.Kind == string(Dosing) && started(se.Status))
	if err != nil {
		return se, err
	}
	if se.ClientID, err = sameClient(se.ClientID, r.program.val.ClientID); err != nil {
		return se, err
	}
	switch {
	case se.Discharge != nil:
		return se, fault.New(fault.Invalid, "discharge", "a discharge is recorded by POST /kap/v1/sessions/{id}/discharge").WithCode("business-rule")
	case se.Kind == string(Dosing) && se.Status == "finished":
		return se, fault.New(fault.Unprocessable, "status", "a dosing session finishes with its discharge: create it planned or started").WithCode("business-rule")
	}
	var overrides []Override
	var extra []mappings.Resource
	if se.Kind == string(Dosing) && started(se.Status) {
		at, err := timeField("start", se.Start, s.now())
		if err != nil {
			return se, err
		}
		if se.Start == "" {
			se.Start = at.Format(time.RFC3339)
		}
		if se.EscortID != "" {
			if extra, err = s.confirmation(ctx, se, EscortConfirmation{EscortID: se.EscortID, Time: se.Start}, r.labels); err != nil {
				return se, err
			}
		}
		if overrides, err = s.checkStart(r, se, in.DosingOrder, se.EscortID != "", in.Override, at); err != nil {
			return se, err
		}
	}
	rs, err := s.m.SessionToFHIR(se, r.labels)
	if err != nil {
		return se, err
	}
	if se.Status == "finished" { // not dosing: refused above
		note, err := s.sessionNote(r, se, signer("", se, r.program.val), "", orElseString(se.End, s.now().Format(time.RFC3339)))
		if err != nil {
			return se, err
		}
		extra = append(extra, note...)
	}
	return se, s.write(ctx, append(rs, extra...), nil, overrides, r.labels)
}

func orElseString(v, otherwise string) string {
	if v != "" {
		return v
	}
	return otherwise
}

// Session reads a session.
func (s *Service) Session(ctx context.Context, id string) (mappings.Session, error) {
	it, err := get(ctx, s, sessionView, id, "session")
	return it.val, err
}

// SessionFilter selects a program's sessions; empty fields select all.
type SessionFilter struct {
	Kind   string // intake | medical-assessment | preparation | dosing | integration
	Status string
}

// Sessions lists a program's sessions.
func (s *Service) Sessions(ctx context.Context, programID string, f SessionFilter, o ListOptions) (Page[mappings.Session], error) {
	q := url.Values{"episode-of-care": {"EpisodeOfCare/" + programID}}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	// The kind is read from the type codes (billing codes too), so it is
	// filtered on the mapped sessions.
	return listPage(ctx, s, sessionView, q, o, func(se mappings.Session) bool { return f.Kind == "" || se.Kind == f.Kind })
}

// sessionRecords reads a session and its program's records.
func (s *Service) sessionRecords(ctx context.Context, id string) (*records, item[mappings.Session], error) {
	it, err := get(ctx, s, sessionView, id, "session")
	if err != nil {
		return nil, it, err
	}
	r, err := s.programRecords(ctx, it.val.ProgramID)
	return r, it, err
}

// SetSessionStatus changes a session's status at in.Time (default now):
// arriving or starting sets the start, ending the end. A dosing session
// starting passes the dosing rules; it finishes by its discharge only.
func (s *Service) SetSessionStatus(ctx context.Context, id string, in SessionStatusInput) (mappings.Session, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Session, error) { return s.setSessionStatus(ctx, id, in) })
}

func (s *Service) setSessionStatus(ctx context.Context, id string, in SessionStatusInput) (mappings.Session, error) {
	it, err := get(ctx, s, sessionView, id, "session")
	if err != nil {
		return it.val, err
	}
	se := it.val
	at, err := timeField("time", in.Time, s.now())
	if err != nil {
		return se, err
	}
	dosing := se.Kind == string(Dosing)
	if dosing && in.Status == "finished" && se.Discharge == nil {
		return se, fault.New(fault.Unprocessable, "status", "a dosing session finishes with its discharge (POST /kap/v1/sessions/{id}/discharge)").WithCode("business-rule")
	}
	var overrides []Override
	var l mappings.Labels
	var r *records                             // read when the rules or the note need the program's records
	note := in.Status == "finished" && !dosing // a dosing session's note comes with its discharge
	if (dosing && started(in.Status) && !started(se.Status)) || note {
		if r, err = s.programRecords(ctx, se.ProgramID); err != nil {
			return se, err
		}
		l = r.labels
	} else if _, l, err = s.sessionLabels(ctx, id); err != nil {
		return se, err
	}
	if dosing && started(in.Status) && !started(se.Status) {
		if overrides, err = s.checkStart(r, se, in.DosingOrder, false, in.Override, at); err != nil {
			return se, err
		}
	}
	when := at.Format(time.RFC3339)
	switch {
	case started(in.Status) && se.Start == "":
		se.Start = when
	case in.Status == "finished" || in.Status == "cancelled":
		if se.End == "" {
			se.End = when
		}
	}
	se.Status = in.Status
	rs, err := s.m.SessionToFHIR(se, l)
	if err != nil {
		return se, err
	}
	if note {
		doc, err := s.sessionNote(r, se, signer("", se, r.program.val), "", when)
		if err != nil {
			return se, err
		}
		rs = append(rs, doc...)
	}
	return se, s.write(ctx, rs, map[string]int64{"Encounter/" + id: it.rec.VersionID}, overrides, l)
}

// confirmation is the escort-confirmed finding of a session.
func (s *Service) confirmation(ctx context.Context, se mappings.Session, in EscortConfirmation, l mappings.Labels) ([]mappings.Resource, error) {
	if in.EscortID == "" {
		return nil, fault.New(fault.Invalid, "escortId", "escortId is required").WithCode("required")
	}
	e, err := get(ctx, s, escortView, in.EscortID, "escort")
	if err != nil || e.val.ClientID != se.ClientID {
		if err == nil || fault.Is(err, fault.NotFound) {
			err = fault.New(fault.Unprocessable, "escortId", "escortId names no escort of the client")
		}
		return nil, err
	}
	at, err := timeField("time", in.Time, s.now())
	if err != nil {
		return nil, err
	}
	return s.m.MeasurementToFHIR(mappings.Measurement{
		ID: resource.NewID(), ClientID: se.ClientID, SessionID: se.ID, Kind: "escort-confirmed",
		Time: at.Format(time.RFC3339), PerformerID: in.PerformerID, Finding: new(true), EscortID: in.EscortID,
	}, l)
}

// ConfirmEscort records that the escort will take the client home from the
// session: the escort-confirmed finding, and the escort as the session's
// participant.
func (s *Service) ConfirmEscort(ctx context.Context, sessionID string, in EscortConfirmation) (mappings.Session, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Session, error) { return s.confirmEscort(ctx, sessionID, in) })
}

func (s *Service) confirmEscort(ctx context.Context, sessionID string, in EscortConfirmation) (mappings.Session, error) {
	it, err := get(ctx, s, sessionView, sessionID, "session")
	if err != nil {
		return it.val, err
	}
	se := it.val
	_, l, err := s.sessionLabels(ctx, sessionID)
	if err != nil {
		return se, err
	}
	rs, err := s.confirmation(ctx, se, in, l)
	if err != nil {
		return se, err
	}
	se.EscortID = in.EscortID
	enc, err := s.m.SessionToFHIR(se, l)
	if err != nil {
		return se, err
	}
	return se, s.write(ctx, append(enc, rs...), map[string]int64{"Encounter/" + sessionID: it.rec.VersionID}, nil, l)
}

// CreatePrescription stores a prescription of a program. An mg/kg dose is
// calculated in mg from the program's latest body weight (recorded at or
// before authoredOn); the dose rules apply to the calculated dose.
func (s *Service) CreatePrescription(ctx context.Context, in PrescriptionInput) (mappings.Prescription, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Prescription, error) { return s.createPrescription(ctx, in) })
}

func (s *Service) createPrescription(ctx context.Context, in PrescriptionInput) (mappings.Prescription, error) {
	p := in.Prescription
	p.ID = resource.NewID()
	r, err := s.programOf(ctx, "programId", p.ProgramID, true)
	if err != nil {
		return p, err
	}
	if p.ClientID, err = sameClient(p.ClientID, r.program.val.ClientID); err != nil {
		return p, err
	}
	at, err := timeField("authoredOn", p.AuthoredOn, s.now())
	if err != nil {
		return p, err
	}
	if err := checkKeys(s.m, p.Product, p.Route); err != nil {
		return p, err
	}
	value, err := ParseDecimal(string(p.Dose.Value))
	if err != nil {
		return p, fault.New(fault.Invalid, "dose.value", "dose.value must be a decimal number").WithCode("value")
	}
	self := prescriptionFact(s.m, p)
	self.Status = statusActive // checked as the prescription it will be
	weights, ids := r.weights()
	calc, vs, err := CheckAdministration(AdministrationFacts{
		Time: at, Order: Order{Prescription: p.ID, Product: self.Product, Code: self.Code, Route: self.Route},
		Dose: Dose{Value: value, Unit: DoseUnit(p.Dose.Unit)}, Prescriptions: []Prescription{self}, Weights: weights,
	})
	if err != nil {
		return p, err
	}
	overrides, err := Resolve(vs, in.Override.request(), at)
	if err != nil {
		return p, err
	}
	// The calculation is the service's: without a weight (an overridden
	// dose.weight-required) the order stays in mg/kg alone.
	p.CalculatedMg, p.WeightObservationID = "", ""
	if calc != nil && calc.Weight != nil {
		p.CalculatedMg = jsonNumber(calc.Mg)
		for i := range weights {
			if &weights[i] == calc.Weight {
				p.WeightObservationID = ids[i]
			}
		}
	}
	rs, err := s.m.PrescriptionToFHIR(p, r.labels)
	if err != nil {
		return p, err
	}
	return p, s.write(ctx, rs, nil, overrides, r.labels)
}

// Prescription reads a prescription.
func (s *Service) Prescription(ctx context.Context, id string) (mappings.Prescription, error) {
	it, err := get(ctx, s, prescriptView, id, "prescription")
	return it.val, err
}

// Prescriptions lists a program's prescriptions.
func (s *Service) Prescriptions(ctx context.Context, programID string, o ListOptions) (Page[mappings.Prescription], error) {
	p, err := s.Program(ctx, programID)
	if err != nil {
		return Page[mappings.Prescription]{}, err
	}
	return byClient(ctx, s, prescriptView, "patient", p.ClientID, o, func(x mappings.Prescription) bool { return x.ProgramID == programID })
}

var administrationFields = map[string]string{"dose": "doseMg", "prescription": "prescriptionId", "product": "route"}

// CreateAdministration records a dose given in a dosing session: it needs
// an active prescription of the product and route, within its maximum.
func (s *Service) CreateAdministration(ctx context.Context, in AdministrationInput) (mappings.Administration, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Administration, error) { return s.createAdministration(ctx, in) })
}

func (s *Service) createAdministration(ctx context.Context, in AdministrationInput) (mappings.Administration, error) {
	a := in.Administration
	a.ID = resource.NewID()
	if a.SessionID == "" {
		return a, fault.New(fault.Invalid, "sessionId", "sessionId is required").WithCode("required")
	}
	r, it, err := s.sessionRecords(ctx, a.SessionID)
	if fault.Is(err, fault.NotFound) {
		return a, fault.New(fault.Unprocessable, "sessionId", "sessionId names no session")
	}
	if err != nil {
		return a, err
	}
	if it.val.Kind != string(Dosing) || !started(it.val.Status) {
		// The dosing rules are checked when a session starts: a dose
		// needs a dosing session under way.
		return a, fault.New(fault.Unprocessable, "sessionId", "a dose is given in a dosing session that has started and is not discharged (this one is a %s session, %s)", it.val.Kind, it.val.Status).WithCode("business-rule")
	}
	if a.ClientID, err = sameClient(a.ClientID, it.val.ClientID); err != nil {
		return a, err
	}
	start := a.Time
	if start == "" {
		start = a.Start
	}
	at, err := timeField("time", start, s.now())
	if err != nil {
		return a, err
	}
	dose, err := ParseDecimal(string(a.DoseMg))
	if err != nil {
		return a, fault.New(fault.Invalid, "doseMg", "doseMg must be a decimal number").WithCode("value")
	}
	if err := checkKeys(s.m, a.Product, a.Route); err != nil {
		return a, err
	}
	rt, _ := route(s.m, a.Route)
	weights, _ := r.weights()
	_, vs, err := CheckAdministration(AdministrationFacts{
		Time: at, Order: Order{Prescription: a.PrescriptionID, Product: family(s.m, a.Product), Code: productCode(s.m, a.Product), Route: rt},
		Dose: Dose{Value: dose, Unit: Mg}, Prescriptions: r.factPrescriptions(), Weights: weights,
	})
	if err != nil {
		return a, err
	}
	overrides, err := Resolve(vs, in.Override.request(), at)
	if err != nil {
		return a, fields(err, administrationFields)
	}
	rs, err := s.m.AdministrationToFHIR(a, r.labels)
	if err != nil {
		return a, err
	}
	return a, s.write(ctx, rs, nil, overrides, r.labels)
}

// Administration reads an administration.
func (s *Service) Administration(ctx context.Context, id string) (mappings.Administration, error) {
	it, err := get(ctx, s, administerView, id, "administration")
	return it.val, err
}

// Administrations lists the doses of a session.
func (s *Service) Administrations(ctx context.Context, sessionID string, o ListOptions) (Page[mappings.Administration], error) {
	return listPage(ctx, s, administerView, url.Values{"context": {"Encounter/" + sessionID}}, o, nil)
}

// Discharge ends a dosing session: the discharge rules apply; the session
// is finished with the discharge disposition, the no-driving instruction
// (CarePlan and safety Flag) and the release to the escort.
func (s *Service) Discharge(ctx context.Context, sessionID string, in DischargeInput) (mappings.Session, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Session, error) { return s.discharge(ctx, sessionID, in) })
}

func (s *Service) discharge(ctx context.Context, sessionID string, in DischargeInput) (mappings.Session, error) {
	r, it, err := s.sessionRecords(ctx, sessionID)
	if err != nil {
		return it.val, err
	}
	se := it.val
	switch {
	case se.Kind != string(Dosing):
		return se, fault.New(fault.Unprocessable, "", "only a dosing session is discharged").WithCode("business-rule")
	case se.Discharge != nil:
		return se, fault.New(fault.Conflict, "", "the session is already discharged")
	case in.REMS != nil && !esketamine(se):
		return se, fault.New(fault.Invalid, "rems", "REMS answers are for an esketamine dosing session").WithCode("business-rule")
	}
	at, err := timeField("time", in.Time, s.now())
	if err != nil {
		return se, err
	}
	escort := in.EscortID
	if escort == "" {
		escort = se.EscortID
	}
	f := DischargeFacts{
		Time: at, BloodPressures: r.times(sessionID, "bp"), Ready: r.times(sessionID, "discharge-ready"),
		EscortReleased: in.ReleasedToEscort && escort != "",
	}
	for _, a := range r.administrations {
		if a.SessionID == sessionID {
			f.Administrations = append(f.Administrations, administrationFact(s.m, a))
		}
	}
	overrides, err := Resolve(CheckDischarge(s.rules, f), in.Override.request(), at)
	if err != nil {
		return se, fields(err, map[string]string{"escort": "releasedToEscort"})
	}
	when := at.Format(time.RFC3339)
	se.Status, se.End, se.EscortID = "finished", when, escort
	se.Discharge = &mappings.Discharge{Time: when, ReleasedToEscort: in.ReleasedToEscort, PerformerID: in.PerformerID}
	rs, err := s.m.SessionToFHIR(se, r.labels)
	if err != nil {
		return se, err
	}
	author := signer(in.PerformerID, se, r.program.val)
	docs, err := s.sessionNote(r, se, author, in.Note, when)
	if err != nil {
		return se, err
	}
	if esketamine(se) {
		remsRes, err := s.rems(ctx, r, rs, in.REMS, author, when)
		if err != nil {
			return se, err
		}
		docs = append(docs, remsRes...)
	}
	if err := s.write(ctx, append(append([]mappings.Resource(nil), rs...), docs...), map[string]int64{"Encounter/" + sessionID: it.rec.VersionID}, overrides, r.labels); err != nil {
		return se, err
	}
	out, _ := s.m.SessionFromFHIR(rs) // with the computed end of the instruction
	return out, nil
}
