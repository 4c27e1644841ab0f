package kap

import (
	"context"
	"errors"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/mappings"
)

// The documents a session leaves: its note (what EHRs that take no
// MedicationAdministration receive) and, for an esketamine dosing session,
// the REMS monitoring data set. Both are written in the unit that finishes
// the session.

// signer is the clinician who signs a session's documents: the one given
// (a discharge's performer), else the session's lead participant, else its
// first, else the program's care manager, else its psychotherapist, else
// its first team member (a session recorded without participants still
// gets its note); "" when nobody is named.
func signer(given string, se mappings.Session, p mappings.Program) string {
	if given != "" {
		return given
	}
	for _, x := range se.Participants {
		if x.Role == "lead" {
			return x.MemberID
		}
	}
	if len(se.Participants) > 0 {
		return se.Participants[0].MemberID
	}
	if p.CareManagerID != "" {
		return p.CareManagerID
	}
	for _, m := range p.Team {
		if m.Role == "psychotherapist" {
			return m.MemberID
		}
	}
	if len(p.Team) > 0 {
		return p.Team[0].MemberID
	}
	return ""
}

// sessionNote is the note DocumentReference <session>-note of a finished
// session at date: its doses and measurements, and text. Nothing when
// nobody can sign it.
func (s *Service) sessionNote(r *records, se mappings.Session, author, text, date string) ([]mappings.Resource, error) {
	if author == "" {
		return nil, nil
	}
	var admins []mappings.Administration
	for _, a := range r.administrations {
		if a.SessionID == se.ID {
			admins = append(admins, a)
		}
	}
	var ms []mappings.Measurement
	for _, m := range r.measurements {
		if m.SessionID == se.ID {
			ms = append(ms, m)
		}
	}
	return s.m.SessionNoteToFHIR(mappings.Document{ID: se.ID + "-note", AuthorID: author, Date: date, Text: text}, se, admins, ms, r.labels)
}

// esketamine: the session is an esketamine dosing session, which has a
// REMS form.
func esketamine(se mappings.Session) bool {
	return se.Kind == string(Dosing) && se.Product == string(Esketamine)
}

// remsGroup is what REMSFromFHIR reads for a session: the session's
// resources first (as stored, or as about to be written), the program's
// records, and the Patient, Practitioners and Organization they refer to.
func (s *Service) remsGroup(ctx context.Context, r *records, session []mappings.Resource) ([]mappings.Resource, error) {
	replaced := map[string]bool{}
	for _, x := range session {
		replaced[x.Ref()] = true
	}
	group := append([]mappings.Resource(nil), session...)
	for _, x := range r.pool {
		if !replaced[x.Ref()] {
			group = append(group, x)
		}
	}
	for _, typ := range []string{"Patient", "Practitioner", "Organization"} {
		rs, err := s.byID(ctx, typ, refsTo(group, typ, true))
		if err != nil {
			return nil, err
		}
		group = append(group, rs...)
	}
	return group, nil
}

// rems is the REMS monitoring data set of an esketamine dosing session
// being discharged: the form derived from the session's resources (session
// holds them as they are about to be written) with the clinician's
// answers, as Observations and the form DocumentReference <session>-rems-form.
func (s *Service) rems(ctx context.Context, r *records, session []mappings.Resource, answers *mappings.REMSAnswers, author, date string) ([]mappings.Resource, error) {
	group, err := s.remsGroup(ctx, r, session)
	if err != nil {
		return nil, err
	}
	f, ok := s.m.REMSFromFHIR(group)
	if !ok {
		return nil, fault.New(fault.Internal, "", "the esketamine session does not read back as a REMS form")
	}
	if answers != nil {
		f.REMSAnswers = *answers
	}
	obs, err := s.m.REMSToFHIR(f, r.labels)
	if err != nil {
		return nil, prefixed(err, "rems.")
	}
	if f.MonitoringHCP != nil {
		author = f.MonitoringHCP.ID
	}
	if author == "" {
		return obs, nil
	}
	doc, err := s.m.REMSDocumentToFHIR(mappings.Document{ID: f.SessionID + "-rems-form", AuthorID: author, Date: date}, f, r.labels)
	return append(obs, doc...), prefixed(err, "rems.")
}

// REMSForm is the Spravato REMS Patient Monitoring Form of an esketamine
// dosing session, read from its resources (404 for another session).
func (s *Service) REMSForm(ctx context.Context, sessionID string) (mappings.REMSForm, error) {
	r, it, err := s.sessionRecords(ctx, sessionID)
	if err != nil {
		return mappings.REMSForm{}, err
	}
	if !esketamine(it.val) {
		return mappings.REMSForm{}, fault.New(fault.NotFound, "", "session %q is not an esketamine dosing session: it has no REMS form", sessionID)
	}
	group, err := s.remsGroup(ctx, r, []mappings.Resource{resourceOf(it.rec)})
	if err != nil {
		return mappings.REMSForm{}, err
	}
	f, _ := s.m.REMSFromFHIR(group)
	return f, nil
}

// prefixed names the request field holding a nested input in the
// expressions of err.
func prefixed(err error, prefix string) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	for i := range fe.Issues {
		for j, e := range fe.Issues[i].Expression {
			fe.Issues[i].Expression[j] = prefix + e
		}
	}
	return err
}
