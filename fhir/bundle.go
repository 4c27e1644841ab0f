package fhir

import (
	"strconv"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Bundle is a batch or transaction Bundle: its envelope validated, each
// entry's resource validated on its own so that one bad entry of a batch
// does not reject the others.
type Bundle struct {
	Type    string
	Entries []BundleEntry
}

// BundleEntry is one entry; Request is nil when the entry has none.
type BundleEntry struct {
	FullURL  string
	Request  *BundleRequest
	Resource *Resource // nil when absent or invalid
	// Err holds the problems of the entry's resource, with expressions
	// such as Bundle.entry[3].resource.status.
	Err error
}

// BundleRequest is Bundle.entry.request.
type BundleRequest struct {
	Method, URL                                        string
	IfNoneMatch, IfModifiedSince, IfMatch, IfNoneExist string
}

// ParseBundle decodes a Bundle as ParseResource does, except that each
// entry's resource is validated separately (its problems land in the
// entry's Err) and, when conditionalRefs is set, references may be
// conditional (Patient?identifier=...), to be resolved by a transaction.
// The entries' resources share the decoded tree: the bundle is not copied.
func ParseBundle(body []byte, conditionalRefs bool) (*Bundle, error) {
	root, err := decodeJSON(body)
	if err != nil {
		return nil, fault.New(fault.Invalid, "", "%v", err)
	}
	if root.kind != kObject || stringMember(&root, "resourceType") != "Bundle" {
		return nil, fault.New(fault.Invalid, "resourceType", "the body must be a Bundle")
	}
	// Take the entries' resources out of the envelope, so that validating
	// it does not validate them.
	var detached []*value
	if list := root.get("entry"); list != nil && list.kind == kArray {
		detached = make([]*value, len(list.arr))
		for i := range list.arr {
			e := &list.arr[i]
			if e.kind != kObject {
				continue
			}
			if at := indexOf(e, "resource"); at >= 0 {
				r := e.obj[at].val
				detached[i] = &r
				e.obj = append(e.obj[:at], e.obj[at+1:]...)
			}
		}
	}
	v := newValidator(model())
	v.resource(&root, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	b := &Bundle{Type: stringMember(&root, "type"), Entries: make([]BundleEntry, len(detached))}
	list := root.get("entry")
	for i := range detached {
		e := &list.arr[i]
		out := &b.Entries[i]
		out.FullURL = stringMember(e, "fullUrl")
		if rq := e.get("request"); rq != nil {
			out.Request = &BundleRequest{
				Method: stringMember(rq, "method"), URL: stringMember(rq, "url"),
				IfNoneMatch: stringMember(rq, "ifNoneMatch"), IfModifiedSince: stringMember(rq, "ifModifiedSince"),
				IfMatch: stringMember(rq, "ifMatch"), IfNoneExist: stringMember(rq, "ifNoneExist"),
			}
		}
		if detached[i] == nil {
			continue
		}
		rv := newValidator(model())
		rv.conditionalRefs = conditionalRefs
		rv.path = append(rv.path, "Bundle.entry["+strconv.Itoa(i)+"].resource"...)
		typ := rv.resource(detached[i], false)
		if out.Err = rv.err(); out.Err == nil {
			out.Resource = &Resource{root: *detached[i], typ: typ}
		}
	}
	return b, nil
}

// RewriteReferences calls fn with every Reference.reference of the
// resource (contained resources included) and its path below the resource
// (subject.reference, contained[0].performer[1].reference), and stores what
// fn returns. The first error stops the walk.
func (r *Resource) RewriteReferences(fn func(path, ref string) (string, error)) error {
	return r.eachReference(func(path []byte, ref *value) error {
		v := ref.get("reference")
		if v == nil || v.kind != kString {
			return nil
		}
		s, err := fn(string(path)+".reference", v.str)
		if err != nil {
			return err
		}
		v.str = s
		return nil
	})
}

// eachReference calls fn with every Reference object of the resource
// (contained resources included) and its path.
func (r *Resource) eachReference(fn func(path []byte, ref *value) error) error {
	m := model()
	return walkRefs(m, m.resources[r.typ], &r.root, nil, fn)
}

func walkRefs(m *schemaModel, td *typeDef, o *value, path []byte, fn func(path []byte, ref *value) error) error {
	if td == nil || o.kind != kObject {
		return nil
	}
	for i := range o.obj {
		mem := &o.obj[i]
		e := td.elems[mem.key]
		if e == nil || e.prim != nil {
			continue // resourceType, _field extensions, primitives
		}
		p := path
		if len(p) > 0 {
			p = append(p[:len(p):len(p)], '.')
		}
		p = append(p, mem.key...)
		if mem.val.kind != kArray {
			if err := walkElem(m, e, &mem.val, p, fn); err != nil {
				return err
			}
			continue
		}
		for j := range mem.val.arr {
			pj := append(p[:len(p):len(p)], '[')
			pj = append(strconv.AppendInt(pj, int64(j), 10), ']')
			if err := walkElem(m, e, &mem.val.arr[j], pj, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func walkElem(m *schemaModel, e *elem, v *value, path []byte, fn func(path []byte, ref *value) error) error {
	if e.complex == nil {
		// A resource (contained, Bundle.entry.resource, Parameters).
		return walkRefs(m, m.resources[stringMember(v, "resourceType")], v, path, fn)
	}
	if e.complex.name == "Reference" && v.kind == kObject {
		if err := fn(path, v); err != nil {
			return err
		}
	}
	return walkRefs(m, e.complex, v, path, fn)
}
