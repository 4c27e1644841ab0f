// Package disclosure decides whether sensitive data — resources labelled
// 42 CFR Part 2 or SUD in meta.security — may leave the server: to the
// principal of an API request, to a bulk export's requester, to an EHR by
// the outbound sync. One rule serves them all (docs/fhir-behaviour.md,
// "Sensitive data (42 CFR Part 2)"): the disclosure's purpose of use must
// be one the policy allows, and an active Consent of the resource's
// patient must permit it.
//
// A Scope is one disclosure context (a request, an export batch, a sync
// round): it reads each patient's Consents once, however many resources
// it judges.
package disclosure

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

const (
	// SysActCode is the system of the sensitivity labels (mapping spec
	// §10.2, as the mappings write them).
	SysActCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	// sysPrivacyLaw is where 42CFRPart2 lived before it moved to
	// v3-ActCode; older partners still send it.
	sysPrivacyLaw = "http://terminology.hl7.org/CodeSystem/v3-ActUSPrivacyLaw"
	// SysActReason is the system of purposes of use.
	SysActReason = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	// ClientIDSystem is the identifier system by which a Consent's
	// provision.actor may name an OAuth client (its client_id) rather
	// than a FHIR resource.
	ClientIDSystem = "urn:kapfhir:oauth-client-id"
)

// sensitive are the meta.security codes that make a resource Part 2 data.
var sensitive = []string{"42CFRPart2", "SUD"}

// Purposes of use (v3-ActReason).
const (
	Treatment          = "TREAT"
	EmergencyTreatment = "ETREAT"
	Payment            = "HPAYMT"
	Operations         = "HOPERAT"
)

// consentPurposes are the purposes under which a Consent may permit a
// disclosure: treatment, payment and health care operations, which one
// Part 2 consent may cover (the 2024 Final Rule, mapping spec §10.1).
var consentPurposes = []string{Treatment, Payment, Operations}

// Recipient is whom a disclosure goes to and why. It is stored with an
// export job, so an export discloses to whom its kick-off would have.
type Recipient struct {
	// Unrestricted: the anonymous local operator (authentication off),
	// who sees everything; not a disclosure.
	Unrestricted bool
	// Actors are references (Type/id, or absolute) a Consent's
	// provision.actor may name for the recipient: the token's fhirUser,
	// the EHR's Organization.
	Actors []string
	// ClientID is the OAuth client, matched by an actor identifier of
	// ClientIDSystem.
	ClientID string
	// Purposes are the v3-ActReason codes the disclosure is for.
	Purposes []string
}

// RecipientOf is the recipient of a request acting for p.
func RecipientOf(p *auth.Principal) Recipient {
	if p.Anonymous {
		return Recipient{Unrestricted: true}
	}
	r := Recipient{ClientID: p.ClientID, Purposes: slices.Clone(p.PurposeOfUse)}
	if p.FHIRUser != "" {
		r.Actors = []string{p.FHIRUser}
	}
	return r
}

// Searcher reads Consents (store.Store and resource.Service are ones).
type Searcher interface {
	Search(ctx context.Context, q *store.Query) ([]*store.Record, bool, error)
}

// Policy is the rule with the store it reads Consents from.
type Policy struct {
	st  Searcher
	reg *fhir.Registry // for Consent's status and patient parameters
	now func() time.Time
}

// New returns the policy reading Consents from st with the search
// parameters of reg; now is the clock Consent periods are compared with.
func New(st Searcher, reg *fhir.Registry, now func() time.Time) *Policy {
	if now == nil {
		now = time.Now
	}
	return &Policy{st: st, reg: reg, now: now}
}

// Scope returns a disclosure context for r.
func (p *Policy) Scope(r Recipient) *Scope {
	return &Scope{p: p, to: r, consents: map[string][]consent{}}
}

// Scope judges the resources of one disclosure context. A nil Scope is
// work that is not a disclosure (seeding, internal reads): it allows
// everything. It may be used by one request's goroutines at once.
type Scope struct {
	p  *Policy
	to Recipient

	mu         sync.Mutex
	consents   map[string][]consent // by patient reference
	withheld   int
	brokeGlass bool
}

