package kap

import (
	"context"
	"net/url"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/mappings"
)

// The KAP API in clinic terms. Creates assign the ids (the request's are
// ignored), so a request's resources can refer to each other before they
// are stored.

// OverrideInput is a clinician's override as the API takes it: the rule
// codes, the reason and the team member id of the clinician.
type OverrideInput struct {
	Rules     []RuleCode `json:"rules"`
	Reason    string     `json:"reason"`
	Clinician string     `json:"clinician"`
}

func (o *OverrideInput) request() *OverrideRequest {
	if o == nil {
		return nil
	}
	r := &OverrideRequest{Rules: o.Rules, Reason: o.Reason}
	if o.Clinician != "" {
		r.Clinician = "Practitioner/" + o.Clinician
	}
	return r
}

// SessionInput creates a session. A dosing session created arrived or
// in-progress starts at once, so the dosing rules apply: the order is the
// named prescription, or the session's product by Route.
type SessionInput struct {
	mappings.Session
	DosingOrder
	Override *OverrideInput `json:"override,omitempty"`
}

// DosingOrder names what a dosing session gives, for the dosing rules.
type DosingOrder struct {
	PrescriptionID string `json:"prescriptionId,omitempty"`
	Route          string `json:"route,omitempty"`
}

// SessionStatusInput changes a session's status at Time (default: now).
type SessionStatusInput struct {
	Status string `json:"status"`
	Time   string `json:"time,omitempty"`
	DosingOrder
	Override *OverrideInput `json:"override,omitempty"`
}

// ProgramStatusInput changes a program's status at Time (default: now).
type ProgramStatusInput struct {
	Status string `json:"status"`
	Time   string `json:"time,omitempty"`
}

// PrescriptionInput creates a prescription; for an mg/kg dose the service
// calculates the mg from the latest body weight of the program.
type PrescriptionInput struct {
	mappings.Prescription
	Override *OverrideInput `json:"override,omitempty"`
}

// AdministrationInput records a dose given in a dosing session.
type AdministrationInput struct {
	mappings.Administration
	Override *OverrideInput `json:"override,omitempty"`
}

// EscortConfirmation confirms the escort of a dosing session.
type EscortConfirmation struct {
	EscortID    string `json:"escortId"`
	Time        string `json:"time,omitempty"`
	PerformerID string `json:"performerId,omitempty"`
}

// DischargeInput discharges a dosing session at Time (default: now).
// EscortID defaults to the escort confirmed for the session. Note is the
// clinician's text of the session note; REMS the clinician's answers of the
// REMS form (esketamine sessions only).
type DischargeInput struct {
	Time             string                `json:"time,omitempty"`
	ReleasedToEscort bool                  `json:"releasedToEscort"`
	EscortID         string                `json:"escortId,omitempty"`
	PerformerID      string                `json:"performerId,omitempty"`
	Note             string                `json:"note,omitempty"`
	REMS             *mappings.REMSAnswers `json:"rems,omitempty"`
	Override         *OverrideInput        `json:"override,omitempty"`
}

// Clients.

// CreateClient stores a client (Patient).
func (s *Service) CreateClient(ctx context.Context, c mappings.Client) (mappings.Client, error) {
	c.ID = resource.NewID()
	rs, err := s.m.ClientToFHIR(c)
	if err != nil {
		return c, err
	}
	ops, err := s.ops(rs, nil, nil, mappings.Labels{})
	if err != nil {
		return c, err
	}
	idx, err := s.emptyIndex(c.ID)
	if err != nil {
		return c, err
	}
	if idx != nil {
		ops = append(ops, idx)
	}
	return c, s.commit(ctx, ops, nil)
}

// Client reads a client.
func (s *Service) Client(ctx context.Context, id string) (mappings.Client, error) {
	it, err := get(ctx, s, clientView, id, "client")
	return it.val, err
}

