package fhir

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Registry is the set of search parameters the server serves: the built-in
// R4 ones (generated, immutable) plus the custom ones defined by active
// SearchParameter resources. It is safe for concurrent use; the parameters
// it returns are shared and must not be modified.
type Registry struct {
	builtin *searchRegistry

	mu     sync.RWMutex
	custom map[string]*CustomParam            // by SearchParameter id
	byType map[string][]*SearchParam          // merged lists of the types with custom params
	byCode map[string]map[string]*SearchParam // custom params by type and code
}

// CustomParam is the searchable part of an active SearchParameter resource.
type CustomParam struct {
	ID         string // the SearchParameter's id
	Version    int64  // its versionId
	URL        string // its canonical url (the CapabilityStatement's definition)
	Code, Type string
	Expression string
	Base       []string
}

// customTypes are the parameter types a custom parameter may have: every
// type search serves except composite (whose components would have to be
// custom parameters too).
var customTypes = map[string]bool{
	"number": true, "date": true, "string": true, "token": true, "reference": true, "quantity": true, "uri": true,
}

// NewRegistry returns a registry with the built-in parameters only.
func NewRegistry() *Registry {
	return &Registry{builtin: searchRegistryGet(), custom: map[string]*CustomParam{}}
}

// SearchParams returns the supported search parameters of a resource type,
// including the Resource-level ones (_id, _lastUpdated, ...) and the custom
// ones, sorted by code; nil for an unknown type.
func (r *Registry) SearchParams(resourceType string) []*SearchParam {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if ps, ok := r.byType[resourceType]; ok {
		return ps
	}
	return r.builtin.byType[resourceType]
}

// Lookup returns the parameter code of a resource type, nil if unknown or
// unsupported.
func (r *Registry) Lookup(resourceType, code string) *SearchParam {
	if p := r.builtin.byCode[resourceType][code]; p != nil {
		return p
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byCode[resourceType][code]
}

// Custom returns the custom parameters, sorted by SearchParameter id.
func (r *Registry) Custom() []CustomParam {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]CustomParam, 0, len(r.custom))
	for _, c := range r.custom {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CustomVersion returns the version of SearchParameter id the registry
// serves, 0 when it serves none.
func (r *Registry) CustomVersion(id string) int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c := r.custom[id]; c != nil {
		return c.Version
	}
	return 0
}

// Check reports why c cannot be served as a custom parameter, as an
// error whose issues name the SearchParameter element; nil if it can.
func (r *Registry) Check(c CustomParam) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, err := r.compileCustom(&c)
	return err
}

// Put registers (or replaces) the custom parameter of SearchParameter c.ID.
func (r *Registry) Put(c CustomParam) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.compileCustom(&c); err != nil {
		return err
	}
	r.custom[c.ID] = &c
	return r.rebuild()
}

// Remove unregisters the custom parameter of SearchParameter id, if any.
func (r *Registry) Remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.custom[id] == nil {
		return
	}
	delete(r.custom, id)
	_ = r.rebuild() // what compiled before compiles again
}

func invalidSP(field, format string, args ...any) error {
	return fault.New(fault.Unprocessable, "SearchParameter."+field, format, args...)
}

