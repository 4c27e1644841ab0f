package kap

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// records are a program's resources as the KAP model reads them: what the
// rules and the summary decide on.
type records struct {
	m               *mappings.Mapper
	program         item[mappings.Program]
	labels          mappings.Labels
	sessions        []item[mappings.Session]
	prescriptions   []mappings.Prescription
	administrations []mappings.Administration
	measurements    []mappings.Measurement
	consents        []mappings.Consent
	noDriving       []NoDrivingFlag
	// pool is every resource read: the client's records of clientTypes.
	pool []mappings.Resource
}

// clientTypes are the types of a client's records the rules and the
// summary read.
var clientTypes = []string{"Encounter", "CarePlan", "MedicationRequest", "MedicationAdministration", "Observation", "Consent", "Flag"}

// programRecords reads a program and its records: the program by id, and
// the client's records of clientTypes by id from the client's index
// (index.go), which every write of the store keeps current. A client
// without an index (written through /fhir and never written by the KAP
// API) is read by one query over its compartment (as $everything does).
func (s *Service) programRecords(ctx context.Context, programID string) (*records, error) {
	r, err := s.program(ctx, programID)
	if err != nil {
		return nil, err
	}
	return r, s.load(ctx, r)
}

// program reads a program alone: records without the client's records,
// for a write that needs the program's labels but no facts.
func (s *Service) program(ctx context.Context, programID string) (*records, error) {
	p, err := get(ctx, s, programView, programID, "program")
	if err != nil {
		return nil, err
	}
	return &records{m: s.m, program: p, labels: s.m.ProgramLabels(p.val)}, nil
}

// load reads the client's records of r's program into r.
func (s *Service) load(ctx context.Context, r *records) error {
	p, programID := r.program, r.program.val.ID
	idx, err := s.readIndex(ctx, p.val.ClientID)
	if err != nil {
		return err
	}
	var recs []*store.Record
	if idx != nil && idx.version != 0 {
		recs, err = s.indexed(ctx, idx)
	} else {
		recs, err = s.compartment(ctx, p.val.ClientID, clientTypes)
	}
	if err != nil {
		return err
	}
	byType := map[string][]*store.Record{}
	pool := make([]mappings.Resource, len(recs))
	for i, rec := range recs {
		byType[rec.Type] = append(byType[rec.Type], rec)
		pool[i] = resourceOf(rec)
	}
	r.pool = pool
	r.sessions = mapGroup(s, sessionView, byType["Encounter"], pool, nil, func(x mappings.Session) bool { return x.ProgramID == programID })
	inProgram := map[string]bool{}
	for _, se := range r.sessions {
		inProgram[se.val.ID] = true
	}
	r.prescriptions = values(mapGroup(s, prescriptView, byType["MedicationRequest"], nil, nil,
		func(x mappings.Prescription) bool { return x.ProgramID == programID }))
	r.administrations = values(mapGroup(s, administerView, byType["MedicationAdministration"], nil, nil,
		func(x mappings.Administration) bool { return inProgram[x.SessionID] }))
	// An Observation another one refers to (a panel's item or total) is
	// part of that measurement. Measurements outside any session (a
	// PHQ-9 sent home) belong to the client's program too.
	var observations []mappings.Resource
	for _, rec := range byType["Observation"] {
		observations = append(observations, resourceOf(rec))
	}
	members := map[string]bool{}
	for _, ref := range refsTo(observations, "Observation", false) {
		members[ref] = true
	}
	r.measurements = values(mapGroup(s, measureView, byType["Observation"], observations, members,
		func(x mappings.Measurement) bool { return x.SessionID == "" || inProgram[x.SessionID] }))
	r.consents = values(mapGroup(s, consentView, byType["Consent"], nil, nil, nil))
	for _, rec := range byType["Flag"] {
		if f, ok := s.noDrivingFlag(rec, inProgram); ok {
			r.noDriving = append(r.noDriving, f)
		}
	}
	return nil
}

// raced runs a write again, maxRaces times at most, when it lost a race
// (409). A KAP write reads what it decides on itself (no If-Match comes
// from the client), so deciding again on what the winner stored is what
// the request would have got a moment later; concurrent writes for one
// client race on its index, which writes through /fhir update too.
func raced[T any](ctx context.Context, write func(context.Context) (T, error)) (T, error) {
	v, err := write(ctx)
	for i := 0; i < maxRaces && fault.Is(err, fault.Conflict); i++ {
		v, err = write(ctx)
	}
	return v, err
}

