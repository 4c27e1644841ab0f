package search

import (
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Everything parses Patient/{id}/$everything: the patient and the
// resources of its compartment are the matches, one store query over all
// their types (each type its own branch of an $or, {type: T, ref: {$in:
// codes of T}}, served by the {type, ref} index), sorted by id then type
// like a system search; the resources they refer to that are in no
// patient's compartment (Practitioner, Organization, Location, Medication,
// ...) are included per page (see Request.Referenced).
//
// Parameters: _since (an instant: resources last updated since), _type (a
// comma list restricting both the matches and the included resources),
// _count, and the _page of next links. Anything else is a 400, or skipped
// and reported with lenient handling.
func Everything(reg *fhir.Registry, patient string, q url.Values, lenient bool) (*Request, error) {
	r := &Request{Count: defaultCount, Total: "none", reg: reg}
	var matches, included []string // the types of each kind
	for _, t := range fhir.ResourceTypes() {
		if inPatientCompartment(t) {
			matches = append(matches, t)
		} else {
			included = append(included, t)
		}
	}
	var canon []string
	for _, name := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[name] {
			var err error
			switch name {
			case "_type":
				var types []string
				if types, err = everythingTypes(v, len(q[name])); err == nil {
					matches = slices.DeleteFunc(matches, func(t string) bool { return !slices.Contains(types, t) })
					included = slices.DeleteFunc(included, func(t string) bool { return !slices.Contains(types, t) })
				}
			case "_since":
				var c store.Cond
				if c, err = sinceCond(v); err == nil {
					r.Conds = append(r.Conds, c)
				}
			case "_count", "_page", "_format", "_pretty":
				_, err = r.control(name, v)
			default:
				err = fault.New(fault.Invalid, "", "$everything does not support the parameter %q (it takes _since, _type and _count)", name)
			}
			if err := r.tolerate(fault.Locate(err, name), lenient); err != nil {
				return nil, err
			}
			if err == nil && (name == "_type" || name == "_since") {
				canon = append(canon, url.QueryEscape(name)+"="+url.QueryEscape(v))
			}
		}
	}
	// Types stays a list even with one type, so the sort is always the
	// cross-type one and the cursor always carries the type.
	r.Types = append([]string{}, matches...)
	r.Conds = append(r.Conds, compartmentConds(patient, matches)...)
	r.Sort = []store.Sort{{Field: "rid"}, {Field: "type"}}
	r.Referenced = included
	r.Canonical = "Patient/" + patient + "/$everything?" + strings.Join(canon, "&") + "#rid,type"
	return r, nil
}

// compartmentConds select the resources of types in the compartment of
// Patient/id: an $or of one branch per type, {type: T} and T's own
// condition (a code that puts one type in the compartment may not put
// another in it).
func compartmentConds(id string, types []string) []store.Cond {
	if len(types) == 0 {
		return []store.Cond{{Field: "rid", In: []string{}}} // _type named included types only
	}
	var branches []store.Cond
	for _, t := range types {
		c, _ := CompartmentCond("Patient", t, []string{id}) // every type of types has a place
		branches = append(branches, store.Cond{And: []store.Cond{{Field: "type", In: []string{t}}, c}})
	}
	return []store.Cond{{Or: branches}}
}

// inPatientCompartment reports whether resources of typ can be in a
// patient's compartment: those are matches of $everything (for this
// patient) or left out (another patient's), never included.
func inPatientCompartment(typ string) bool {
	return typ == "Patient" || len(fhir.CompartmentParams("Patient", typ)) > 0
}

// everythingTypes parses the _type of $everything.
func everythingTypes(v string, times int) ([]string, error) {
	if times != 1 {
		return nil, fault.New(fault.Invalid, "", "_type is given %d times; list the types once, separated by commas", times)
	}
	var types []string
	for _, t := range strings.Split(v, ",") {
		if !fhir.IsResourceType(t) {
			return nil, fault.New(fault.Invalid, "", "_type: %q is not a resource type", t)
		}
		types = append(types, t)
	}
	return types, nil
}

// sinceCond is _since: last updated at or after the instant.
func sinceCond(v string) (store.Cond, error) {
	t, err := fhir.ParseInstant(v)
	if err != nil {
		return store.Cond{}, fault.New(fault.Invalid, "", "_since must be an instant such as 2026-01-02T03:04:05Z, not %q", v)
	}
	return store.Cond{Field: "ts", From: t}, nil
}
