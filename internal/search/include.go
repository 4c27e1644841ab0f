package search

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// _include, _revinclude, chaining and _has are answered with extra store
// queries on the indexed fields (rid, ref), never with $lookup (see
// docs/fhir-behaviour.md).

var (
	// includeCap bounds the resources one page includes; what it cuts is
	// announced by a warning in the Bundle's OperationOutcome.
	includeCap = 1000
	// joinCap bounds the resources the inner search of a chain or _has may
	// match; a search over it is a 400 (too-costly): answering with a part
	// of them would silently miss matches.
	joinCap = 1000
	// inBatch is the most values one $in of an include query carries.
	inBatch = 500
)

// Searcher runs store queries (resource.Service, store.Store).
type Searcher interface {
	Search(ctx context.Context, q *store.Query) ([]*store.Record, bool, error)
}

// Include is one _include or _revinclude directive, Source:Param[:Target].
type Include struct {
	Rev     bool // _revinclude: Source resources whose Param refers to a result
	Iterate bool // also applied to the included resources (one more level)
	Source  string
	Param   *fhir.SearchParam // a reference parameter of Source
	Target  string            // "" for any type Param may refer to
}

// Join is a criterion answered by a search on another type first: a chain
// (subject:Patient.name=x) or a reverse chain (_has:Observation:patient:code=x).
type Join struct {
	Name, Value string // as given
	Type        string // the type searched first
	Cond        store.Cond
	// Ref is the searched type's reference parameter for a chain, Type's
	// parameter referring to the searched type for a reverse chain.
	Ref     *fhir.SearchParam
	Reverse bool
}

