package search

import (
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Request is a parsed search on one type, or on several (Types, with
// Type "": see ParseSystem).
type Request struct {
	Type  string
	Types []string
	Conds []store.Cond
	Sort  []store.Sort
	Count int
	Total string // none or accurate
	Page  string // the opaque cursor of a next link, "" on the first page
	// Ignored lists what lenient handling skipped and what a cap changed,
	// for the Bundle's OperationOutcome.
	Ignored []fault.Issue
	// Canonical names the matching part (parameters sorted): a cursor is
	// only valid for the same canonical query and sort.
	Canonical string
	// Includes are the _include and _revinclude directives (see Includes).
	Includes []Include
	// Referenced are the types of the resources a page of $everything
	// includes when its matches refer to them (see Includes).
	Referenced []string
	// Joins are the chains and _has criteria; Resolve turns them into Conds.
	Joins []Join
	// Subset is what _summary and _elements keep of each resource.
	Subset fhir.Subset
	// Custom are the custom parameters the search uses: their reindex may
	// be unfinished.
	Custom []*fhir.SearchParam

	reg *fhir.Registry
}

const (
	defaultCount = 50
	maxCount     = 1000
)

// Parse parses the parameters of a type-level search. Strict by default: an
// unknown or unsupported parameter or modifier is a 400 naming it; with
// lenient it is skipped and listed in Ignored.
func Parse(reg *fhir.Registry, typ string, q url.Values, lenient bool) (*Request, error) {
	return parse(reg, []string{typ}, q, lenient)
}

// parse parses a search on one type or more: a parameter of a search on
// several types must mean the same on each (see compileAll).
func parse(reg *fhir.Registry, types []string, q url.Values, lenient bool) (*Request, error) {
	r := &Request{Count: defaultCount, Total: "none", reg: reg}
	if len(types) == 1 {
		r.Type = types[0]
	} else {
		r.Types = types
	}
	var canon []string
	for _, name := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[name] {
			ok, err := r.control(name, v)
			if err == nil && !ok {
				var c store.Cond
				c, err = r.compileAll(types, name, v)
				if err == nil {
					r.Conds = append(r.Conds, c)
					canon = append(canon, url.QueryEscape(name)+"="+url.QueryEscape(v))
				}
			}
			if err := r.tolerate(fault.Locate(err, name), lenient); err != nil {
				return nil, err
			}
		}
	}
	if err := r.subsetConflict(q, lenient); err != nil {
		return nil, err
	}
	if len(r.Sort) == 0 {
		r.Sort = []store.Sort{{Field: "rid"}}
	}
	if r.Type == "" {
		r.Sort = append(r.Sort, store.Sort{Field: "type"}) // ids repeat across types
	}
	var sortKeys []string
	for _, s := range r.Sort {
		sortKeys = append(sortKeys, map[bool]string{true: "-", false: ""}[s.Desc]+s.Field)
	}
	r.Canonical = strings.Join(types, ",") + "?" + strings.Join(canon, "&") + "#" + strings.Join(sortKeys, ",")
	return r, nil
}

// tolerate returns err, or nil when lenient handling skips it: it is then
// listed in Ignored.
func (r *Request) tolerate(err error, lenient bool) error {
	if err == nil {
		return nil
	}
	fe := fault.As(err)
	if !lenient || fe.Kind != fault.Invalid {
		return err
	}
	is := fe.Issues[0]
	is.Severity = "warning"
	r.Ignored = append(r.Ignored, is)
	return nil
}

// control handles the result parameters; it reports false for a search
// parameter.
func (r *Request) control(name, v string) (bool, error) {
	switch name {
	case "_format", "_pretty":
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return true, fault.New(fault.Invalid, "", "_count must be a whole number, not %q", v)
		}
		if n > maxCount {
			n = maxCount
			r.Ignored = append(r.Ignored, fault.Issue{Severity: "warning", Code: "informational", Expression: []string{"_count"},
				Diagnostics: "_count is capped at " + strconv.Itoa(maxCount) + "; the next link pages through the rest"})
		}
		r.Count = n
	case "_total":
		switch v {
		case "none":
			r.Total = "none"
		case "accurate", "estimate": // an estimate costs as much as the count here
			r.Total = "accurate"
		default:
			return true, fault.New(fault.Invalid, "", "_total must be none, estimate or accurate, not %q", v)
		}
	case "_sort":
		if len(r.Sort) > 0 {
			return true, fault.New(fault.Invalid, "", "_sort may be given once; separate its keys with commas")
		}
		keys, err := sortBy(r.reg, r.Type, v)
		if err != nil {
			return true, err
		}
		r.Sort = append(r.Sort, keys...)
	case "_page":
		r.Page = v
	case "_summary":
		switch v {
		case "count":
			r.Count, r.Total = 0, "accurate"
		case "false":
		case "true", "text", "data":
			r.Subset.Summary = fhir.SummaryMode(v)
		default:
			return true, fault.New(fault.Invalid, "_summary", "_summary must be true, text, data, count or false, not %q", v)
		}
	case "_elements":
		names, err := fhir.ElementNames(r.Type, v)
		r.Subset.Elements = append(r.Subset.Elements, names...)
		return true, err
	case "_include", "_include:iterate", "_revinclude", "_revinclude:iterate":
		return true, r.include(name, v)
	default:
		join := name == "_has" || strings.HasPrefix(name, "_has:") || strings.Contains(name, ".")
		if join && r.Type == "" {
			return true, fault.New(fault.Invalid, "", "%s: chaining and _has need a search on one type", name)
		}
		if name == "_has" || strings.HasPrefix(name, "_has:") {
			return true, r.has(name, v)
		}
		if strings.Contains(name, ".") {
			return true, r.chain(name, v)
		}
		// Parameters starting with _ are Resource-level: any type tells.
		if strings.HasPrefix(name, "_") && r.reg.Lookup(r.types()[0], strings.SplitN(name, ":", 2)[0]) == nil {
			return true, fault.New(fault.Invalid, "", "the search result parameter %s is not supported", name)
		}
		return false, nil
	}
	return true, nil
}