// Allows reports whether the resource (typ/id, its stored JSON) may be
// disclosed. A resource without a sensitivity label always may.
func (s *Scope) Allows(ctx context.Context, typ, id, raw string) (bool, error) {
	if s == nil || s.to.Unrestricted {
		return true, nil
	}
	in, err := read(raw)
	if err != nil || len(in.labels) == 0 {
		return err == nil, err
	}
	purposes := slices.DeleteFunc(slices.Clone(s.to.Purposes), func(p string) bool {
		return p != EmergencyTreatment && !slices.Contains(consentPurposes, p)
	})
	ok, err := s.decide(ctx, typ, id, in, purposes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && !ok {
		s.withheld++
	}
	return ok, err
}

func (s *Scope) decide(ctx context.Context, typ, id string, in *info, purposes []string) (bool, error) {
	if len(purposes) == 0 {
		return false, nil
	}
	if slices.Contains(purposes, EmergencyTreatment) {
		// Break the glass: a medical emergency allows disclosure without
		// consent (42 CFR 2.51). Recorded for the audit.
		s.mu.Lock()
		s.brokeGlass = true
		s.mu.Unlock()
		return true, nil
	}
	patient := in.patient(typ, id)
	if patient == "" {
		return false, nil
	}
	cs, err := s.patientConsents(ctx, patient)
	if err != nil {
		return false, err
	}
	sub := subject{typ: typ, id: id, labels: in.labels, to: s.to, now: s.p.now()}
	for _, c := range cs {
		for _, p := range purposes {
			if sub.purpose = p; c.permits(sub) {
				return true, nil
			}
		}
	}
	return false, nil
}

// Check is Allows as an error: a withheld resource is a 403 whose
// OperationOutcome says nothing of its content.
func (s *Scope) Check(ctx context.Context, typ, id, raw string) error {
	ok, err := s.Allows(ctx, typ, id, raw)
	if err != nil || ok {
		return err
	}
	return Refused()
}

// Refused is the error of a withheld resource.
func Refused() error {
	return fault.New(fault.Forbidden, "", "access to this resource is restricted by the server's disclosure policy (purpose of use and patient consent)").WithCode("suppressed")
}

// WithheldIssue is the warning that announces n withheld resources
// (what: "resources", "Observation resources"), naming none of them.
func WithheldIssue(n int64, what string) fault.Issue {
	return fault.Issue{Severity: "warning", Code: "suppressed",
		Diagnostics: strconv.FormatInt(n, 10) + " " + what + " were withheld by consent policy (42 CFR Part 2 / SUD: purpose of use and patient consent)"}
}

// Filter returns the records that may be disclosed (tombstones, which
// hold no content, always may) and how many were withheld.
func (s *Scope) Filter(ctx context.Context, recs []*store.Record) ([]*store.Record, int, error) {
	if s == nil || s.to.Unrestricted {
		return recs, 0, nil
	}
	out := recs[:0:0]
	for _, r := range recs {
		ok := r.Deleted
		if !ok {
			var err error
			if ok, err = s.Allows(ctx, r.Type, r.ID, r.Raw); err != nil {
				return nil, 0, err
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, len(recs) - len(out), nil
}

// Searcher returns st with the records the scope withholds left out of
// every page: the inner searches of chains and _has then cannot tell
// whether withheld data matches (Patient?_has:Condition:subject:code=...).
func (s *Scope) Searcher(st Searcher) Searcher {
	if s == nil || s.to.Unrestricted {
		return st
	}
	return filtered{s, st}
}

type filtered struct {
	s  *Scope
	st Searcher
}

func (f filtered) Search(ctx context.Context, q *store.Query) ([]*store.Record, bool, error) {
	recs, more, err := f.st.Search(ctx, q)
	if err != nil {
		return nil, false, err
	}
	recs, _, err = f.s.Filter(ctx, recs)
	return recs, more, err
}

// Counter counts what a query matches (store.Store and resource.Service
// are ones).
type Counter interface {
	Searcher
	Count(ctx context.Context, q *store.Query) (int64, error)
}

// countPage is how many labelled matches Count reads at a time.
const countPage = 500

// Count is how many resources q matches that the scope may disclose, so
// that a total (_total=accurate, _summary=count) does not reveal withheld
// ones. The store counts the matches without a sensitivity code; those
// with one are read and judged, a page at a time. Judging here does not
// add to Withheld: nothing is left out of what the request returns.
func (s *Scope) Count(ctx context.Context, st Counter, q *store.Query) (int64, error) {
	if s == nil || s.to.Unrestricted {
		return st.Count(ctx, q)
	}
	plain, labelled, err := s.split(q)
	if err != nil {
		return 0, err
	}
	n, err := st.Count(ctx, plain)
	if err != nil {
		return 0, err
	}
	for {
		recs, more, err := st.Search(ctx, labelled)
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			ok, err := s.Allows(ctx, r.Type, r.ID, r.Raw)
			if err != nil {
				return 0, err
			}
			if ok {
				n++
			}
		}
		if !more || len(recs) == 0 {
			return n, nil
		}
		labelled.After = recs[len(recs)-1].Keys
	}
}

// split divides the matches of q into those without a sensitivity code
// in meta.security and those with one (any system: the policy judges the
// latter by label and system, so together they are every match).
func (s *Scope) split(q *store.Query) (plain, labelled *store.Query, err error) {
	// _security is a parameter of every type, alike on each: any type
	// parses it.
	typ := q.Type
	if typ == "" {
		typ = "Patient"
	}
	cond := func(name string, values ...string) ([]store.Cond, error) {
		r, err := search.Parse(s.p.reg, typ, url.Values{name: values}, false)
		if err != nil {
			return nil, fault.Wrap(err, "splitting a count by sensitivity")
		}
		return r.Conds, nil
	}
	pc, err := cond("_security:not", sensitive...)
	if err != nil {
		return nil, nil, err
	}
	lc, err := cond("_security", strings.Join(sensitive, ","))
	if err != nil {
		return nil, nil, err
	}
	p, l := *q, *q
	p.And = append(slices.Clip(q.And), pc...)
	l.And = append(slices.Clip(q.And), lc...)
	l.Limit, l.After = countPage, nil
	if len(l.Sort) == 0 {
		l.Sort = []store.Sort{{Field: "rid"}, {Field: "type"}}
	}
	return &p, &l, nil
}

// Withheld is how many resources the scope has refused so far.
func (s *Scope) Withheld() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withheld
}

// BrokeGlass reports whether the scope disclosed sensitive data under
// emergency treatment (ETREAT) without a Consent: the audit records it.
func (s *Scope) BrokeGlass() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokeGlass
}

// patientConsents reads the patient's active Consents once per scope (on
// the embedded store a search decodes the whole collection).
func (s *Scope) patientConsents(ctx context.Context, patient string) ([]consent, error) {
	s.mu.Lock()
	cs, ok := s.consents[patient]
	s.mu.Unlock()
	if ok {
		return cs, nil
	}
	r, err := search.ParseCriteria(s.p.reg, "Consent", "status=active&patient="+patient)
	if err != nil {
		return nil, err
	}
	q := &store.Query{Type: "Consent", And: r.Conds, Sort: []store.Sort{{Field: "rid"}}, Limit: 200}
	for {
		recs, more, err := s.p.st.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			var c consent
			if json.Unmarshal([]byte(rec.Raw), &c) == nil {
				cs = append(cs, c)
			}
		}
		if !more || len(recs) == 0 {
			break
		}
		q.After = []any{recs[len(recs)-1].ID}
	}
	s.mu.Lock()
	s.consents[patient] = cs
	s.mu.Unlock()
	return cs, nil
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// info is what the rule reads of a resource.
type info struct {
	labels  []string
	subject string
}

// read returns the resource's sensitivity labels and, when it has any,
// the reference to its patient. Most resources have no label: they are
// recognised without decoding.
func read(raw string) (*info, error) {
	if !slices.ContainsFunc(sensitive, func(l string) bool { return strings.Contains(raw, `"`+l+`"`) }) {
		return &info{}, nil
	}
	var r struct {
		Meta struct {
			Security []coding `json:"security"`
		} `json:"meta"`
		Subject struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		Patient struct {
			Reference string `json:"reference"`
		} `json:"patient"`
	}
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fault.Wrap(err, "reading security labels")
	}
	in := &info{labels: labels(r.Meta.Security)}
	for _, ref := range []string{r.Subject.Reference, r.Patient.Reference} {
		if rel := relative(ref); strings.HasPrefix(rel, "Patient/") && in.subject == "" {
			in.subject = rel
		}
	}
	return in, nil
}

// Labels returns the sensitivity codes (42CFRPart2, SUD) of a stored
// resource's meta.security; nil when it has none.
func Labels(raw string) ([]string, error) {
	in, err := read(raw)
	if err != nil {
		return nil, err
	}
	return in.labels, nil
}

func labels(security []coding) []string {
	var out []string
	for _, c := range security {
		if labelSystem(c.System) && slices.Contains(sensitive, c.Code) && !slices.Contains(out, c.Code) {
			out = append(out, c.Code)
		}
	}
	return out
}

func labelSystem(system string) bool { return system == SysActCode || system == sysPrivacyLaw }

// patient is the Patient a resource is about: itself, or its subject or
// patient reference; "" when none (then no Consent can permit it).
func (in *info) patient(typ, id string) string {
	if typ == "Patient" {
		return "Patient/" + id
	}
	return in.subject
}

type ctxKey struct{}

// NewContext returns ctx carrying the scope of its request.
func NewContext(ctx context.Context, s *Scope) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext is the scope of ctx's request; nil (allow all) for work no
// request started.
func FromContext(ctx context.Context) *Scope {
	s, _ := ctx.Value(ctxKey{}).(*Scope)
	return s
}
