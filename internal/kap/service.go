package kap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// Service is the KAP API over the FHIR store: each write maps the clinic's
// request to FHIR resources (package mappings), checks the rules against
// facts read from the store, and writes everything as one transaction of
// the FHIR store; each read searches the store and maps the resources back.
// The store stays the one source of truth: resources written through the
// FHIR API that fit the KAP model are read the same way.
type Service struct {
	res       *resource.Service
	reg       *fhir.Registry
	m         *mappings.Mapper
	rules     Rules
	overrides *OverrideCounter
	now       func() time.Time
	cursors   *search.Cursors
}

// Deps are what the Service works with.
type Deps struct {
	Resources *resource.Service
	Registry  *fhir.Registry // the search parameters
	Mapper    *mappings.Mapper
	Rules     Rules
	Overrides *OverrideCounter
	Now       func() time.Time
	Cursors   *search.Cursors // signs list cursors
}

// NewService returns the KAP service on d.
func NewService(d Deps) *Service {
	return &Service{res: d.Resources, reg: d.Registry, m: d.Mapper, rules: d.Rules, overrides: d.Overrides, now: d.Now, cursors: d.Cursors}
}

// write stores rs as one atomic unit through the FHIR transaction path
// (validation, versions, history, change log), with the client's index
// (index.go). versions holds the version an existing resource (by
// Type/id) must still have: a concurrent change makes the whole write a
// 409. Overrides add their Provenance to the unit and are counted once it
// is stored.
func (s *Service) write(ctx context.Context, rs []mappings.Resource, versions map[string]int64, overrides []Override, l mappings.Labels) error {
	ops, err := s.ops(rs, versions, overrides, l)
	if err != nil {
		return err
	}
	idx, err := s.indexOp(ctx, rs, l)
	if err != nil {
		return err
	}
	if idx != nil {
		ops = append(ops, idx)
	}
	return s.commit(ctx, ops, overrides)
}