// types lists the searched types.
func (r *Request) types() []string {
	if r.Type != "" {
		return []string{r.Type}
	}
	return r.Types
}

// ParseCriteria parses the criteria of a conditional interaction: search
// parameters only.
func ParseCriteria(reg *fhir.Registry, typ, query string) (*Request, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fault.New(fault.Invalid, "", "the criteria are not a valid query string: %v", err)
	}
	for name := range q {
		if name == "_format" || name == "_pretty" {
			delete(q, name)
		}
	}
	r, err := Parse(reg, typ, q, false)
	if err != nil {
		return nil, err
	}
	if len(r.Conds) == 0 || r.Page != "" || len(q) != len(r.Conds) {
		return nil, fault.New(fault.Invalid, "", "conditional criteria must be search parameters, at least one")
	}
	return r, nil
}

// compileAll compiles a parameter occurrence for each of types: it must
// give the same condition for each (the index entries are keyed by the
// code, so the same condition means the same search), else it is a 400
// naming the parameter.
func (r *Request) compileAll(types []string, name, value string) (store.Cond, error) {
	var first store.Cond
	for i, typ := range types {
		c, err := r.compile(typ, name, value)
		if err != nil && len(types) > 1 {
			return store.Cond{}, fault.New(fault.Invalid, "", "%s is not a search parameter of every type searched: %s", name, fault.As(err).Issues[0].Diagnostics)
		}
		if err != nil {
			return store.Cond{}, err
		}
		if i == 0 {
			first = c
		} else if !reflect.DeepEqual(c, first) {
			return store.Cond{}, fault.New(fault.Invalid, "", "%s means different things for %s and %s; search them separately", name, types[0], typ)
		}
	}
	return first, nil
}

