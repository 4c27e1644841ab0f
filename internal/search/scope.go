package search

import (
	"net/url"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// ParseSystem parses a system-level search (GET /fhir?_type=A,B&...): on
// the types of _type, on every type without it. A search parameter must
// mean the same for every type searched, so without _type only the
// Resource-level ones (_id, _lastUpdated, _tag, ...) are accepted.
func ParseSystem(reg *fhir.Registry, q url.Values, lenient bool) (*Request, error) {
	types := fhir.ResourceTypes()
	if vs, ok := q["_type"]; ok {
		if len(vs) != 1 {
			return nil, fault.New(fault.Invalid, "", "_type is given %d times; list the types once, separated by commas", len(vs))
		}
		types = nil
		for _, t := range strings.Split(vs[0], ",") {
			if !fhir.IsResourceType(t) {
				return nil, fault.New(fault.Invalid, "", "_type: %q is not a resource type", t)
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		slices.Sort(types)
		q = cloneWithout(q, "_type")
	}
	return parse(reg, types, q, lenient)
}

func cloneWithout(q url.Values, drop string) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		if k != drop {
			out[k] = v
		}
	}
	return out
}

// InCompartment restricts r, a search on one type, to the compartment of
// the resource comp/id (Patient/1): the resources whose compartment
// parameters (fhir.CompartmentParams) refer to it, and that resource itself
// when r searches its type. A type outside the compartment is a 400, as
// in HAPI. Call it after Parse and before the cursor is checked or made:
// it binds the compartment into r.Canonical.
func (r *Request) InCompartment(comp, id string) error {
	cond, ok := CompartmentCond(comp, r.Type, []string{id})
	if !ok {
		return fault.New(fault.Invalid, "", "%s resources are not in the %s compartment", r.Type, comp)
	}
	r.Conds = append(r.Conds, cond)
	r.Canonical = comp + "/" + id + "/" + r.Canonical
	return nil
}

// CompartmentCond is the condition "in the compartment of comp/id, for one
// of ids" on resources of typ: one of typ's compartment parameters refers
// to it, or, when typ is comp, the resource is it. ok is false when typ's
// resources are never in comp's compartment.
func CompartmentCond(comp, typ string, ids []string) (cond store.Cond, ok bool) {
	var or []store.Cond
	if typ == comp {
		or = append(or, store.Cond{Field: "rid", In: ids})
	}
	var refs []string
	for _, code := range fhir.CompartmentParams(comp, typ) {
		for _, id := range ids {
			refs = append(refs, code+":"+comp+"/"+id)
		}
	}
	if len(refs) > 0 {
		or = append(or, store.Cond{Field: "ref", In: refs})
	}
	switch len(or) {
	case 0:
		return store.Cond{}, false
	case 1:
		return or[0], true
	}
	return store.Cond{Or: or}, true
}

// ResourceInCompartment reports whether res is in the compartment of
// comp/id by the rule of CompartmentCond, evaluated on the resource itself
// rather than on stored index entries (a resource about to be written, a
// version in history).
func ResourceInCompartment(reg *fhir.Registry, comp, id string, res *fhir.Resource) bool {
	if res.Type() == comp && res.ID() == id {
		return true
	}
	for _, code := range fhir.CompartmentParams(comp, res.Type()) {
		for _, v := range res.SearchValues(reg.Lookup(res.Type(), code)) {
			if v.RefType == comp && v.RefID == id {
				return true
			}
		}
	}
	return false
}