// Clients lists the clients.
func (s *Service) Clients(ctx context.Context, o ListOptions) (Page[mappings.Client], error) {
	return listPage(ctx, s, clientView, nil, o, nil)
}

// Team members.

// CreateTeamMember stores a team member (Practitioner and PractitionerRole).
func (s *Service) CreateTeamMember(ctx context.Context, tm mappings.TeamMember) (mappings.TeamMember, error) {
	tm.ID = resource.NewID()
	rs, err := s.m.TeamMemberToFHIR(tm)
	if err != nil {
		return tm, err
	}
	return tm, s.write(ctx, rs, nil, nil, mappings.Labels{})
}

// TeamMember reads a team member.
func (s *Service) TeamMember(ctx context.Context, id string) (mappings.TeamMember, error) {
	it, err := get(ctx, s, teamView, id, "team member")
	return it.val, err
}

// TeamMembers lists the team members.
func (s *Service) TeamMembers(ctx context.Context, o ListOptions) (Page[mappings.TeamMember], error) {
	return listPage(ctx, s, teamView, nil, o, nil)
}

// Programs.

// CreateProgram enrolls a client: EpisodeOfCare, Conditions, CareTeam and
// dosing plan. Without a status history, the status starts at Start.
func (s *Service) CreateProgram(ctx context.Context, p mappings.Program) (mappings.Program, error) {
	p.ID = resource.NewID()
	for i := range p.Indications {
		p.Indications[i].ID = resource.NewID()
	}
	if len(p.StatusHistory) == 0 && p.Status != "" && p.Start != "" {
		p.StatusHistory = []mappings.StatusChange{{Status: p.Status, Start: p.Start}}
	}
	if err := exists(ctx, s, clientView, "clientId", p.ClientID); err != nil {
		return p, err
	}
	rs, err := s.m.ProgramToFHIR(p)
	if err != nil {
		return p, err
	}
	return p, s.write(ctx, rs, nil, nil, s.m.ProgramLabels(p))
}

// Program reads a program.
func (s *Service) Program(ctx context.Context, id string) (mappings.Program, error) {
	it, err := get(ctx, s, programView, id, "program")
	return it.val, err
}

// ProgramFilter selects programs; empty fields select all.
type ProgramFilter struct {
	ClientID string
	Status   string
}

// Programs lists programs.
func (s *Service) Programs(ctx context.Context, f ProgramFilter, o ListOptions) (Page[mappings.Program], error) {
	q := url.Values{}
	if f.ClientID != "" {
		q.Set("patient", "Patient/"+f.ClientID)
	}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	return listPage(ctx, s, programView, q, o, nil)
}

// SetProgramStatus changes a program's status: the open status history
// entry ends and a new one starts. The program must not have changed since
// it was read (else 409).
func (s *Service) SetProgramStatus(ctx context.Context, id string, in ProgramStatusInput) (mappings.Program, error) {
	it, err := get(ctx, s, programView, id, "program")
	if err != nil {
		return mappings.Program{}, err
	}
	at, err := timeField("time", in.Time, s.now())
	if err != nil {
		return it.val, err
	}
	p := it.val
	when := at.Format(time.RFC3339)
	for i := range p.StatusHistory {
		if p.StatusHistory[i].End == "" {
			p.StatusHistory[i].End = when
		}
	}
	p.Status = in.Status
	p.StatusHistory = append(p.StatusHistory, mappings.StatusChange{Status: in.Status, Start: when})
	if in.Status == "finished" || in.Status == "cancelled" {
		p.End = when
	}
	rs, err := s.m.ProgramToFHIR(p)
	if err != nil {
		return p, err
	}
	return p, s.write(ctx, rs, map[string]int64{"EpisodeOfCare/" + id: it.rec.VersionID}, nil, s.m.ProgramLabels(p))
}

// Summary is the program summary now.
func (s *Service) Summary(ctx context.Context, programID string) (Summary, error) {
	r, err := s.programRecords(ctx, programID)
	if err != nil {
		return Summary{}, err
	}
	return Summarize(s.rules, r.summaryFacts(s.now())), nil
}

