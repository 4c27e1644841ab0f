package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/mappings"
)

// ErrNotEmpty refuses to seed a store that already holds KAP clients.
var ErrNotEmpty = errors.New("the store already holds KAP clients: seed adds a whole clinic to an empty store only (--force adds it anyway)")

// Summary counts what Load wrote, in clinic terms (no names or ids).
type Summary struct {
	TeamMembers, Clients, Escorts, Programs, FinishedPrograms int
	Consents, Intentions, Prescriptions, Administrations      int
	Measurements, Discharges                                  int
	Sessions                                                  map[string]int // by kind
}

// Write prints the summary.
func (s Summary) Write(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "seeded in %s\n", took.Round(time.Second))
	row := func(name string, n int) { fmt.Fprintf(w, "  %-26s %5d\n", name, n) }
	row("team members", s.TeamMembers)
	row("clients", s.Clients)
	row("escorts", s.Escorts)
	row("programs", s.Programs)
	row("programs finished", s.FinishedPrograms)
	kinds := make([]string, 0, len(s.Sessions))
	for k := range s.Sessions {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		row("sessions "+k, s.Sessions[k])
	}
	row("dosing sessions discharged", s.Discharges)
	row("prescriptions", s.Prescriptions)
	row("administrations", s.Administrations)
	row("measurements", s.Measurements)
	row("consents", s.Consents)
	row("intentions", s.Intentions)
}

// LoadOptions steer Load.
type LoadOptions struct {
	// Force loads into a store that already holds clients.
	Force bool
	// Progress, if set, is called after each client (a count, no data).
	Progress func(done, total int)
}

// Load writes the clinic through the KAP service, so each write passes the
// same rules as a clinician's request (a refusal is a bug of the plan,
// reported with the client's index). Unless forced, a store that already
// holds a client is refused.
func Load(ctx context.Context, svc *kap.Service, c Clinic, o LoadOptions) (Summary, error) {
	sum := Summary{Sessions: map[string]int{}}
	if !o.Force {
		page, err := svc.Clients(ctx, kap.ListOptions{Limit: 1})
		if err != nil {
			return sum, err
		}
		if len(page.Items) > 0 {
			return sum, ErrNotEmpty
		}
	}
	team := make([]string, len(c.Team))
	for i, tm := range c.Team {
		tm, err := svc.CreateTeamMember(ctx, tm)
		if err != nil {
			return sum, fmt.Errorf("team member %d: %w", i, err)
		}
		team[i] = tm.ID
		sum.TeamMembers++
	}
	for i, cl := range c.Clients {
		l := loader{svc: svc, team: team, c: cl, sum: &sum}
		if err := l.load(ctx); err != nil {
			return sum, fmt.Errorf("client %d (%s): %w", i, l.step, err)
		}
		if o.Progress != nil {
			o.Progress(i+1, len(c.Clients))
		}
	}
	return sum, nil
}

// loader writes one client's program.
type loader struct {
	svc  *kap.Service
	team []string
	c    Client
	sum  *Summary
	step string // what is being written, for an error

	client, escort, program, rx string
	indications                 []string
}

func (l *loader) member(i int) string { return l.team[i] }

func (l *loader) load(ctx context.Context) error {
	c := l.c
	l.step = "client"
	cl, err := l.svc.CreateClient(ctx, c.Client)
	if err != nil {
		return err
	}
	l.client = cl.ID
	l.sum.Clients++
	l.step = "escort"
	e := c.Escort
	e.ClientID = l.client
	if e, err = l.svc.CreateEscort(ctx, e); err != nil {
		return err
	}
	l.escort = e.ID
	l.sum.Escorts++
	l.step = "program"
	p, err := l.svc.CreateProgram(ctx, mappings.Program{
		ClientID: l.client, Status: "active", Start: rfc(c.Sessions[0].Start), Indications: c.Indications,
		CareManagerID: l.member(c.Therapist), PlannedDosingSessions: c.PlannedDosing,
		Team: []mappings.ProgramMember{
			{MemberID: l.member(c.Therapist), Role: "psychotherapist"},
			{MemberID: l.member(c.Prescriber), Role: "prescriber"},
			{MemberID: l.member(c.Nurse), Role: "nurse"},
		},
	})
	if err != nil {
		return err
	}
	l.program = p.ID
	for _, in := range p.Indications {
		l.indications = append(l.indications, in.ID)
	}
	l.sum.Programs++
	l.step = "consents"
	for _, co := range c.Consents {
		co.ClientID = l.client
		if _, err := l.svc.CreateConsent(ctx, co); err != nil {
			return err
		}
		l.sum.Consents++
	}
	preparations := 0
	for _, s := range c.Sessions {
		l.step = s.Kind + " session"
		id, err := l.session(ctx, s)
		if err != nil {
			return err
		}
		l.sum.Sessions[s.Kind]++
		if s.Status == "planned" {
			continue
		}
		if err := l.scales(ctx, id, s); err != nil {
			return err
		}
		switch s.Kind {
		case "medical-assessment":
			err = l.prescribe(ctx, id, s.End)
		case "preparation":
			if preparations++; preparations == 1 {
				err = l.intentions(ctx, s.Start)
			}
		}
		if err != nil {
			return err
		}
	}
	if !c.End.IsZero() {
		l.step = "program status"
		if _, err := l.svc.SetProgramStatus(ctx, l.program, kap.ProgramStatusInput{Status: "finished", Time: rfc(c.End)}); err != nil {
			return err
		}
		l.sum.FinishedPrograms++
	}
	return nil
}

