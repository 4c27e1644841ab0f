package fhir

import (
	"slices"
	"strconv"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// fhirPathPatch is a FHIRPath Patch document: a Parameters resource whose
// operation parameters are applied in order. Paths are expressions of the
// subset fhirpath.go evaluates; an operation acts on what a path selects
// only when the evaluator returns nodes of the resource (elements, indexers,
// where(), first(), ...), never on computed values (exists(), literals) or
// resolved references, which are Invalid naming the path part.
type fhirPathPatch []fpOperation

type fpOperation struct {
	typ  string // add, insert, delete, replace, move
	at   string // Parameters.parameter[i]
	path *fpNode
	// parts maps each part name given to its expression, for messages.
	parts               map[string]string
	pathText, name      string
	value               *patchValue
	index, source, dest int
}

// patchValue is the value part of an operation: a value[x] (typ is its FHIR
// type, ext its _value[x]), a resource, or nested parts, each an element of
// an anonymous (backbone) type.
type patchValue struct {
	at    string
	typ   string
	v     *value
	ext   *value
	parts []namedValue
}

type namedValue struct {
	name string
	val  *patchValue
}

// fpPatchParts lists the parts each operation type takes, required first.
var fpPatchParts = map[string][]string{
	"add":     {"path", "name", "value"},
	"insert":  {"path", "index", "value"},
	"delete":  {"path"},
	"replace": {"path", "value"},
	"move":    {"path", "source", "destination"},
}

// ParseFHIRPathPatch reads a FHIRPath Patch document (a Parameters
// resource). A malformed document is Invalid, naming the parameter or part.
func ParseFHIRPathPatch(body []byte) (Patch, error) {
	res, err := ParseResource(body)
	if err != nil {
		return nil, err
	}
	if res.Type() != "Parameters" {
		return nil, fault.New(fault.Invalid, "resourceType", "a FHIRPath Patch is a Parameters resource, not a %s", res.Type())
	}
	params := res.root.get("parameter")
	if params == nil {
		return nil, fault.New(fault.Invalid, "Parameters", "the patch has no operation")
	}
	p := make(fhirPathPatch, 0, len(params.arr))
	for i := range params.arr {
		op, err := parseFPOperation(&params.arr[i], "Parameters.parameter["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		p = append(p, op)
	}
	return p, nil
}

func parseFPOperation(param *value, at string) (fpOperation, error) {
	op := fpOperation{at: at, parts: map[string]string{}, index: -1, source: -1, dest: -1}
	if stringMember(param, "name") != "operation" {
		return op, fault.New(fault.Invalid, at+".name", "a FHIRPath Patch parameter is named operation")
	}
	parts := param.get("part")
	if parts == nil {
		return op, fault.New(fault.Invalid, at, "the operation has no parts")
	}
	values := map[string]*value{}
	for j := range parts.arr {
		part := &parts.arr[j]
		name, pat := stringMember(part, "name"), at+".part["+strconv.Itoa(j)+"]"
		switch name {
		case "type", "path", "name", "value", "index", "source", "destination":
		default:
			return op, fault.New(fault.Invalid, pat, "unknown operation part %q", name)
		}
		if _, dup := op.parts[name]; dup {
			return op, fault.New(fault.Invalid, pat, "part %s is given twice", name)
		}
		op.parts[name] = pat
		values[name] = part
	}
	typePart := values["type"]
	if typePart == nil {
		return op, fault.New(fault.Invalid, at, "the operation has no type part")
	}
	op.typ = stringMember(typePart, "valueCode")
	want, ok := fpPatchParts[op.typ]
	if !ok {
		return op, fault.New(fault.Invalid, op.parts["type"], "operation type must be a valueCode add, insert, delete, replace or move")
	}
	for _, w := range want {
		if values[w] == nil {
			return op, fault.New(fault.Invalid, at, "operation %s needs a %s part", op.typ, w)
		}
	}
	for name, pat := range op.parts {
		if name != "type" && !slices.Contains(want, name) {
			return op, fault.New(fault.Invalid, pat, "operation %s takes no %s part", op.typ, name)
		}
	}
	var err error
	for _, w := range want {
		v, pat := values[w], op.parts[w]
		switch w {
		case "path":
			op.pathText = stringMember(v, "valueString")
			if op.path, err = compileFHIRPath(op.pathText); err != nil || op.pathText == "" {
				return op, fault.New(fault.Invalid, pat, "path %q is not an expression this server evaluates: %v", op.pathText, err)
			}
		case "name":
			if op.name = stringMember(v, "valueString"); op.name == "" {
				return op, fault.New(fault.Invalid, pat, "name must be a valueString")
			}
		case "index":
			op.index, err = intPart(v, pat)
		case "source":
			op.source, err = intPart(v, pat)
		case "destination":
			op.dest, err = intPart(v, pat)
		case "value":
			op.value, err = parsePatchValue(v, pat)
		}
		if err != nil {
			return op, err
		}
	}
	return op, nil
}

func intPart(part *value, at string) (int, error) {
	if v := part.get("valueInteger"); v != nil {
		if n, err := strconv.Atoi(v.str); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fault.New(fault.Invalid, at, "the part needs a valueInteger of 0 or more")
}

// parsePatchValue reads the value of a part: its value[x], its resource or
// its nested parts (one of them).
func parsePatchValue(part *value, at string) (*patchValue, error) {
	pv := &patchValue{at: at}
	td := model().types["Parameters_Parameter"]
	for i := range part.obj {
		m := &part.obj[i]
		if e := td.elems[m.key]; e != nil && e.choice == "value" {
			pv.typ, pv.v = e.typ, &m.val
			pv.ext = part.get("_" + m.key)
		}
	}
	if r := part.get("resource"); r != nil {
		if pv.v != nil {
			return nil, fault.New(fault.Invalid, at, "a value part has one of value[x], resource or part")
		}
		pv.v = r
	}
	if nested := part.get("part"); nested != nil {
		if pv.v != nil {
			return nil, fault.New(fault.Invalid, at, "a value part has one of value[x], resource or part")
		}
		for j := range nested.arr {
			pat := at + ".part[" + strconv.Itoa(j) + "]"
			child, err := parsePatchValue(&nested.arr[j], pat)
			if err != nil {
				return nil, err
			}
			pv.parts = append(pv.parts, namedValue{stringMember(&nested.arr[j], "name"), child})
		}
	}
	if pv.v == nil && pv.parts == nil {
		return nil, fault.New(fault.Invalid, at, "the value part has no value[x], resource or part")
	}
	return pv, nil
}

func (p fhirPathPatch) apply(root *value, typ string) error {
	m := model()
	for i := range p {
		op := &p[i]
		if _, err := fpCheck(m, op.path, nil, []string{typ}, typ); err != nil {
			return fault.New(fault.Invalid, op.parts["path"], "path %q does not fit a %s: %v", op.pathText, typ, err)
		}
		env := &fpEnv{m: m, root: fpItem{root, typ}}
		var err error
		switch op.typ {
		case "add":
			err = op.add(env)
		case "insert", "move":
			err = op.list(env)
		case "delete":
			err = op.delete(env)
		default:
			err = op.replace(env)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// single evaluates n to exactly one node of the tree.
func (op *fpOperation) single(env *fpEnv, n *fpNode) (fpItem, error) {
	items := env.eval(n, []fpItem{env.root})
	if len(items) != 1 {
		return fpItem{}, fault.New(fault.Unprocessable, op.parts["path"], "path %q selects %d elements; %s needs exactly one", op.pathText, len(items), op.typ).WithCode("processing")
	}
	return items[0], nil
}

// container gives the type of an object node the operation adds to.
func (op *fpOperation) container(env *fpEnv, it fpItem) (*typeDef, error) {
	typ := it.typ
	if typ == anyType {
		typ = resourceTypeOf(it.v)
	}
	td := env.m.types[typ]
	if it.v == nil || it.v.kind != kObject || td == nil {
		return nil, fault.New(fault.Invalid, op.parts["path"], "path %q does not select an element with children in the resource", op.pathText)
	}
	return td, nil
}

func (op *fpOperation) add(env *fpEnv) error {
	it, err := op.single(env, op.path)
	if err != nil {
		return err
	}
	td, err := op.container(env, it)
	if err != nil {
		return err
	}
	e, err := elemFor(td, op.name, op.value, op.parts["name"])
	if err != nil {
		return err
	}
	if !e.array && it.v.get(e.name) != nil {
		return fault.New(fault.Unprocessable, op.parts["name"], "%s already has a %s; use replace", op.pathText, e.name).WithCode("processing")
	}
	v, ext, err := op.value.build(e)
	if err != nil {
		return err
	}
	addElement(it.v, e, v, ext)
	return nil
}

// list handles insert and move, whose path names a repeating element: the
// path is that element's parent and name, so that an empty list can be
// inserted into.
func (op *fpOperation) list(env *fpEnv) error {
	if op.path.op != fpName || op.path.left == nil {
		return fault.New(fault.Invalid, op.parts["path"], "%s needs a path ending in the name of a repeating element", op.typ)
	}
	parent, err := op.single(env, op.path.left)
	if err != nil {
		return err
	}
	td, err := op.container(env, parent)
	if err != nil {
		return err
	}
	e := td.elems[op.path.name]
	if e == nil || !e.array {
		return fault.New(fault.Invalid, op.parts["path"], "%s is not a repeating element", op.pathText)
	}
	list, ext := parent.v.get(e.name), parent.v.get(e.extKey)
	n := 0
	if list != nil {
		n = len(list.arr)
	}
	if op.typ == "insert" {
		if op.index > n {
			return fault.New(fault.Unprocessable, op.parts["index"], "index %d is past the end of %s (%d elements)", op.index, op.pathText, n).WithCode("processing")
		}
		v, vext, err := op.value.build(e)
		if err != nil {
			return err
		}
		insertElement(parent.v, e, op.index, v, vext)
		return nil
	}
	for _, x := range []struct {
		part string
		i    int
	}{{"source", op.source}, {"destination", op.dest}} {
		if x.i >= n {
			return fault.New(fault.Unprocessable, op.parts[x.part], "%s %d is past the end of %s (%d elements)", x.part, x.i, op.pathText, n).WithCode("processing")
		}
	}
	moveItem(list.arr, op.source, op.dest)
	if ext != nil && ext.kind == kArray && len(ext.arr) == n {
		moveItem(ext.arr, op.source, op.dest)
	}
	return nil
}

func (op *fpOperation) delete(env *fpEnv) error {
	items := env.eval(op.path, []fpItem{env.root})
	if len(items) == 0 {
		return nil // the spec: deleting what is not there changes nothing
	}
	if len(items) > 1 {
		return fault.New(fault.Unprocessable, op.parts["path"], "path %q selects %d elements; delete removes one", op.pathText, len(items)).WithCode("processing")
	}
	loc, err := op.locate(env, items[0])
	if err != nil {
		return err
	}
	loc.remove()
	return nil
}

func (op *fpOperation) replace(env *fpEnv) error {
	it, err := op.single(env, op.path)
	if err != nil {
		return err
	}
	loc, err := op.locate(env, it)
	if err != nil {
		return err
	}
	e := loc.e
	if e.choice != "" {
		if e, err = elemFor(loc.td, e.choice, op.value, op.parts["value"]); err != nil {
			return err
		}
	}
	v, ext, err := op.value.build(e)
	if err != nil {
		return err
	}
	if loc.index >= 0 {
		loc.obj.get(e.name).arr[loc.index] = v
		if ext != nil {
			setItemExt(loc.obj, e, loc.index, *ext)
		}
		return nil
	}
	if e != loc.e { // another type of a choice: rename in place
		i := indexOf(loc.obj, loc.e.name)
		loc.obj.obj[i].key = e.name
		removeMember(loc.obj, loc.e.extKey)
	}
	*loc.obj.get(e.name) = v
	if ext != nil {
		setMember(loc.obj, e.extKey, *ext, e.name)
	}
	return nil
}

func (op *fpOperation) locate(env *fpEnv, it fpItem) (location, error) {
	if it.v != nil {
		if loc, ok := locate(env.m, env.root.v, env.m.types[env.root.typ], it.v); ok {
			return loc, nil
		}
	}
	return location{}, fault.New(fault.Invalid, op.parts["path"], "path %q does not select an element of the resource", op.pathText)
}

// elemFor is element name of td, a choice group by the type of the value
// (value with a valueQuantity is valueQuantity).
func elemFor(td *typeDef, name string, pv *patchValue, at string) (*elem, error) {
	if e := td.elems[name]; e != nil {
		return e, nil
	}
	choices := choiceElems(td, name)
	if len(choices) == 0 {
		return nil, fault.New(fault.Invalid, at, "%s has no element %q", td.name, name)
	}
	for _, e := range choices {
		if e.typ == pv.typ {
			return e, nil
		}
	}
	return nil, fault.New(fault.Invalid, pv.at, "%s.%s[x] cannot be a %s", td.name, name, orNone(pv.typ))
}

func orNone(t string) string {
	if t == "" {
		return "value without a type"
	}
	return t
}

// build makes the JSON of pv as element e, and its _element extension
// (nil when none).
func (pv *patchValue) build(e *elem) (value, *value, error) {
	if pv.v != nil {
		var ext *value
		if pv.ext != nil {
			x := pv.ext.clone()
			ext = &x
		}
		return pv.v.clone(), ext, nil
	}
	if e.complex == nil {
		return value{}, nil, fault.New(fault.Invalid, pv.at, "parts cannot make a %s; give a value[x]", e.typ)
	}
	obj := value{kind: kObject}
	for _, p := range pv.parts {
		ce, err := elemFor(e.complex, p.name, p.val, p.val.at)
		if err != nil {
			return value{}, nil, err
		}
		if !ce.array && obj.get(ce.name) != nil {
			return value{}, nil, fault.New(fault.Invalid, p.val.at, "%s is given twice", ce.name)
		}
		v, ext, err := p.val.build(ce)
		if err != nil {
			return value{}, nil, err
		}
		addElement(&obj, ce, v, ext)
	}
	return obj, nil, nil
}

// addElement adds v (and its extension) as element e of obj: appended to
// a repeating element, else set.
func addElement(obj *value, e *elem, v value, ext *value) {
	if !e.array {
		setMember(obj, e.name, v, lastKey(obj))
		if ext != nil {
			setMember(obj, e.extKey, *ext, e.name)
		}
		return
	}
	n := 0
	if list := obj.get(e.name); list != nil {
		n = len(list.arr)
	}
	insertElement(obj, e, n, v, ext)
}

// insertElement inserts v at position i of repeating element e of obj,
// keeping its _element array (when there is one, or v brings one) aligned.
func insertElement(obj *value, e *elem, i int, v value, ext *value) {
	list := obj.get(e.name)
	if list == nil {
		setMember(obj, e.name, value{kind: kArray}, lastKey(obj))
		list = obj.get(e.name)
	}
	list.arr = insertAt(list.arr, i, v)
	if x := obj.get(e.extKey); x != nil && x.kind == kArray {
		x.arr = insertAt(x.arr, min(i, len(x.arr)), value{kind: kNull})
	}
	if ext != nil {
		setItemExt(obj, e, i, *ext)
	}
}

// setItemExt sets the extension of item i of repeating primitive e of obj,
// creating the _element array (nulls for the other items) when needed.
func setItemExt(obj *value, e *elem, i int, ext value) {
	n := len(obj.get(e.name).arr)
	x := obj.get(e.extKey)
	if x == nil || x.kind != kArray {
		setMember(obj, e.extKey, value{kind: kArray}, e.name)
		x = obj.get(e.extKey)
	}
	for len(x.arr) < n {
		x.arr = append(x.arr, value{kind: kNull})
	}
	x.arr[i] = ext
}

func lastKey(obj *value) string {
	if len(obj.obj) == 0 {
		return ""
	}
	return obj.obj[len(obj.obj)-1].key
}

// location is where a node of the tree sits: element e (key e.name) of
// obj, of type td, at index of its array or -1 when it is not repeating.
type location struct {
	obj   *value
	td    *typeDef
	e     *elem
	index int
}

// locate finds target, a node returned by the evaluator, under obj of type
// td by identity.
func locate(m *schemaModel, obj *value, td *typeDef, target *value) (location, bool) {
	if td == nil {
		return location{}, false
	}
	for i := range obj.obj {
		mem := &obj.obj[i]
		e := td.elems[mem.key]
		if e == nil {
			continue // resourceType, _element: the evaluator never returns them
		}
		if mem.val.kind != kArray {
			if &mem.val == target {
				return location{obj, td, e, -1}, true
			}
			if loc, ok := locateIn(m, e, &mem.val, target); ok {
				return loc, true
			}
			continue
		}
		for j := range mem.val.arr {
			if &mem.val.arr[j] == target {
				return location{obj, td, e, j}, true
			}
			if loc, ok := locateIn(m, e, &mem.val.arr[j], target); ok {
				return loc, true
			}
		}
	}
	return location{}, false
}

func locateIn(m *schemaModel, e *elem, v *value, target *value) (location, bool) {
	if v.kind != kObject {
		return location{}, false
	}
	td := e.complex
	if e.typ == resourceList {
		td = m.resources[resourceTypeOf(v)]
	}
	return locate(m, v, td, target)
}

// remove deletes the located node with its extension; a list left empty
// goes, as FHIR has no empty arrays.
func (l location) remove() {
	if l.index < 0 {
		removeMember(l.obj, l.e.name)
		removeMember(l.obj, l.e.extKey)
		return
	}
	list := l.obj.get(l.e.name)
	list.arr = append(list.arr[:l.index], list.arr[l.index+1:]...)
	if x := l.obj.get(l.e.extKey); x != nil && x.kind == kArray && l.index < len(x.arr) {
		x.arr = append(x.arr[:l.index], x.arr[l.index+1:]...)
		if allNull(x.arr) {
			removeMember(l.obj, l.e.extKey)
		}
	}
	if len(list.arr) == 0 {
		removeMember(l.obj, l.e.name)
	}
}

func allNull(vs []value) bool {
	for i := range vs {
		if vs[i].kind != kNull {
			return false
		}
	}
	return true
}

// FHIRPathPatchSupport describes what FHIRPath Patch paths may be, for the
// CapabilityStatement and errors.
const FHIRPathPatchSupport = "FHIRPath Patch: add, insert, delete, replace and move; paths in the FHIRPath subset of search parameters " +
	"(element names, indexers [n], where(), first(), last(), ofType()/as()) that select elements of the resource; " +
	"insert and move take a path ending in a repeating element's name."