// compile turns one parameter occurrence (values OR-ed by commas) into a
// condition.
func (r *Request) compile(typ, name, value string) (store.Cond, error) {
	code, modifier, _ := strings.Cut(name, ":")
	p := r.reg.Lookup(typ, code)
	if p == nil {
		return store.Cond{}, fault.New(fault.Invalid, "", "%s has no search parameter %q", typ, code)
	}
	r.use(p)
	if !Searchable(p) {
		return store.Cond{}, fault.New(fault.Invalid, "", "search by %s parameters (%s) is not supported yet", p.Type, code)
	}
	if modifier == "missing" {
		switch value {
		case "true":
			return store.Cond{Field: "has", NotIn: []string{code}}, nil
		case "false":
			return store.Cond{Field: "has", In: []string{code}}, nil
		}
		return store.Cond{}, fault.New(fault.Invalid, "", "%s:missing must be true or false", code)
	}
	alts := splitUnescaped(value, ',')
	switch {
	case code == "_id":
		return idCond(modifier, alts)
	case code == "_lastUpdated":
		return anyOf(alts, func(v string) (store.Cond, error) { return lastUpdatedCond(modifier, v) })
	}
	switch p.Type {
	case "token":
		return tokenCond(p, modifier, alts)
	case "string":
		return stringCond(p, modifier, alts)
	case "uri":
		return uriCond(p, modifier, alts)
	case "reference":
		return referenceCond(p, modifier, alts)
	case "date":
		if modifier != "" {
			return store.Cond{}, badModifier(code, modifier)
		}
		return anyOf(alts, func(v string) (store.Cond, error) { return dateCond(code, v) })
	case "number":
		return numberCond(p, modifier, alts)
	case "quantity":
		return quantityCond(p, modifier, alts)
	case "composite":
		return compositeCond(p, modifier, alts)
	}
	return store.Cond{}, fault.New(fault.Invalid, "", "search by %s parameters is not supported yet", p.Type)
}

// use notes that the search uses p.
func (r *Request) use(p *fhir.SearchParam) {
	if p.Custom != nil && !slices.Contains(r.Custom, p) {
		r.Custom = append(r.Custom, p)
	}
}

func badModifier(code, modifier string) error {
	return fault.New(fault.Invalid, "", "the modifier :%s is not supported on %s", modifier, code)
}

// anyOf ORs the conditions of several values.
func anyOf(alts []string, one func(string) (store.Cond, error)) (store.Cond, error) {
	var or []store.Cond
	for _, a := range alts {
		c, err := one(a)
		if err != nil {
			return store.Cond{}, err
		}
		or = append(or, c)
	}
	if len(or) == 1 {
		return or[0], nil
	}
	return store.Cond{Or: or}, nil
}

func idCond(modifier string, alts []string) (store.Cond, error) {
	if modifier != "" {
		return store.Cond{}, badModifier("_id", modifier)
	}
	var ids []string
	for _, a := range alts {
		ids = append(ids, unescape(a))
	}
	return store.Cond{Field: "rid", In: ids}, nil
}

func tokenCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	switch modifier {
	case "", "not":
		var keys []string
		for _, alt := range alts {
			k, err := tokenValue(p.Code, alt)
			if err != nil {
				return store.Cond{}, err
			}
			keys = append(keys, k)
		}
		if modifier == "not" {
			return store.Cond{Field: "tok", NotIn: keys}, nil
		}
		return store.Cond{Field: "tok", In: keys}, nil
	case "text":
		var prefixes []string
		for _, alt := range alts {
			prefixes = append(prefixes, p.Code+":"+normalize(unescape(alt)))
		}
		return store.Cond{Field: "txt", Prefix: prefixes}, nil
	case "of-type":
		if !p.Identifiers {
			return store.Cond{}, fault.New(fault.Invalid, "", "%s:of-type: %s is not a parameter on Identifier", p.Code, p.Code)
		}
		var keys []string
		for _, alt := range alts {
			parts := splitUnescaped(alt, '|')
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return store.Cond{}, fault.New(fault.Invalid, "", "%s:of-type value %q is not system|code|value (the type's coding, then the identifier's value)", p.Code, alt)
			}
			keys = append(keys, ofTypeKey(p.Code, unescape(parts[0]), unescape(parts[1]), unescape(parts[2])))
		}
		return store.Cond{Field: "tok", In: keys}, nil
	}
	return store.Cond{}, badModifier(p.Code, modifier)
}