// ops are the writes of rs, and of the Provenance of overrides.
func (s *Service) ops(rs []mappings.Resource, versions map[string]int64, overrides []Override, l mappings.Labels) ([]*resource.Op, error) {
	if len(overrides) > 0 {
		p, err := s.provenance(rs, overrides, l)
		if err != nil {
			return nil, err
		}
		rs = append(rs, p)
	}
	ops := make([]*resource.Op, 0, len(rs)+1)
	for _, r := range rs {
		res, err := parse(r)
		if err != nil {
			return nil, err
		}
		op := &resource.Op{Method: "PUT", Type: r.Type, ID: r.ID, Resource: res}
		if v, ok := versions[r.Ref()]; ok {
			op.IfMatch = &v
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// parse reads a mapped resource for the store.
func parse(r mappings.Resource) (*fhir.Resource, error) {
	res, err := fhir.ParseResource(r.JSON)
	if err != nil {
		return nil, fault.Wrap(err, "mapping "+r.Type) // the mappings emit valid FHIR: a bug
	}
	return res, nil
}

// commit writes ops as one unit; a version check that fails is a 409.
func (s *Service) commit(ctx context.Context, ops []*resource.Op, overrides []Override) error {
	err := s.res.Resolve(ctx, ops)
	if err == nil {
		err = s.res.Apply(ctx, ops)
	}
	if err != nil {
		var oe *resource.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		if fault.Is(err, fault.PreconditionFailed) || fault.Is(err, fault.Conflict) {
			return fault.New(fault.Conflict, "", "the record was changed by another request meanwhile; nothing was stored: read it again and retry")
		}
		return err
	}
	s.overrides.Count(overrides)
	return nil
}

// provenance records the overridden rules of a write: the written
// resources as targets, the clinician as author, one reason per rule
// coded in the kap CodeSystem with the clinician's reason and the rule's
// message as text.
func (s *Service) provenance(rs []mappings.Resource, os []Override, l mappings.Labels) (mappings.Resource, error) {
	type concept struct {
		Coding []mappings.Coding `json:"coding"`
		Text   string            `json:"text,omitempty"`
	}
	// The rule codes are concepts of the kap CodeSystem (a test keeps them
	// so), which gives their displays.
	kap := func(code string) []mappings.Coding {
		c, _ := s.m.KapCoding(code)
		return []mappings.Coding{c}
	}
	type ref struct {
		Reference string `json:"reference"`
	}
	type agent struct {
		Type concept `json:"type"`
		Who  ref     `json:"who"`
	}
	p := struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			Security []mappings.Coding `json:"security"`
		} `json:"meta"`
		Target   []ref     `json:"target"`
		Recorded string    `json:"recorded"`
		Reason   []concept `json:"reason"`
		Activity concept   `json:"activity"`
		Agent    []agent   `json:"agent"`
	}{ResourceType: "Provenance", ID: resource.NewID(), Recorded: os[0].At.Format(time.RFC3339)}
	p.Meta.Security = s.m.SecurityLabels(l)
	for _, r := range rs {
		p.Target = append(p.Target, ref{r.Ref()})
	}
	for _, o := range os {
		p.Reason = append(p.Reason, concept{Coding: kap(string(o.Rule)), Text: o.Reason + " (overrides: " + o.Message + ")"})
	}
	p.Activity = concept{Coding: kap(overrideActivity)}
	p.Agent = []agent{{
		Type: concept{Coding: []mappings.Coding{{System: "http://terminology.hl7.org/CodeSystem/provenance-participant-type", Code: "author", Display: "Author"}}},
		Who:  ref{os[0].Clinician},
	}}
	b, err := json.Marshal(p)
	if err != nil {
		return mappings.Resource{}, fault.Wrap(err, "provenance")
	}
	return mappings.Resource{Type: "Provenance", ID: p.ID, JSON: b}, nil
}

// overrideActivity is the kap code of a Provenance recording a rule
// override.
const overrideActivity = "rule-override"

// ListOptions page a list: at most Limit items (default 50, at most 1000)
// after the opaque Cursor of a previous page.
type ListOptions struct {
	Limit  int
	Cursor string
}

// Page is one page of a list. Next is the cursor of the following page,
// empty on the last. A page may hold fewer than Limit items when stored
// resources do not fit the KAP model, or are withheld: Withheld counts the
// records of the page the disclosure policy kept from the caller
// (42 CFR Part 2 / SUD data without purpose and consent).
type Page[T any] struct {
	Items    []T    `json:"items"`
	Next     string `json:"next,omitempty"`
	Withheld int    `json:"withheld,omitempty"`
}

// item is a mapped resource with the stored version of its primary
// resource (for If-Match).
type item[T any] struct {
	val T
	rec *store.Record
}

// view reads one KAP type from FHIR: the primary resources searched, the
// companions each page needs (one search per companion type, never one
// per item), and the mapping back.
type view[T any] struct {
	typ  string
	from func(*mappings.Mapper, []mappings.Resource) (T, bool)
	// with returns the companions of a page and the primaries to leave
	// out (e.g. the members of a questionnaire panel).
	with func(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error)
}

const (
	defaultLimit = 50
	maxLimit     = 1000
)

// list reads a page of v's primaries matching params (FHIR search
// parameters), keeping those keep accepts (nil: all).
func list[T any](ctx context.Context, s *Service, v view[T], params url.Values, o ListOptions, keep func(T) bool) ([]item[T], string, error) {
	switch {
	case o.Limit == 0:
		o.Limit = defaultLimit
	case o.Limit < 0 || o.Limit > maxLimit:
		return nil, "", fault.New(fault.Invalid, "limit", "limit must be between 1 and %d", maxLimit).WithCode("value")
	}
	q := url.Values{}
	for k, vs := range params {
		q[k] = vs
	}
	q.Set("_count", strconv.Itoa(o.Limit))
	req, err := search.Parse(s.reg, v.typ, q, false)
	if err != nil {
		return nil, "", err
	}
	req.Page = o.Cursor
	pg, err := s.cursors.Decode(req)
	if err != nil {
		return nil, "", fault.New(fault.Invalid, "cursor", "cursor is not a cursor of this list").WithCode("value")
	}
	sq := &store.Query{Type: v.typ, And: req.Conds, Sort: req.Sort, Limit: req.Count}
	if pg != nil {
		sq.After = pg.After
	}
	recs, more, err := s.res.Search(ctx, sq)
	if err != nil {
		return nil, "", err
	}
	out, err := mapPage(ctx, s, v, recs, keep)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more && len(recs) > 0 {
		next = s.cursors.Next(req, recs[len(recs)-1])
	}
	return out, next, nil
}

// mapPage maps stored primaries back, with the companions of the page;
// primaries and companions the request's principal may not see are left
// out (package disclosure; the scope counts them).
func mapPage[T any](ctx context.Context, s *Service, v view[T], recs []*store.Record, keep func(T) bool) ([]item[T], error) {
	scope := disclosure.FromContext(ctx)
	recs, _, err := scope.Filter(ctx, recs)
	if err != nil {
		return nil, err
	}
	var companions []mappings.Resource
	var drop map[string]bool
	if v.with != nil && len(recs) > 0 {
		page := make([]mappings.Resource, len(recs))
		for i, r := range recs {
			page[i] = resourceOf(r)
		}
		if companions, drop, err = v.with(ctx, s, page); err != nil {
			return nil, err
		}
		kept := companions[:0:0]
		for _, c := range companions {
			ok, err := scope.Allows(ctx, c.Type, c.ID, string(c.JSON))
			if err != nil {
				return nil, err
			}
			if ok {
				kept = append(kept, c)
			}
		}
		companions = kept
	}
	return mapGroup(s, v, recs, companions, drop, keep), nil
}

// mapGroup maps each primary with the companions, leaving out those in
// drop and those keep refuses.
func mapGroup[T any](s *Service, v view[T], recs []*store.Record, companions []mappings.Resource, drop map[string]bool, keep func(T) bool) []item[T] {
	var out []item[T]
	group := make([]mappings.Resource, 1, len(companions)+1)
	group = append(group, companions...)
	for _, r := range recs {
		p := resourceOf(r)
		if drop[p.Ref()] {
			continue
		}
		group[0] = p // the mappings read the first resource of the type
		if t, ok := v.from(s.m, group); ok && (keep == nil || keep(t)) {
			out = append(out, item[T]{t, r})
		}
	}
	return out
}

func resourceOf(r *store.Record) mappings.Resource {
	return mappings.Resource{Type: r.Type, ID: r.ID, JSON: json.RawMessage(r.Raw)}
}

// listPage is list as a Page of values.
func listPage[T any](ctx context.Context, s *Service, v view[T], params url.Values, o ListOptions, keep func(T) bool) (Page[T], error) {
	scope := disclosure.FromContext(ctx)
	before := scope.Withheld()
	items, next, err := list(ctx, s, v, params, o, keep)
	p := Page[T]{Items: make([]T, 0, len(items)), Next: next, Withheld: scope.Withheld() - before}
	for _, it := range items {
		p.Items = append(p.Items, it.val)
	}
	return p, err
}

// listAll reads every match, page after page.
func listAll[T any](ctx context.Context, s *Service, v view[T], params url.Values, keep func(T) bool) ([]item[T], error) {
	var all []item[T]
	o := ListOptions{Limit: maxLimit}
	for {
		items, next, err := list(ctx, s, v, params, o, keep)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		o.Cursor = next
	}
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// get reads one item by the id of its primary resource (a read by id,
// the store's cheapest query); what names the KAP type for a 404.
func get[T any](ctx context.Context, s *Service, v view[T], id, what string) (item[T], error) {
	notFound := fault.New(fault.NotFound, "", "there is no %s %q", what, id)
	if !idRE.MatchString(id) {
		return item[T]{}, notFound
	}
	rec, err := s.res.Read(ctx, v.typ, id)
	if fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone) {
		return item[T]{}, notFound
	}
	if err != nil {
		return item[T]{}, err
	}
	// A record the principal may not see is refused, for reads and for
	// the writes that start from it alike.
	if err := disclosure.FromContext(ctx).Check(ctx, rec.Type, rec.ID, rec.Raw); err != nil {
		return item[T]{}, err
	}
	items, err := mapPage(ctx, s, v, []*store.Record{rec}, nil)
	if err != nil || len(items) == 0 {
		return item[T]{}, orElse(err, notFound)
	}
	return items[0], nil
}

func orElse(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// byID reads resources of typ by id, one read each (reads by id are
// cheap where searches scan); missing and deleted ones are left out.
func (s *Service) byID(ctx context.Context, typ string, ids []string) ([]mappings.Resource, error) {
	refs := make([]string, len(ids))
	for i, id := range ids {
		refs[i] = typ + "/" + id
	}
	recs, err := s.read(ctx, refs)
	out := make([]mappings.Resource, len(recs))
	for i, rec := range recs {
		out[i] = resourceOf(rec)
	}
	return out, err
}

// read reads the current versions of refs (Type/id), one read by id each;
// missing and deleted ones are left out.
func (s *Service) read(ctx context.Context, refs []string) ([]*store.Record, error) {
	var out []*store.Record
	for _, ref := range refs {
		typ, id, _ := strings.Cut(ref, "/")
		rec, err := s.res.Read(ctx, typ, id)
		switch {
		case fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone):
		case err != nil:
			return nil, err
		default:
			out = append(out, rec)
		}
	}
	return out, nil
}

// companions searches typ with param set to the OR of values (one search
// for a whole page); nothing when values is empty.
func (s *Service) companions(ctx context.Context, typ, param string, values []string) ([]mappings.Resource, error) {
	if len(values) == 0 {
		return nil, nil
	}
	q := url.Values{param: {strings.Join(values, ",")}}
	items, err := listAll(ctx, s, view[mappings.Resource]{typ: typ, from: func(_ *mappings.Mapper, rs []mappings.Resource) (mappings.Resource, bool) { return rs[0], true }}, q, nil)
	if err != nil {
		return nil, err
	}
	out := make([]mappings.Resource, len(items))
	for i, it := range items {
		out[i] = it.val
	}
	return out, nil
}

// refsTo lists the distinct references to typ (Type/id) anywhere in rs,
// and as ids when asIDs is set.
func refsTo(rs []mappings.Resource, typ string, asIDs bool) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["reference"].(string); ok {
				if id, ok := strings.CutPrefix(r, typ+"/"); ok && idRE.MatchString(id) && !seen[id] {
					seen[id] = true
					if asIDs {
						out = append(out, id)
					} else {
						out = append(out, r)
					}
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, r := range rs {
		var v any
		if json.Unmarshal(r.JSON, &v) == nil {
			walk(v)
		}
	}
	return out
}

// refOf is the reference of the primary resources, Type/id.
func refOf(rs []mappings.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Ref()
	}
	return out
}

// NewMapper is the Mapper the rules need: its no-driving instruction is
// the rules' NoDriving, which the mappings write in whole hours.
func NewMapper(r Rules) (*mappings.Mapper, error) {
	if r.NoDriving%time.Hour != 0 {
		return nil, fmt.Errorf("KAP rules: noDriving must be whole hours (the instruction is written in hours), not %s", r.NoDriving)
	}
	return mappings.New(mappings.Config{NoDrivingHours: int(r.NoDriving / time.Hour)})
}
