package fhir

import (
	"strconv"
	"strings"
)

// ParseOptions relax ParseResource for callers that finish a resource
// before it is stored.
type ParseOptions struct {
	// ConditionalReferences accepts Reference.reference values of the form
	// Type?criteria (a conditional reference, as in transactions and bulk
	// import), which the caller must resolve to Type/id before storing.
	ConditionalReferences bool
}

// ConditionalReference splits a conditional reference Type?criteria with a
// known resource type and non-empty criteria; ok is false for anything else.
func ConditionalReference(ref string) (typ, criteria string, ok bool) {
	typ, criteria, found := strings.Cut(ref, "?")
	if !found || criteria == "" || model().resources[typ] == nil {
		return "", "", false
	}
	return typ, criteria, true
}

func (v *validator) conditionalType(ref string) string {
	typ, _, _ := ConditionalReference(ref)
	return typ
}

// EachReference calls fn with the expression (Encounter.subject.reference)
// and value of every Reference.reference of the resource, contained
// resources and extensions included, and replaces the value with what fn
// returns.
func (r *Resource) EachReference(fn func(expr, ref string) string) {
	w := refWalker{m: model(), fn: fn, path: []byte(r.typ)}
	w.object(w.m.resources[r.typ], &r.root)
}

// refWalker walks a validated tree along the model, keeping the path.
type refWalker struct {
	m    *schemaModel
	fn   func(expr, ref string) string
	path []byte
}

func (w *refWalker) object(td *typeDef, o *value) {
	for i := range o.obj {
		m := &o.obj[i]
		e := td.elems[m.key]
		if e == nil || e.prim != nil {
			continue // resourceType, _field extensions, primitives
		}
		n := len(w.path)
		w.path = append(append(w.path, '.'), m.key...)
		if m.val.kind == kArray {
			for j := range m.val.arr {
				k := len(w.path)
				w.path = append(strconv.AppendInt(append(w.path, '['), int64(j), 10), ']')
				w.single(e, &m.val.arr[j])
				w.path = w.path[:k]
			}
		} else {
			w.single(e, &m.val)
		}
		w.path = w.path[:n]
	}
	if td.name == "Reference" {
		if ref := o.get("reference"); ref != nil && ref.kind == kString {
			n := len(w.path)
			w.path = append(w.path, ".reference"...)
			ref.str = w.fn(string(w.path), ref.str)
			w.path = w.path[:n]
		}
	}
}

func (w *refWalker) single(e *elem, v *value) {
	switch {
	case v.kind != kObject:
	case e.complex != nil:
		w.object(e.complex, v)
	default: // a resource: contained, Bundle.entry.resource, Parameters
		if rt := v.get("resourceType"); rt != nil && w.m.resources[rt.str] != nil {
			w.object(w.m.resources[rt.str], v)
		}
	}
}
