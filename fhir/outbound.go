package fhir

// Edits for a copy of a stored resource that is sent to another server
// (the EHR sync): everything else of the tree, lexemes included, stays.

// RemoveID drops the logical id (a create sends none).
func (r *Resource) RemoveID() { removeMembers(&r.root, "id", "_id") }

// RemoveMeta drops the named members of meta (versionId, lastUpdated,
// source: the receiving server sets its own), and meta when it is left
// empty.
func (r *Resource) RemoveMeta(keys ...string) {
	meta := r.root.get("meta")
	if meta == nil || meta.kind != kObject {
		return
	}
	for _, k := range keys {
		removeMembers(meta, k, "_"+k)
	}
	if len(meta.obj) == 0 {
		removeMembers(&r.root, "meta")
	}
}

// AddTag appends a meta.tag coding.
func (r *Resource) AddTag(system, code string) {
	meta := r.root.get("meta")
	if meta == nil {
		setMember(&r.root, "meta", value{kind: kObject}, "id", "resourceType")
		meta = r.root.get("meta")
	}
	tags := meta.get("tag")
	if tags == nil || tags.kind != kArray {
		setMember(meta, "tag", value{kind: kArray}, "security", "profile", "source", "lastUpdated", "versionId")
		tags = meta.get("tag")
	}
	tags.arr = append(tags.arr, codingValue(system, code))
}

// AddIdentifier appends id to the resource's identifier element, or sets
// it when that element holds one identifier and is absent. It reports
// false when the type has no identifier element or its one identifier is
// taken.
func (r *Resource) AddIdentifier(id Identifier) bool {
	td := model().resources[r.typ]
	e := td.elems["identifier"]
	if e == nil || e.complex == nil || e.complex.name != "Identifier" {
		return false
	}
	v := identifierValue(id)
	cur := r.root.get("identifier")
	switch {
	case cur == nil && e.array:
		setMember(&r.root, "identifier", value{kind: kArray, arr: []value{v}}, identifierAfter...)
	case cur == nil:
		setMember(&r.root, "identifier", v, identifierAfter...)
	case e.array && cur.kind == kArray:
		cur.arr = append(cur.arr, v)
	default:
		return false
	}
	return true
}

// identifierAfter are the members identifier follows in every resource.
var identifierAfter = []string{"modifierExtension", "extension", "contained", "text", "language", "implicitRules", "meta", "id", "resourceType"}

// ReferenceEdit is what EditReferences does with one reference: Reference
// replaces the reference string; a non-nil Logical makes the Reference a
// logical one instead (the reference string removed, the identifier set
// unless the Reference has one; display stays).
type ReferenceEdit struct {
	Reference string
	Logical   *Identifier
}

// EditReferences calls fn with every Reference.reference of the resource
// (contained resources included; see RewriteReferences) and applies what
// it returns. The first error stops the walk.
func (r *Resource) EditReferences(fn func(path, ref string) (ReferenceEdit, error)) error {
	return r.eachReference(func(path []byte, ref *value) error {
		v := ref.get("reference")
		if v == nil || v.kind != kString {
			return nil
		}
		ed, err := fn(string(path)+".reference", v.str)
		if err != nil {
			return err
		}
		if ed.Logical == nil {
			v.str = ed.Reference
			return nil
		}
		removeMembers(ref, "reference", "_reference")
		if ref.get("identifier") == nil {
			setMember(ref, "identifier", identifierValue(*ed.Logical), "type", "extension", "id")
		}
		return nil
	})
}

func removeMembers(obj *value, keys ...string) {
	for _, k := range keys {
		removeMember(obj, k)
	}
}

func stringValue(s string) value { return value{kind: kString, str: s} }

func codingValue(system, code string) value {
	return value{kind: kObject, obj: []member{{key: "system", val: stringValue(system)}, {key: "code", val: stringValue(code)}}}
}

func identifierValue(id Identifier) value {
	return value{kind: kObject, obj: []member{{key: "system", val: stringValue(id.System)}, {key: "value", val: stringValue(id.Value)}}}
}