// tokenValue is the entry that one token value (system|code, |code,
// system| or code) matches.
func tokenValue(code, alt string) (string, error) {
	parts := splitUnescaped(alt, '|')
	switch {
	case len(parts) == 1 && parts[0] != "":
		return tokenQuery(code, nil, unescape(parts[0])), nil
	case len(parts) == 2 && (parts[0] != "" || parts[1] != ""):
		sys := unescape(parts[0])
		return tokenQuery(code, &sys, unescape(parts[1])), nil
	}
	return "", fault.New(fault.Invalid, "", "%s value %q is not system|code, |code, system| or code", code, alt)
}

func stringCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	var vals []string
	for _, alt := range alts {
		vals = append(vals, unescape(alt))
	}
	switch modifier {
	case "":
		for i, v := range vals {
			vals[i] = p.Code + ":" + normalize(v)
		}
		return store.Cond{Field: "str", Prefix: vals}, nil
	case "exact":
		for i, v := range vals {
			vals[i] = p.Code + ":" + v
		}
		return store.Cond{Field: "strx", In: vals}, nil
	case "contains":
		var or []store.Cond
		for _, v := range vals {
			or = append(or, store.Cond{Field: "str", Contains: p.Code + ":", Substring: normalize(v)})
		}
		if len(or) == 1 {
			return or[0], nil
		}
		return store.Cond{Or: or}, nil
	}
	return store.Cond{}, badModifier(p.Code, modifier)
}

func uriCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	var vals []string
	for _, alt := range alts {
		v := unescape(alt)
		switch modifier {
		case "", "below":
			vals = append(vals, p.Code+":"+v)
		case "above":
			// Every prefix of v that ends a path segment, and v itself.
			for i := range v {
				if v[i] == '/' && i > 0 && v[i-1] != '/' && v[i-1] != ':' {
					vals = append(vals, p.Code+":"+v[:i])
				}
			}
			vals = append(vals, p.Code+":"+v)
		default:
			return store.Cond{}, badModifier(p.Code, modifier)
		}
	}
	if modifier == "below" {
		return store.Cond{Field: "uri", Prefix: vals}, nil
	}
	return store.Cond{Field: "uri", In: vals}, nil
}

func referenceCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	if modifier == "identifier" {
		var keys []string
		for _, alt := range alts {
			k, err := tokenValue(p.Code+"@identifier", alt)
			if err != nil {
				return store.Cond{}, err
			}
			keys = append(keys, k)
		}
		return store.Cond{Field: "tok", In: keys}, nil
	}
	if modifier != "" && !fhir.IsResourceType(modifier) {
		return store.Cond{}, badModifier(p.Code, modifier)
	}
	if modifier != "" && len(p.Targets) > 0 && !contains(p.Targets, modifier) {
		return store.Cond{}, fault.New(fault.Invalid, "", "%s cannot refer to a %s (it refers to %s)", p.Code, modifier, strings.Join(p.Targets, ", "))
	}
	var vals []string
	for _, alt := range alts {
		v := withoutHistory(unescape(alt))
		typ, id, isRel := strings.Cut(v, "/")
		switch {
		case isAbsolute(v):
			vals = append(vals, p.Code+":"+v)
		case isRel && fhir.IsResourceType(typ) && fhir.ValidID(id):
			if modifier != "" && modifier != typ {
				return store.Cond{}, fault.New(fault.Invalid, "", "%s:%s value %q names another type", p.Code, modifier, v)
			}
			vals = append(vals, p.Code+":"+v)
		case !isRel && fhir.ValidID(v) && modifier != "":
			vals = append(vals, p.Code+":"+modifier+"/"+v)
		case !isRel && fhir.ValidID(v):
			vals = append(vals, p.Code+"@"+v)
		default:
			return store.Cond{}, fault.New(fault.Invalid, "", "%s value %q is not Type/id, an id or an absolute URL", p.Code, v)
		}
	}
	return store.Cond{Field: "ref", In: vals}, nil
}

// isAbsolute tells an absolute URL or URN reference from a relative one.
func isAbsolute(ref string) bool {
	return strings.Contains(ref, "://") || strings.HasPrefix(ref, "urn:")
}

// withoutHistory drops the /_history/.. of a versioned reference: it
// refers to the resource, and matches as the resource.
func withoutHistory(ref string) string {
	if i := strings.Index(ref, "/_history/"); i > 0 {
		return ref[:i]
	}
	return ref
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