// session writes a session; a dosing session that started runs its dose,
// vitals and (when observed) the discharge.
func (l *loader) session(ctx context.Context, s Session) (string, error) {
	lead := l.member(l.c.Therapist)
	if s.Kind == "medical-assessment" {
		lead = l.member(l.c.Prescriber)
	}
	in := kap.SessionInput{Session: mappings.Session{
		ProgramID: l.program, Kind: s.Kind, Status: s.Status, Start: rfc(s.Start),
		Participants: []mappings.SessionParticipant{{MemberID: lead, Role: "lead"}},
	}}
	if !s.End.IsZero() && s.Dose == nil {
		in.End = rfc(s.End)
	}
	if s.Kind != "dosing" {
		se, err := l.svc.CreateSession(ctx, in)
		return se.ID, err
	}
	in.Product = "ketamine"
	if l.c.Rx.Route == "intranasal" {
		in.Product = "esketamine"
	}
	in.Participants = append(in.Participants, mappings.SessionParticipant{MemberID: l.member(l.c.Nurse), Role: "secondary"})
	if s.Dose == nil {
		se, err := l.svc.CreateSession(ctx, in)
		return se.ID, err
	}
	id, err := l.startDosing(ctx, in, s)
	if err != nil {
		return id, err
	}
	return id, l.dose(ctx, id, s)
}

// startDosing starts a dosing session. The one under way now was planned,
// and its escort confirmed on arrival; the past ones are written started
// with the escort in one request.
func (l *loader) startDosing(ctx context.Context, in kap.SessionInput, s Session) (string, error) {
	order := kap.DosingOrder{PrescriptionID: l.rx}
	nurse := l.member(l.c.Nurse)
	if s.Status == "in-progress" {
		in.Status = "planned"
		se, err := l.svc.CreateSession(ctx, in)
		if err != nil {
			return "", err
		}
		if _, err := l.svc.ConfirmEscort(ctx, se.ID, kap.EscortConfirmation{EscortID: l.escort, Time: rfc(s.Start.Add(-10 * time.Minute)), PerformerID: nurse}); err != nil {
			return se.ID, err
		}
		_, err = l.svc.SetSessionStatus(ctx, se.ID, kap.SessionStatusInput{Status: "in-progress", Time: rfc(s.Start), DosingOrder: order})
		return se.ID, err
	}
	in.Status, in.EscortID, in.DosingOrder = "in-progress", l.escort, order
	se, err := l.svc.CreateSession(ctx, in)
	return se.ID, err
}