// exists checks that the id a request field names is stored: a 422 naming
// the field when not (an empty id is left to the mappings' checks).
func exists[T any](ctx context.Context, s *Service, v view[T], field, id string) error {
	if id == "" {
		return nil
	}
	_, err := get(ctx, s, v, id, field)
	if fault.Is(err, fault.NotFound) {
		return fault.New(fault.Unprocessable, field, "%s %q names nothing stored", field, id)
	}
	return err
}

// Client-level records, labelled like the client's programs.

// clientLabels are the labels of all the client's programs: a client in a
// substance-use program has every clinical resource labelled so.
func (s *Service) clientLabels(ctx context.Context, clientID string) (mappings.Labels, error) {
	// The client's index holds the labels of every KAP write for the
	// client, its programs' included: a read by id instead of a search.
	idx, err := s.readIndex(ctx, clientID)
	if err != nil || idx != nil && idx.version != 0 {
		return idx.labelsOrNone(), err
	}
	ps, err := listAll(ctx, s, programView, url.Values{"patient": {"Patient/" + clientID}}, nil)
	var l mappings.Labels
	for _, p := range ps {
		l.SubstanceUse = l.SubstanceUse || s.m.ProgramLabels(p.val).SubstanceUse
	}
	return l, err
}

// createForClient stores a client-level record mapped by to.
func createForClient[T any](ctx context.Context, s *Service, clientID string, v T, to func(*mappings.Mapper, T, mappings.Labels) ([]mappings.Resource, error)) (T, error) {
	return raced(ctx, func(ctx context.Context) (T, error) {
		if err := exists(ctx, s, clientView, "clientId", clientID); err != nil {
			return v, err
		}
		l, err := s.clientLabels(ctx, clientID)
		if err != nil {
			return v, err
		}
		rs, err := to(s.m, v, l)
		if err != nil {
			return v, err
		}
		return v, s.write(ctx, rs, nil, nil, l)
	})
}

// byClient lists a client's records of a view.
func byClient[T any](ctx context.Context, s *Service, v view[T], param, clientID string, o ListOptions, keep func(T) bool) (Page[T], error) {
	return listPage(ctx, s, v, url.Values{param: {"Patient/" + clientID}}, o, keep)
}

// CreateEscort stores a client's escort (RelatedPerson).
func (s *Service) CreateEscort(ctx context.Context, e mappings.Escort) (mappings.Escort, error) {
	e.ID = resource.NewID()
	return createForClient(ctx, s, e.ClientID, e, (*mappings.Mapper).EscortToFHIR)
}

// Escort reads an escort.
func (s *Service) Escort(ctx context.Context, id string) (mappings.Escort, error) {
	it, err := get(ctx, s, escortView, id, "escort")
	return it.val, err
}

// Escorts lists a client's escorts.
func (s *Service) Escorts(ctx context.Context, clientID string, o ListOptions) (Page[mappings.Escort], error) {
	return byClient(ctx, s, escortView, "patient", clientID, o, nil)
}

// CreateConsent stores a consent.
func (s *Service) CreateConsent(ctx context.Context, c mappings.Consent) (mappings.Consent, error) {
	c.ID = resource.NewID()
	return createForClient(ctx, s, c.ClientID, c, (*mappings.Mapper).ConsentToFHIR)
}

// Consent reads a consent.
func (s *Service) Consent(ctx context.Context, id string) (mappings.Consent, error) {
	it, err := get(ctx, s, consentView, id, "consent")
	return it.val, err
}

// Consents lists a client's consents.
func (s *Service) Consents(ctx context.Context, clientID string, o ListOptions) (Page[mappings.Consent], error) {
	return byClient(ctx, s, consentView, "patient", clientID, o, nil)
}