// maxRaces bounds how often a KAP write is decided again after losing a
// race: about one loss per concurrent writer for the client.
const maxRaces = 5

// compartment reads the current resources of types in the client's
// compartment, page after page of one query.
func (s *Service) compartment(ctx context.Context, clientID string, types []string) ([]*store.Record, error) {
	req, err := search.Everything(s.reg, clientID, url.Values{"_type": {strings.Join(types, ",")}}, false)
	if err != nil {
		return nil, err
	}
	q := &store.Query{Types: req.Types, And: req.Conds, Sort: req.Sort, Limit: maxLimit}
	var all []*store.Record
	for {
		recs, more, err := s.res.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
		if !more || len(recs) == 0 {
			return all, nil
		}
		q.After = recs[len(recs)-1].Keys
	}
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

// route is the rules' route of a route key of the mappings' table; false
// for an unknown key.
func route(m *mappings.Mapper, key string) (Route, bool) {
	name, ok := m.RouteName(key)
	return Route(name), ok
}

// routeKeyError is the 400 of a route key not in the mappings' table.
func routeKeyError(m *mappings.Mapper, key string) error {
	return fault.New(fault.Invalid, "route", "route %q is not one of %s", key, strings.Join(m.RouteKeys(), ", ")).WithCode("value")
}

// checkKeys refuses (400) a product or route key not in the mappings'
// tables before the rules run, so a typo is not reported as a missing
// prescription.
func checkKeys(m *mappings.Mapper, product, routeKey string) error {
	if _, ok := m.ProductFamily(product); !ok {
		return fault.New(fault.Invalid, "product", "product %q is not a product of the KAP tables", product).WithCode("value")
	}
	if _, ok := route(m, routeKey); !ok {
		return routeKeyError(m, routeKey)
	}
	return nil
}

// family is the product family of a product key of the mappings' table
// ("" for an unknown key, which matches no prescription).
func family(m *mappings.Mapper, product string) Product {
	f, _ := m.ProductFamily(product)
	return Product(f)
}

// productCode is the product a prescription or dose names: "" for the
// family's generic entry, which matches any product of the family.
func productCode(m *mappings.Mapper, product string) string {
	if product == string(family(m, product)) {
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
		out = append(out, prescriptionFact(r.m, p))
	}
	return out
}

func prescriptionFact(m *mappings.Mapper, p mappings.Prescription) Prescription {
	rt, _ := route(m, p.Route)
	f := Prescription{ID: p.ID, Product: family(m, p.Product), Code: productCode(m, p.Product), Route: rt, Status: p.Status}
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

func administrationFact(m *mappings.Mapper, a mappings.Administration) Administration {
	rt, _ := route(m, a.Route)
	f := Administration{Product: family(m, a.Product), Route: rt, Status: a.Status, Time: parseTime(a.Time)}
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
		f.Administrations = append(f.Administrations, administrationFact(r.m, a))
	}
	for _, m := range r.measurements {
		if m.Kind == "phq9" && m.Total != nil {
			f.PHQ9 = append(f.PHQ9, Score{Total: *m.Total, Time: parseTime(m.Time)})
		}
	}
	f.NoDriving = r.noDriving
	return f
}

// jsonNumber is a decimal as the mappings take it, exact.
func jsonNumber(d Decimal) json.Number { return json.Number(d.String()) }

// noDrivingFlag reads a kap#no-driving Flag of one of the program's
// sessions (the mappings have no Flag view: its status and end are all the
// summary needs, and a clinician may end it through the FHIR API).
func (s *Service) noDrivingFlag(rec *store.Record, inProgram map[string]bool) (NoDrivingFlag, bool) {
	var f struct {
		Status string `json:"status"`
		Code   struct {
			Coding []struct{ System, Code string } `json:"coding"`
		} `json:"code"`
		Period    struct{ End string }       `json:"period"`
		Encounter struct{ Reference string } `json:"encounter"`
	}
	if json.Unmarshal([]byte(rec.Raw), &f) != nil {
		return NoDrivingFlag{}, false
	}
	session, _ := strings.CutPrefix(f.Encounter.Reference, "Encounter/")
	if !inProgram[session] || !slices.ContainsFunc(f.Code.Coding, func(c struct{ System, Code string }) bool {
		return c.System == s.m.KapSystem() && c.Code == "no-driving"
	}) {
		return NoDrivingFlag{}, false
	}
	return NoDrivingFlag{Session: session, Status: f.Status, End: parseTime(f.Period.End)}, true
}
