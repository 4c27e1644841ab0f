package kap

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/mappings"
)

// records are a program's resources as the KAP model reads them: what the
// rules and the summary decide on.
type records struct {
	program         item[mappings.Program]
	labels          mappings.Labels
	sessions        []item[mappings.Session]
	prescriptions   []mappings.Prescription
	administrations []mappings.Administration
	measurements    []mappings.Measurement
	consents        []mappings.Consent
}

// programRecords reads a program and its records: a handful of searches
// (sessions by program, the rest by client), whatever the program's size.
func (s *Service) programRecords(ctx context.Context, programID string) (*records, error) {
	p, err := get(ctx, s, programView, programID, "program")
	if err != nil {
		return nil, err
	}
	r := &records{program: p, labels: s.m.ProgramLabels(p.val)}
	if r.sessions, err = listAll(ctx, s, sessionView, url.Values{"episode-of-care": {"EpisodeOfCare/" + programID}}, nil); err != nil {
		return nil, err
	}
	inProgram := map[string]bool{}
	for _, se := range r.sessions {
		inProgram[se.val.ID] = true
	}
	client := url.Values{"patient": {"Patient/" + p.val.ClientID}}
	ps, err := listAll(ctx, s, prescriptView, client, func(x mappings.Prescription) bool { return x.ProgramID == programID })
	if err != nil {
		return nil, err
	}
	r.prescriptions = values(ps)
	as, err := listAll(ctx, s, administerView, client, func(x mappings.Administration) bool { return inProgram[x.SessionID] })
	if err != nil {
		return nil, err
	}
	r.administrations = values(as)
	// Measurements outside any session (a weight at intake, a PHQ-9 sent
	// home) belong to the client's program too.
	ms, err := listAll(ctx, s, measureView, client, func(x mappings.Measurement) bool { return x.SessionID == "" || inProgram[x.SessionID] })
	if err != nil {
		return nil, err
	}
	r.measurements = values(ms)
	cs, err := listAll(ctx, s, consentView, client, nil)
	if err != nil {
		return nil, err
	}
	r.consents = values(cs)
	return r, nil
}

func values[T any](items []item[T]) []T {
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = it.val
	}
	return out
}

// session finds a session of the program.
func (r *records) session(id string) (item[mappings.Session], bool) {
	i := slices.IndexFunc(r.sessions, func(x item[mappings.Session]) bool { return x.val.ID == id })
	if i < 0 {
		return item[mappings.Session]{}, false
	}
	return r.sessions[i], true
}

// Facts from the mapped records.

// routes maps the mappings' route keys to the rules' routes.
var routes = map[string]Route{"iv": Intravenous, "im": Intramuscular, "sublingual": Sublingual, "buccal": Buccal, "oral": Oral, "intranasal": Intranasal}

// family is the product family of a product key of the mappings' table.
func family(product string) Product {
	if strings.HasPrefix(product, "esketamine") || product == "spravato" {
		return Esketamine
	}
	return Ketamine
}

// productCode is the product a prescription or dose names: "" for the
// family's generic entry, which matches any product of the family.
func productCode(product string) string {
	if product == string(family(product)) {
		return ""
	}
	return product
}

// parseTime reads a FHIR dateTime (a date alone is its first instant, UTC);
// the zero time when absent or unreadable.
func parseTime(v string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t
		}
	}
	return time.Time{}
}

// timeField reads a request's dateTime field: the default when empty, a
// 400 naming the field when unreadable.
func timeField(expr, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fault.New(fault.Invalid, expr, "%s must be a date and time with seconds and zone, e.g. 2026-03-02T09:30:00-05:00", expr).WithCode("value")
	}
	return t, nil
}

func (r *records) factSessions() []Session {
	out := make([]Session, len(r.sessions))
	for i, se := range r.sessions {
		out[i] = Session{ID: se.val.ID, Kind: SessionKind(se.val.Kind), Status: se.val.Status}
	}
	return out
}

func (r *records) factPrescriptions() []Prescription {
	out := make([]Prescription, 0, len(r.prescriptions))
	for _, p := range r.prescriptions {
		out = append(out, prescriptionFact(p))
	}
	return out
}

func prescriptionFact(p mappings.Prescription) Prescription {
	f := Prescription{ID: p.ID, Product: family(p.Product), Code: productCode(p.Product), Route: routes[p.Route], Status: p.Status}
	if p.MaxPerAdministrationMg != "" {
		if d, err := ParseDecimal(string(p.MaxPerAdministrationMg)); err == nil {
			f.MaxMg = &d
		}
	}
	return f
}

func (r *records) factConsents() []Consent {
	var out []Consent
	for _, c := range r.consents {
		if c.Kind != "treatment" || c.Decision != "permit" {
			continue
		}
		start := c.Start
		if start == "" {
			start = c.DateTime
		}
		out = append(out, Consent{Status: c.Status, Start: parseTime(start), End: parseTime(c.End)})
	}
	return out
}

// weights are the program's body weights, with the measurement each came
// from (weights[i] is from ids[i]).
func (r *records) weights() (ws []BodyWeight, ids []string) {
	for _, m := range r.measurements {
		if m.Kind != "weight" {
			continue
		}
		if kg, err := ParseDecimal(string(m.Value)); err == nil {
			ws, ids = append(ws, BodyWeight{Kg: kg, At: parseTime(m.Time)}), append(ids, m.ID)
		}
	}
	return ws, ids
}

func administrationFact(a mappings.Administration) Administration {
	f := Administration{Product: family(a.Product), Route: routes[a.Route], Status: a.Status, Time: parseTime(a.Time)}
	if a.Start != "" {
		f.Time, f.End = parseTime(a.Start), parseTime(a.End)
	}
	return f
}

// findings are the times of a session's measurements of kind that are true
// (kind a finding) or present (a vital).
func (r *records) times(session, kind string) []time.Time {
	var out []time.Time
	for _, m := range r.measurements {
		if m.SessionID == session && m.Kind == kind && (m.Finding == nil || *m.Finding) {
			out = append(out, parseTime(m.Time))
		}
	}
	return out
}

// summaryFacts are the program's records for the summary at at.
func (r *records) summaryFacts(at time.Time) SummaryFacts {
	f := SummaryFacts{At: at, Sessions: r.factSessions(), RecommendedDosingSessions: r.program.val.PlannedDosingSessions}
	for _, a := range r.administrations {
		f.Administrations = append(f.Administrations, administrationFact(a))
	}
	for _, m := range r.measurements {
		if m.Kind == "phq9" && m.Total != nil {
			f.PHQ9 = append(f.PHQ9, Score{Total: *m.Total, Time: parseTime(m.Time)})
		}
	}
	for _, se := range r.sessions {
		if d := se.val.Discharge; d != nil && d.InstructionEnd != "" {
			f.NoDriving = append(f.NoDriving, NoDrivingFlag{Session: se.val.ID, Status: "active", End: parseTime(d.InstructionEnd)})
		}
	}
	return f
}

// jsonNumber is a decimal as the mappings take it, exact.
func jsonNumber(d Decimal) json.Number { return json.Number(d.String()) }