// include parses the value of _include, _revinclude or their :iterate form.
func (r *Request) include(name, v string) error {
	inc := Include{Rev: strings.HasPrefix(name, "_revinclude"), Iterate: strings.HasSuffix(name, ":iterate")}
	bad := func(format string, args ...any) error {
		return fault.New(fault.Invalid, "", "%s=%s: %s", name, v, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad("the value must be Type:parameter or Type:parameter:targetType")
	}
	inc.Source = parts[0]
	if !fhir.IsResourceType(inc.Source) {
		return bad("%q is not a resource type", inc.Source)
	}
	if parts[1] == "*" {
		return bad("the wildcard * is not supported; name the parameter")
	}
	inc.Param = r.reg.Lookup(inc.Source, parts[1])
	if inc.Param == nil {
		return bad("%s has no search parameter %q", inc.Source, parts[1])
	}
	r.use(inc.Param)
	if inc.Param.Type != "reference" {
		return bad("%s is a %s parameter, not a reference parameter", parts[1], inc.Param.Type)
	}
	if len(parts) == 3 {
		inc.Target = parts[2]
		if !fhir.IsResourceType(inc.Target) || !refersTo(inc.Param, inc.Target) {
			return bad("%s cannot refer to %q (it refers to %s)", parts[1], inc.Target, targetList(inc.Param))
		}
	}
	if !inc.Iterate {
		types := r.types()
		results := strings.Join(types, ", ")
		switch {
		case !inc.Rev && !slices.Contains(types, inc.Source):
			return bad("it applies to %s resources, not to the %s results (use _include:iterate for included resources)", inc.Source, results)
		case inc.Rev && !slices.ContainsFunc(types, func(t string) bool { return refersTo(inc.Param, t) && (inc.Target == "" || inc.Target == t) }):
			return bad("%s.%s cannot refer to the %s results (use _revinclude:iterate for included resources)", inc.Source, parts[1], results)
		}
	}
	r.Includes = append(r.Includes, inc)
	return nil
}

// chain parses a chained parameter, code[:Type].param[:modifier]=value.
func (r *Request) chain(name, v string) error {
	bad := func(format string, args ...any) error {
		return fault.New(fault.Invalid, "", "%s: %s", name, fmt.Sprintf(format, args...))
	}
	head, inner, _ := strings.Cut(name, ".")
	code, typ, _ := strings.Cut(head, ":")
	p := r.reg.Lookup(r.Type, code)
	switch {
	case p == nil:
		return bad("%s has no search parameter %q", r.Type, code)
	case p.Type != "reference":
		return bad("only reference parameters can be chained; %s is a %s parameter", code, p.Type)
	case strings.Contains(inner, "."):
		return bad("only one level of chaining is supported")
	case inner == "" || strings.HasPrefix(inner, "_has"):
		return bad("a chain names a search parameter of the referenced type after the dot")
	case typ == "" && len(p.Targets) != 1:
		return bad("%s can refer to %s; name the type, as in %s:%s.%s", code, targetList(p), code, exampleTarget(p), inner)
	case typ == "":
		typ = p.Targets[0]
	case !fhir.IsResourceType(typ) || !refersTo(p, typ):
		return bad("%s cannot refer to %q (it refers to %s)", code, typ, targetList(p))
	}
	r.use(p)
	c, err := r.compile(typ, inner, v)
	if err != nil {
		return bad("%s", fault.As(err).Issues[0].Diagnostics)
	}
	r.Joins = append(r.Joins, Join{Name: name, Value: v, Type: typ, Cond: c, Ref: p})
	return nil
}

// has parses a reverse chain, _has:Type:param:innerParam[:modifier]=value.
func (r *Request) has(name, v string) error {
	bad := func(format string, args ...any) error {
		return fault.New(fault.Invalid, "", "%s: %s", name, fmt.Sprintf(format, args...))
	}
	parts := strings.SplitN(name, ":", 4)
	if len(parts) < 4 || parts[3] == "" {
		return bad("_has takes the form _has:Type:referenceParameter:searchParameter=value")
	}
	typ, code, inner := parts[1], parts[2], parts[3]
	if !fhir.IsResourceType(typ) {
		return bad("%q is not a resource type", typ)
	}
	p := r.reg.Lookup(typ, code)
	switch {
	case p == nil:
		return bad("%s has no search parameter %q", typ, code)
	case p.Type != "reference":
		return bad("%s is a %s parameter, not a reference parameter", code, p.Type)
	case !refersTo(p, r.Type):
		return bad("%s.%s cannot refer to %s (it refers to %s)", typ, code, r.Type, targetList(p))
	case strings.HasPrefix(inner, "_has") || strings.Contains(inner, "."):
		return bad("only one level of _has, without chaining inside, is supported")
	}
	r.use(p)
	c, err := r.compile(typ, inner, v)
	if err != nil {
		return bad("%s", fault.As(err).Issues[0].Diagnostics)
	}
	r.Joins = append(r.Joins, Join{Name: name, Value: v, Type: typ, Cond: c, Ref: p, Reverse: true})
	return nil
}

func refersTo(p *fhir.SearchParam, typ string) bool {
	return len(p.Targets) == 0 || slices.Contains(p.Targets, typ)
}

func targetList(p *fhir.SearchParam) string {
	if len(p.Targets) == 0 {
		return "any type"
	}
	return strings.Join(p.Targets, ", ")
}

// exampleTarget is a type to name in a message.
func exampleTarget(p *fhir.SearchParam) string {
	if len(p.Targets) == 0 || slices.Contains(p.Targets, "Patient") {
		return "Patient"
	}
	return p.Targets[0]
}

// Resolve runs the inner searches of r's chains and reverse chains and adds
// the conditions they give to r.Conds. Call it after Parse and before the
// cursor is checked or made: it binds the joins into r.Canonical.
func Resolve(ctx context.Context, s Searcher, r *Request) error {
	var canon []string
	for _, j := range r.Joins {
		q := &store.Query{Type: j.Type, And: []store.Cond{j.Cond}, Sort: []store.Sort{{Field: "rid"}}, Limit: joinCap}
		if j.Reverse {
			q.And = append(q.And, store.Cond{Field: "ref", Prefix: []string{j.Ref.Code + ":" + r.Type + "/"}})
		}
		recs, more, err := s.Search(ctx, q)
		if err != nil {
			return err
		}
		if more {
			return fault.New(fault.Invalid, "", "%s=%s matches more than %d %s resources; narrow it", j.Name, j.Value, joinCap, j.Type).WithCode("too-costly")
		}
		vals := make([]string, 0, len(recs))
		if !j.Reverse {
			for _, rec := range recs {
				vals = append(vals, j.Ref.Code+":"+j.Type+"/"+rec.ID)
			}
			r.Conds = append(r.Conds, store.Cond{Field: "ref", In: vals})
		} else {
			for _, rec := range recs {
				res, err := parseRecord(rec)
				if err != nil {
					return err
				}
				for _, v := range res.SearchValues(j.Ref) {
					if v.RefType == r.Type && v.RefID != "" && !slices.Contains(vals, v.RefID) {
						vals = append(vals, v.RefID)
					}
				}
			}
			r.Conds = append(r.Conds, store.Cond{Field: "rid", In: vals})
		}
		canon = append(canon, j.Name+"="+j.Value)
	}
	if len(canon) > 0 {
		r.Canonical += "#" + strings.Join(canon, "&")
	}
	return nil
}

func parseRecord(rec *store.Record) (*fhir.Resource, error) {
	res, err := fhir.ParseResource([]byte(rec.Raw))
	if err != nil {
		return nil, fault.Wrap(err, "reading a stored "+rec.Type)
	}
	return res, nil
}

// Includes returns the resources r's _include and _revinclude directives
// (and, for $everything, its Referenced types) add to a page of matches:
// each once and none of the matches, at most includeCap, with a warning
// issue when the cap cut some. Directives are applied to the matches;
// :iterate ones once more to what that included.
func Includes(ctx context.Context, s Searcher, r *Request, matches []*store.Record) ([]*store.Record, []fault.Issue, error) {
	if len(r.Includes) == 0 && len(r.Referenced) == 0 || len(matches) == 0 {
		return nil, nil, nil
	}
	in := &includer{ctx: ctx, s: s, seen: map[string]bool{}, left: includeCap}
	for _, m := range matches {
		in.seen[store.Key(m.Type, m.ID)] = true
	}
	if len(r.Referenced) > 0 {
		if err := in.referenced(r.reg, r.Referenced, matches); err != nil {
			return nil, nil, err
		}
	}
	level := matches
	for round := 0; round < 2 && len(level) > 0 && !in.cut; round++ {
		start := len(in.out)
		for _, inc := range r.Includes {
			if round > 0 && !inc.Iterate {
				continue
			}
			var err error
			if inc.Rev {
				err = in.revinclude(inc, level)
			} else {
				err = in.include(inc, level)
			}
			if err != nil {
				return nil, nil, err
			}
		}
		level = in.out[start:]
	}
	var issues []fault.Issue
	if in.cut {
		issues = append(issues, fault.Issue{Severity: "warning", Code: "incomplete",
			Diagnostics: fmt.Sprintf("more than %d resources to include: only the first %d are in the Bundle", includeCap, includeCap)})
	}
	return in.out, issues, nil
}

type includer struct {
	ctx  context.Context
	s    Searcher
	seen map[string]bool // Type/id of the matches and what is included
	out  []*store.Record
	left int
	cut  bool
}

func (in *includer) include(inc Include, level []*store.Record) error {
	refs := in.refs()
	for _, rec := range level {
		if rec.Type != inc.Source {
			continue
		}
		res, err := parseRecord(rec)
		if err != nil {
			return err
		}
		for _, v := range res.SearchValues(inc.Param) {
			if refersTo(inc.Param, v.RefType) && (inc.Target == "" || v.RefType == inc.Target) {
				refs.add(v)
			}
		}
	}
	return refs.fetch()
}

// referenced includes the resources of types that level refers to through
// any reference parameter of its own types ($everything).
func (in *includer) referenced(reg *fhir.Registry, types []string, level []*store.Record) error {
	refs := in.refs()
	for _, rec := range level {
		res, err := parseRecord(rec)
		if err != nil {
			return err
		}
		for _, p := range reg.SearchParams(rec.Type) {
			if p.Type != "reference" {
				continue
			}
			for _, v := range res.SearchValues(p) {
				if slices.Contains(types, v.RefType) {
					refs.add(v)
				}
			}
		}
	}
	return refs.fetch()
}

// refSet collects the resources to include, by type, each once and none
// seen already.
type refSet struct {
	in     *includer
	want   map[string][]string // type → ids
	queued map[string]bool
}

func (in *includer) refs() *refSet {
	return &refSet{in: in, want: map[string][]string{}, queued: map[string]bool{}}
}

func (s *refSet) add(v fhir.IndexValue) {
	if v.RefType == "" || v.RefID == "" {
		return // contained, or not a resource reference
	}
	k := store.Key(v.RefType, v.RefID)
	if s.in.seen[k] || s.queued[k] {
		return
	}
	s.queued[k] = true
	s.want[v.RefType] = append(s.want[v.RefType], v.RefID)
}

// fetch reads what was added, by type in order, in batches.
func (s *refSet) fetch() error {
	types := make([]string, 0, len(s.want))
	for t := range s.want {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		for ids := range slices.Chunk(s.want[t], inBatch) {
			if err := s.in.fetch(t, store.Cond{Field: "rid", In: ids}, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (in *includer) revinclude(inc Include, level []*store.Record) error {
	var refs []string
	for _, rec := range level {
		if refersTo(inc.Param, rec.Type) && (inc.Target == "" || inc.Target == rec.Type) {
			refs = append(refs, inc.Param.Code+":"+rec.Type+"/"+rec.ID)
		}
	}
	for chunk := range slices.Chunk(refs, inBatch) {
		if err := in.fetch(inc.Source, store.Cond{Field: "ref", In: chunk}, true); err != nil {
			return err
		}
	}
	return nil
}

// fetch adds the resources of typ matching c, up to the cap; exclude
// leaves out those seen already (an include asks for unseen ids only).
func (in *includer) fetch(typ string, c store.Cond, exclude bool) error {
	if in.cut {
		return nil
	}
	q := &store.Query{Type: typ, And: []store.Cond{c}, Sort: []store.Sort{{Field: "rid"}}, Limit: in.left}
	var seen []string
	for k := range in.seen {
		if t, id, _ := strings.Cut(k, "/"); exclude && t == typ {
			seen = append(seen, id)
		}
	}
	if len(seen) > 0 {
		slices.Sort(seen)
		q.And = append(q.And, store.Cond{Field: "rid", NotIn: seen})
	}
	recs, more, err := in.s.Search(in.ctx, q)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		in.seen[store.Key(rec.Type, rec.ID)] = true
		in.out = append(in.out, rec)
		in.left--
	}
	in.cut = more
	return nil
}