// CreateIntention stores an intention (Goal).
func (s *Service) CreateIntention(ctx context.Context, in mappings.Intention) (mappings.Intention, error) {
	in.ID = resource.NewID()
	return createForClient(ctx, s, in.ClientID, in, (*mappings.Mapper).IntentionToFHIR)
}

// Intention reads an intention.
func (s *Service) Intention(ctx context.Context, id string) (mappings.Intention, error) {
	it, err := get(ctx, s, intentionView, id, "intention")
	return it.val, err
}

// Intentions lists a client's intentions.
func (s *Service) Intentions(ctx context.Context, clientID string, o ListOptions) (Page[mappings.Intention], error) {
	return byClient(ctx, s, intentionView, "patient", clientID, o, nil)
}

// Measurements.

// sessionLabels reads the session a request names in sessionId and the
// labels of its program.
func (s *Service) sessionLabels(ctx context.Context, sessionID string) (mappings.Session, mappings.Labels, error) {
	se, err := get(ctx, s, sessionView, sessionID, "session")
	if fault.Is(err, fault.NotFound) {
		return se.val, mappings.Labels{}, fault.New(fault.Unprocessable, "sessionId", "sessionId names no session")
	}
	if err != nil {
		return se.val, mappings.Labels{}, err
	}
	p, err := get(ctx, s, programView, se.val.ProgramID, "program")
	return se.val, s.m.ProgramLabels(p.val), err
}

// sameClient is the client of a request whose session or program gives
// it: the request's may be left out, and must not be another.
func sameClient(given, want string) (string, error) {
	if given != "" && given != want {
		return given, fault.New(fault.Unprocessable, "clientId", "clientId is not the client of the session or program")
	}
	return want, nil
}

// CreateMeasurement stores a measurement; totals and severities of scales
// are computed from the items. It is labelled like its session's program,
// or without a session like the client's programs.
func (s *Service) CreateMeasurement(ctx context.Context, m mappings.Measurement) (mappings.Measurement, error) {
	return raced(ctx, func(ctx context.Context) (mappings.Measurement, error) { return s.createMeasurement(ctx, m) })
}

func (s *Service) createMeasurement(ctx context.Context, m mappings.Measurement) (mappings.Measurement, error) {
	m.ID = resource.NewID()
	var l mappings.Labels
	var err error
	if m.SessionID == "" {
		if err = exists(ctx, s, clientView, "clientId", m.ClientID); err == nil {
			l, err = s.clientLabels(ctx, m.ClientID)
		}
	} else {
		var se mappings.Session
		if se, l, err = s.sessionLabels(ctx, m.SessionID); err == nil {
			m.ClientID, err = sameClient(m.ClientID, se.ClientID)
		}
	}
	if err != nil {
		return m, err
	}
	rs, err := s.m.MeasurementToFHIR(m, l)
	if err != nil {
		return m, err
	}
	if err := s.write(ctx, rs, nil, nil, l); err != nil {
		return m, err
	}
	stored, _ := s.m.MeasurementFromFHIR(rs) // the computed total and severity
	return stored, nil
}

// Measurement reads a measurement.
func (s *Service) Measurement(ctx context.Context, id string) (mappings.Measurement, error) {
	it, err := get(ctx, s, measureView, id, "measurement")
	return it.val, err
}

// MeasurementFilter selects a client's measurements; empty fields select
// all.
type MeasurementFilter struct {
	SessionID string
	Kind      string
}

// Measurements lists a client's measurements.
func (s *Service) Measurements(ctx context.Context, clientID string, f MeasurementFilter, o ListOptions) (Page[mappings.Measurement], error) {
	q := url.Values{"patient": {"Patient/" + clientID}}
	if f.SessionID != "" {
		q.Set("encounter", "Encounter/"+f.SessionID)
	}
	return listPage(ctx, s, measureView, q, o, func(m mappings.Measurement) bool { return f.Kind == "" || m.Kind == f.Kind })
}