// compileCustom checks c against the model, the built-in parameters and
// the other custom ones (r.mu held) and returns one parameter per base.
func (r *Registry) compileCustom(c *CustomParam) (map[string]*SearchParam, error) {
	if !validCode(c.Code) {
		return nil, invalidSP("code", "the code %q must be letters, digits, '-' and '_', not starting with '_'", c.Code)
	}
	if !customTypes[c.Type] {
		return nil, invalidSP("type", "custom search parameters of type %q are not supported; use number, date, string, token, reference, quantity or uri", c.Type)
	}
	if c.Expression == "" {
		return nil, invalidSP("expression", "an active search parameter needs an expression")
	}
	if len(c.Base) == 0 {
		return nil, invalidSP("base", "an active search parameter needs a base resource type")
	}
	out := map[string]*SearchParam{}
	m := model()
	for i, base := range c.Base {
		if m.resources[base] == nil {
			return nil, invalidSP("base["+strconv.Itoa(i)+"]", "custom search parameters need a concrete resource type as base, not %q", base)
		}
		if r.builtin.byCode[base][c.Code] != nil {
			return nil, invalidSP("code", "%s already has a search parameter %q", base, c.Code)
		}
		for _, o := range r.custom {
			if o.ID != c.ID && o.Code == c.Code && contains(o.Base, base) {
				return nil, invalidSP("code", "%s already has a search parameter %q (SearchParameter/%s)", base, c.Code, o.ID)
			}
		}
		expr := branchesOf(c.Expression, base)
		if expr == "" {
			return nil, invalidSP("expression", "no part of the expression applies to %s", base)
		}
		p, reason := compileParam(m, &paramFile{Base: base, Code: c.Code, Type: c.Type, Expression: expr})
		if reason != "" {
			return nil, invalidSP("expression", "%s: %s", base, reason)
		}
		p.Custom = c
		out[base] = p
	}
	return out, nil
}

// rebuild recomputes the merged lists from r.custom (r.mu held).
func (r *Registry) rebuild() error {
	byCode := map[string]map[string]*SearchParam{}
	for _, c := range r.custom {
		ps, err := r.compileCustom(c)
		if err != nil {
			return err
		}
		for base, p := range ps {
			if byCode[base] == nil {
				byCode[base] = map[string]*SearchParam{}
			}
			byCode[base][p.Code] = p
		}
	}
	byType := map[string][]*SearchParam{}
	for base, ps := range byCode {
		merged := append([]*SearchParam(nil), r.builtin.byType[base]...)
		for _, p := range ps {
			merged = append(merged, p)
		}
		sort.Slice(merged, func(i, j int) bool { return merged[i].Code < merged[j].Code })
		byType[base] = merged
	}
	r.byType, r.byCode = byType, byCode
	return nil
}

// branchesOf keeps the top-level union branches of expr that apply to
// base: those starting with base, or with no resource type. A parameter
// with several bases has one expression over all of them (Observation.x |
// Condition.y), while each base's expression is checked on its own.
func branchesOf(expr, base string) string {
	var keep []string
	depth, quoted, start := 0, false, 0
	for i := 0; i <= len(expr); i++ {
		if i < len(expr) {
			switch ch := expr[i]; {
			case ch == '\\' && quoted:
				i++
				continue
			case ch == '\'':
				quoted = !quoted
			case quoted:
			case ch == '(' || ch == '[':
				depth++
			case ch == ')' || ch == ']':
				depth--
			}
			if quoted || depth > 0 || expr[i] != '|' {
				continue
			}
		}
		branch := strings.TrimSpace(expr[start:i])
		start = i + 1
		head := branch
		if j := strings.IndexAny(head, ".( "); j >= 0 {
			head = head[:j]
		}
		if head == base || !IsResourceType(head) {
			keep = append(keep, branch)
		}
	}
	return strings.Join(keep, " | ")
}

func validCode(code string) bool {
	if code == "" || code[0] == '_' {
		return false
	}
	for _, ch := range code {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SearchParameterOf reads the searchable part of a SearchParameter
// resource (version: its versionId) and whether it is active; draft and
// retired ones are stored but not served.
func SearchParameterOf(res *Resource, version int64) (CustomParam, bool, error) {
	if res.Type() != "SearchParameter" {
		return CustomParam{}, false, fmt.Errorf("%s is not a SearchParameter", res.Type())
	}
	var sp struct {
		URL, Status, Code, Type, Expression string
		Base                                []string
	}
	if err := json.Unmarshal(res.Bytes(), &sp); err != nil {
		return CustomParam{}, false, fault.Wrap(err, "read SearchParameter")
	}
	c := CustomParam{ID: res.ID(), Version: version, URL: sp.URL, Code: sp.Code, Type: sp.Type, Expression: sp.Expression, Base: sp.Base}
	return c, sp.Status == "active", nil
}
