package fhir

import (
	"github.com/kapfhir/kapfhir/internal/fault"
)

// Patch is a parsed patch document (JSON Patch or FHIRPath Patch), ready to
// be applied to any number of resources: it never keeps a reference into a
// tree it was applied to.
type Patch interface {
	// apply changes root, a resource of type typ, in place. Errors are
	// *fault.Error: Invalid when the document cannot apply to a resource of
	// this type, Unprocessable when it cannot apply to this content.
	apply(root *value, typ string) error
}

// ApplyPatch applies p to current, a stored resource, and validates the
// result as an update would, so that what it returns can be written as the
// next version. Untouched content keeps its member order and number
// lexemes. A result that is not a valid resource is Unprocessable (422)
// with the validator's expressions, whatever their kind in a request body:
// the patch was well formed, its outcome is not. A patch may not change
// resourceType or id.
func ApplyPatch(current []byte, p Patch) (*Resource, error) {
	root, err := decodeJSON(current)
	if err != nil {
		return nil, fault.Wrap(err, "decoding the stored resource")
	}
	typ, id := resourceTypeOf(&root), stringMember(&root, "id")
	if err := p.apply(&root, typ); err != nil {
		return nil, err
	}
	if root.kind != kObject || resourceTypeOf(&root) != typ {
		return nil, fault.New(fault.Unprocessable, typ+".resourceType", "a patch cannot change the resourceType of a %s", typ)
	}
	if v := root.get("id"); v == nil || v.kind != kString || v.str != id {
		return nil, fault.New(fault.Unprocessable, typ+".id", "a patch cannot change or remove the id")
	}
	v := newValidator(model())
	v.resource(&root, false)
	if err := v.err(); err != nil {
		fe := err.(*fault.Error)
		fe.Kind = fault.Unprocessable
		return nil, fe
	}
	return &Resource{root: root, typ: typ, size: len(current)}, nil
}

// clone returns a deep copy of v, so that a value of a patch document can
// be inserted into many trees, or twice into one.
func (v *value) clone() value {
	c := value{kind: v.kind, str: v.str}
	if v.obj != nil {
		c.obj = make([]member, len(v.obj))
		for i := range v.obj {
			c.obj[i] = member{key: v.obj[i].key, val: v.obj[i].val.clone()}
		}
	}
	if v.arr != nil {
		c.arr = make([]value, len(v.arr))
		for i := range v.arr {
			c.arr[i] = v.arr[i].clone()
		}
	}
	return c
}

// removeMember deletes member key of obj, if present.
func removeMember(obj *value, key string) {
	if i := indexOf(obj, key); i >= 0 {
		obj.obj = append(obj.obj[:i], obj.obj[i+1:]...)
	}
}

// insertAt inserts x at position i of s (0 <= i <= len(s)).
func insertAt[T any](s []T, i int, x T) []T {
	var zero T
	s = append(s, zero)
	copy(s[i+1:], s[i:])
	s[i] = x
	return s
}

// moveItem moves the item at from to position to of s.
func moveItem[T any](s []T, from, to int) {
	x := s[from]
	if from < to {
		copy(s[from:to], s[from+1:to+1])
	} else {
		copy(s[to+1:from+1], s[to:from])
	}
	s[to] = x
}
