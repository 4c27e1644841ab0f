// Package fhir decodes and validates FHIR R4 (4.0.1) JSON resources strictly,
// keeping the accepted JSON as sent: member order, number lexemes (1.50
// stays 1.50), primitive extensions (_field) and contained resources.
//
// Validation uses a type model generated from the HL7 JSON Schema (see
// gen.go); every problem is reported as a *fault.Error issue whose expression
// locates it, e.g. Patient.name[0].given[1].
package fhir

import (
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Resource is a validated resource as an ordered JSON tree.
type Resource struct {
	root value
	typ  string
	size int // length of the input, a good guess for Bytes
}

// Identifier is one Identifier of a resource's top-level identifier element.
type Identifier struct{ System, Value string }

// ParseResource strictly decodes one resource. Errors are *fault.Error: Kind
// Invalid when the JSON cannot be a resource of its type (syntax, unknown
// element, wrong JSON type, bad primitive, unknown code or resourceType,
// null), Kind Unprocessable when it breaks a FHIR rule (missing required
// element, several types of one choice, bad reference, reference to a
// resource type the element does not allow). All issues found are
// reported, up to 100, each with its expression.
func ParseResource(body []byte) (*Resource, error) {
	return ParseResourceWith(body, ParseOptions{})
}

// ParseResourceWith is ParseResource with options.
func ParseResourceWith(body []byte, o ParseOptions) (*Resource, error) {
	root, err := decodeJSON(body)
	if err != nil {
		return nil, fault.New(fault.Invalid, "", "%v", err)
	}
	if root.kind != kObject {
		return nil, fault.New(fault.Invalid, "", "a resource must be a JSON object")
	}
	v := newValidator(model())
	v.conditionalRefs = o.ConditionalReferences
	typ := v.resource(&root, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	return &Resource{root: root, typ: typ, size: len(body)}, nil
}

// Type returns the resourceType.
func (r *Resource) Type() string { return r.typ }

// ID returns the logical id, or "" when there is none.
func (r *Resource) ID() string {
	if v := r.root.get("id"); v != nil {
		return v.str
	}
	return ""
}

// SetID sets the logical id; a new id goes right after resourceType.
func (r *Resource) SetID(id string) {
	setMember(&r.root, "id", value{kind: kString, str: id}, "resourceType")
}

// SetMeta sets meta.versionId and meta.lastUpdated (UTC, milliseconds) and
// keeps the rest of meta. A new meta goes after id, new fields first in meta,
// in the order of the FHIR element definitions.
func (r *Resource) SetMeta(versionID string, lastUpdated time.Time) {
	meta := r.root.get("meta")
	if meta == nil {
		setMember(&r.root, "meta", value{kind: kObject}, "id", "resourceType")
		meta = r.root.get("meta")
	}
	setMember(meta, "versionId", value{kind: kString, str: versionID}, "extension", "id")
	ts := lastUpdated.UTC().Format(InstantLayout)
	setMember(meta, "lastUpdated", value{kind: kString, str: ts}, "_versionId", "versionId")
}

// setMember replaces member key of obj, or inserts it after the first of
// after that obj has (at the start when it has none).
func setMember(obj *value, key string, val value, after ...string) {
	if v := obj.get(key); v != nil {
		*v = val
		return
	}
	at := 0
	for _, a := range after {
		if i := indexOf(obj, a); i >= 0 {
			at = i + 1
			break
		}
	}
	obj.obj = append(obj.obj, member{})
	copy(obj.obj[at+1:], obj.obj[at:])
	obj.obj[at] = member{key: key, val: val}
}

func indexOf(obj *value, key string) int {
	for i := range obj.obj {
		if obj.obj[i].key == key {
			return i
		}
	}
	return -1
}

// Bytes returns the resource as compact JSON.
func (r *Resource) Bytes() []byte {
	return appendJSON(make([]byte, 0, r.size+64), &r.root)
}

// Identifiers returns system and value of each top-level identifier.
func (r *Resource) Identifiers() []Identifier {
	ids := r.root.get("identifier")
	if ids == nil || ids.kind != kArray {
		return nil
	}
	out := make([]Identifier, 0, len(ids.arr))
	for i := range ids.arr {
		var id Identifier
		if s := ids.arr[i].get("system"); s != nil {
			id.System = s.str
		}
		if s := ids.arr[i].get("value"); s != nil {
			id.Value = s.str
		}
		out = append(out, id)
	}
	return out
}