// dose records the vitals, the dose and, when observed, readiness and
// the discharge to the escort.
func (l *loader) dose(ctx context.Context, id string, s Session) error {
	d := s.Dose
	nurse := l.member(l.c.Nurse)
	if err := l.vitals(ctx, id, d.Pre); err != nil {
		return err
	}
	a := mappings.Administration{
		SessionID: id, PrescriptionID: l.rx, Product: l.c.Rx.Product, StrengthMg: dec(l.c.Rx.StrengthMg),
		Route: l.c.Rx.Route, DoseMg: dec(d.Mg), Status: "completed",
	}
	if d.Until.IsZero() {
		a.Time = rfc(d.At)
	} else {
		a.Start, a.End = rfc(d.At), rfc(d.Until)
	}
	if a.Route == "intranasal" { // the client sprays, observed by the nurse (REMS)
		a.SelfAdministered, a.WitnessID = true, nurse
	} else {
		a.PerformerID, a.WitnessID = l.member(l.c.Prescriber), nurse
	}
	l.step = "administration"
	if _, err := l.svc.CreateAdministration(ctx, kap.AdministrationInput{Administration: a}); err != nil {
		return err
	}
	l.sum.Administrations++
	if d.Ready.IsZero() {
		return nil
	}
	if err := l.vitals(ctx, id, d.Post); err != nil {
		return err
	}
	l.step = "discharge"
	if err := l.measure(ctx, mappings.Measurement{SessionID: id, Kind: "discharge-ready", Time: rfc(d.Ready), PerformerID: nurse, Finding: new(true)}); err != nil {
		return err
	}
	if _, err := l.svc.Discharge(ctx, id, kap.DischargeInput{Time: rfc(d.Ready), ReleasedToEscort: true, PerformerID: nurse}); err != nil {
		return err
	}
	l.sum.Discharges++
	return nil
}

func (l *loader) vitals(ctx context.Context, session string, v Vitals) error {
	l.step = "vitals"
	nurse, at := l.member(l.c.Nurse), rfc(v.At)
	for _, m := range []mappings.Measurement{
		{Kind: "bp", Systolic: dec(strconv.Itoa(v.Systolic)), Diastolic: dec(strconv.Itoa(v.Diastolic))},
		{Kind: "hr", Value: dec(strconv.Itoa(v.HR))},
		{Kind: "spo2", Value: dec(strconv.Itoa(v.SpO2))},
	} {
		m.SessionID, m.Time, m.PerformerID = session, at, nurse
		if err := l.measure(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// scales records the questionnaires of a session, at its start.
func (l *loader) scales(ctx context.Context, session string, s Session) error {
	l.step = "scales"
	for _, sc := range []struct {
		kind  string
		score *Scale
	}{{"phq9", s.PHQ9}, {"gad7", s.GAD7}} {
		if sc.score == nil {
			continue
		}
		m := mappings.Measurement{SessionID: session, Kind: sc.kind, Time: rfc(s.Start), Items: sc.score.Items}
		if m.Items == nil {
			m.Total = &sc.score.Total
		}
		if err := l.measure(ctx, m); err != nil {
			return err
		}
	}
	if s.Kind == "medical-assessment" {
		return l.measure(ctx, mappings.Measurement{SessionID: session, Kind: "weight", Time: rfc(s.Start.Add(10 * time.Minute)), Value: dec(l.c.WeightKg), PerformerID: l.member(l.c.Nurse)})
	}
	return nil
}

func (l *loader) measure(ctx context.Context, m mappings.Measurement) error {
	m.ClientID = l.client
	if _, err := l.svc.CreateMeasurement(ctx, m); err != nil {
		return err
	}
	l.sum.Measurements++
	return nil
}

// prescribe writes the prescription at the end of the medical assessment.
func (l *loader) prescribe(ctx context.Context, session string, at time.Time) error {
	l.step = "prescription"
	rx := l.c.Rx
	p, err := l.svc.CreatePrescription(ctx, kap.PrescriptionInput{Prescription: mappings.Prescription{
		ProgramID: l.program, SessionID: session, Product: rx.Product, StrengthMg: dec(rx.StrengthMg), Route: rx.Route,
		Dose: rx.Dose, MaxPerAdministrationMg: dec(rx.MaxMg), PlannedSessions: l.c.PlannedDosing, Status: "active",
		PrescriberID: l.member(l.c.Prescriber), AuthoredOn: rfc(at), IndicationIDs: l.indications[:1], Course: "acute", Text: rx.Text,
	}})
	if err != nil {
		return err
	}
	l.rx = p.ID
	l.sum.Prescriptions++
	return nil
}

// intentions are set in the first preparation session.
func (l *loader) intentions(ctx context.Context, at time.Time) error {
	l.step = "intentions"
	for _, text := range l.c.Intentions {
		if _, err := l.svc.CreateIntention(ctx, mappings.Intention{ClientID: l.client, Text: text, Status: "active", Start: at.Format(time.DateOnly), IndicationIDs: l.indications[:1]}); err != nil {
			return err
		}
		l.sum.Intentions++
	}
	return nil
}
