package fhir

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// maxIssues caps the report: a client that sends garbage learns enough from
// the first hundred problems.
const maxIssues = 100

// Issue types (OperationOutcome.issue.code) used in reports.
const (
	codeStructure = "structure"
	codeValue     = "value"
	codeInvalid   = "code-invalid"
	codeRequired  = "required"
	codeInvariant = "invariant"
)

// validator walks a decoded tree against the model. path is the FHIRPath-like
// expression of the node being checked, grown and cut back as it descends.
type validator struct {
	m       *schemaModel
	element *typeDef // the Element type, for primitive extensions (_field)
	path    []byte
	issues  []fault.Issue
	invalid bool // an Invalid (400) issue was found; otherwise Unprocessable
	// container holds the members of the resource whose contained
	// resources local references (#id) resolve to: the innermost resource
	// that is not itself contained. (The members, not the *value, so that
	// the root value need not escape to the heap.)
	container []member
	// conditionalRefs accepts Type?criteria references (ParseOptions).
	conditionalRefs bool
}

func newValidator(m *schemaModel) *validator {
	return &validator{m: m, element: m.types["Element"], path: make([]byte, 0, 128)}
}

func (v *validator) err() error {
	if len(v.issues) == 0 {
		return nil
	}
	k := fault.Unprocessable
	if v.invalid {
		k = fault.Invalid
	}
	return &fault.Error{Kind: k, Issues: v.issues}
}

// report adds an issue at the current path, extended by field when not empty.
func (v *validator) report(k fault.Kind, code, field, msg string) {
	if k == fault.Invalid {
		v.invalid = true
	}
	if len(v.issues) >= maxIssues {
		return
	}
	n := v.pushField(field)
	v.issues = append(v.issues, fault.Issue{
		Severity:    "error",
		Code:        code,
		Diagnostics: msg,
		Expression:  []string{string(v.path)},
	})
	v.path = v.path[:n]
}

// pushField appends ".name" (or "name" at the root) to the path and returns
// the length to cut back to.
func (v *validator) pushField(name string) int {
	n := len(v.path)
	if name == "" {
		return n
	}
	if n > 0 {
		v.path = append(v.path, '.')
	}
	v.path = append(v.path, name...)
	return n
}

func (v *validator) pushIndex(i int) int {
	n := len(v.path)
	v.path = append(v.path, '[')
	v.path = strconv.AppendInt(v.path, int64(i), 10)
	v.path = append(v.path, ']')
	return n
}

// resource checks an object that must be a resource and returns its type, or
// "" when the type is missing or unknown. At the root the path becomes the
// type name; nested resources continue their parent's path. A contained
// resource resolves local references in its container.
func (v *validator) resource(r *value, contained bool) string {
	rt := r.get("resourceType")
	switch {
	case rt == nil:
		v.report(fault.Invalid, codeStructure, "resourceType", "resourceType is missing")
		return ""
	case rt.kind != kString || v.m.resources[rt.str] == nil:
		v.report(fault.Invalid, codeValue, "resourceType", "unknown resourceType "+string(appendJSON(nil, rt)))
		return ""
	}
	n := len(v.path)
	if n == 0 {
		v.path = append(v.path, rt.str...)
	}
	container := v.container
	if !contained {
		v.container = r.obj
	}
	v.object(v.m.resources[rt.str], r, true)
	v.container = container
	v.path = v.path[:n]
	return rt.str
}

// object checks the members of o against td, then the rules that involve
// several members: required elements, choice groups, reference format.
func (v *validator) object(td *typeDef, o *value, isResource bool) {
	type choice struct{ group, name string }
	var buf [4]choice
	chosen := buf[:0]
	for i := range o.obj {
		m := &o.obj[i]
		if isResource && m.key == "resourceType" {
			continue
		}
		name, isExt := strings.CutPrefix(m.key, "_")
		e := td.elems[name]
		if e == nil || isExt && e.prim == nil {
			v.report(fault.Invalid, codeStructure, m.key, "unknown element "+strconv.Quote(m.key)+" in "+td.name)
			continue
		}
		if e.choice != "" {
			dup := false
			for _, c := range chosen {
				if c.group == e.choice {
					dup = c.name != name
					break
				}
			}
			if dup {
				v.report(fault.Unprocessable, codeInvariant, m.key, "only one of "+e.choice+"[x] is allowed")
			} else {
				chosen = append(chosen, choice{e.choice, name})
			}
		}
		if isExt {
			v.primitiveExtension(e, o, &m.val)
		} else {
			n := v.pushField(name)
			v.elementValue(e, o, &m.val)
			v.path = v.path[:n]
		}
	}
	for _, e := range td.required {
		if o.get(e.name) == nil && o.get(e.extKey) == nil {
			v.report(fault.Unprocessable, codeRequired, e.name, td.name+"."+e.name+" is required")
		}
	}
	for _, g := range td.requiredChoices {
		found := false
		for _, e := range g.elems {
			if o.get(e.name) != nil || o.get(e.extKey) != nil {
				found = true
				break
			}
		}
		if !found {
			v.report(fault.Unprocessable, codeRequired, g.name+"[x]", td.name+"."+g.name+"[x] is required")
		}
	}
	if td.name == "Reference" {
		if r := o.get("reference"); r != nil && r.kind == kString && r.str != "" && !validReference(v.m, r.str) &&
			!(v.conditionalRefs && v.conditionalType(r.str) != "") {
			v.report(fault.Unprocessable, codeValue, "reference", "invalid reference "+strconv.Quote(r.str))
		}
	}
}

// elementValue checks the value of element e (a member of parent), which
// is an array exactly when e repeats.
func (v *validator) elementValue(e *elem, parent, val *value) {
	if !e.array {
		if val.kind == kArray {
			v.report(fault.Invalid, codeStructure, "", e.name+" must not be an array")
			return
		}
		v.single(e, val)
		return
	}
	if val.kind != kArray {
		v.report(fault.Invalid, codeStructure, "", e.name+" must be an array")
		return
	}
	if len(val.arr) == 0 {
		v.report(fault.Invalid, codeStructure, "", "empty arrays are not allowed")
		return
	}
	// A null item is a placeholder for a value that only has an extension.
	var ext *value
	if e.prim != nil {
		if x := parent.get(e.extKey); x != nil && x.kind == kArray {
			ext = x
		}
	}
	for i := range val.arr {
		n := v.pushIndex(i)
		if val.arr[i].kind == kNull {
			if ext == nil || i >= len(ext.arr) || ext.arr[i].kind == kNull {
				v.report(fault.Invalid, codeStructure, "", "null is only allowed as a placeholder for an item with extensions in "+e.extKey)
			}
		} else {
			v.single(e, &val.arr[i])
		}
		v.path = v.path[:n]
	}
}

func (v *validator) single(e *elem, val *value) {
	switch {
	case val.kind == kNull:
		v.report(fault.Invalid, codeStructure, "", "null is not allowed")
	case e.prim != nil:
		v.primitive(e, val)
	case val.kind != kObject:
		v.report(fault.Invalid, codeStructure, "", e.name+" must be a JSON object")
	case len(val.obj) == 0:
		v.report(fault.Invalid, codeStructure, "", "empty objects are not allowed")
	case e.complex != nil:
		v.object(e.complex, val, false)
		if e.targets != nil {
			v.referenceTargets(e, val)
		}
	default:
		if v.resource(val, e.name == "contained") != "" && e.name == "contained" {
			// dom-2, and an id so that the container can refer to it.
			if val.get("contained") != nil {
				v.report(fault.Unprocessable, codeInvariant, "contained", "a contained resource must not contain resources")
			}
			if val.get("id") == nil {
				v.report(fault.Unprocessable, codeRequired, "id", "a contained resource must have an id")
			}
		}
	}
}

// primitiveExtension checks "_name", the id and extensions of primitive
// element e. Its content is reported at the path of the value it extends
// (Patient.name[0].given[1].extension[0]), as FHIRPath sees it.
func (v *validator) primitiveExtension(e *elem, parent, val *value) {
	if !e.array {
		if val.kind != kObject {
			v.report(fault.Invalid, codeStructure, e.extKey, e.extKey+" must be a JSON object")
			return
		}
		n := v.pushField(e.name)
		v.elementObject(val)
		v.path = v.path[:n]
		return
	}
	if val.kind != kArray {
		v.report(fault.Invalid, codeStructure, e.extKey, e.extKey+" must be an array")
		return
	}
	if len(val.arr) == 0 {
		v.report(fault.Invalid, codeStructure, e.extKey, "empty arrays are not allowed")
		return
	}
	base := parent.get(e.name)
	if base != nil && base.kind != kArray {
		base = nil // reported with the base element
	}
	if base != nil && len(base.arr) != len(val.arr) {
		v.report(fault.Invalid, codeStructure, e.extKey, e.extKey+" must have as many items as "+e.name)
	}
	for i := range val.arr {
		n := v.pushField(e.name)
		v.pushIndex(i)
		switch {
		case val.arr[i].kind != kNull:
			v.elementObject(&val.arr[i])
		case base == nil:
			// With a base array, its own loop reports an item that is null
			// on both sides.
			v.report(fault.Invalid, codeStructure, "", "null in "+e.extKey+" needs a value in "+e.name)
		}
		v.path = v.path[:n]
	}
}

func (v *validator) elementObject(val *value) {
	switch {
	case val.kind != kObject:
		v.report(fault.Invalid, codeStructure, "", "a primitive extension must be a JSON object")
	case len(val.obj) == 0:
		v.report(fault.Invalid, codeStructure, "", "empty objects are not allowed")
	default:
		v.object(v.element, val, false)
	}
}

var kindNames = [...]string{kNull: "null", kBool: "boolean", kNumber: "number", kString: "string", kObject: "object", kArray: "array"}

func (v *validator) primitive(e *elem, val *value) {
	p := e.prim
	want := p.json
	if want == "" {
		want = "string" // xhtml
	}
	got := kindNames[val.kind]
	if got != want {
		v.report(fault.Invalid, codeStructure, "", p.name+" must be a JSON "+want+", not "+got)
		return
	}
	var msg string
	switch val.kind {
	case kBool, kNumber:
		msg = checkNumber(p.name, val.str)
	default:
		msg = checkString(p, val.str)
	}
	switch {
	case msg != "":
		v.report(fault.Invalid, codeValue, "", msg)
	case e.enum != nil && !e.enum[val.str]:
		v.report(fault.Invalid, codeInvalid, "", "unknown code "+strconv.Quote(val.str)+" for "+e.name)
	}
}

// checkNumber checks the lexeme of a JSON number (already valid JSON, hence
// a valid decimal) against the integer types' ranges.
func checkNumber(prim, lex string) string {
	if prim == "boolean" {
		return ""
	}
	if prim == "decimal" {
		// The lexeme is kept as sent, but receivers that read decimals as
		// IEEE doubles (most do) must not overflow on it.
		if _, err := strconv.ParseFloat(lex, 64); err != nil {
			return "decimal out of range: " + lex
		}
		return ""
	}
	if strings.ContainsAny(lex, ".eE") {
		return prim + " must be a whole number without fraction or exponent: " + lex
	}
	n, err := strconv.ParseInt(lex, 10, 32)
	switch {
	case err != nil:
		return prim + " out of 32-bit range: " + lex
	case prim == "positiveInt" && n < 1:
		return "positiveInt must be at least 1: " + lex
	case prim == "unsignedInt" && n < 0:
		return "unsignedInt must not be negative: " + lex
	}
	return ""
}

// checkString checks s against the pattern of string-valued primitive p. The
// hand-written cases implement the schema patterns exactly (see
// TestHandCheckedPatterns); FHIR forbids empty strings for all of them.
func checkString(p *primitive, s string) string {
	if s == "" {
		return p.name + " must not be empty"
	}
	ok := true
	switch p.name {
	case "string", "markdown": // ^[ \r\n\t\S]+$
		ok = !strings.ContainsRune(s, '\f')
	case "uri", "url", "canonical": // ^\S*$
		ok = !strings.ContainsAny(s, " \t\n\f\r")
	case "code": // ^[^\s]+(\s[^\s]+)*$
		prevSpace := true
		for i := 0; i < len(s) && ok; i++ {
			sp := isSpace(s[i])
			ok = !(sp && prevSpace)
			prevSpace = sp
		}
		ok = ok && !prevSpace
	case "id":
		ok = isID(s)
	case "base64Binary":
		for i := 0; i < len(s) && ok; i++ {
			c := s[i]
			ok = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '+' || c == '/' || c == '=' || isSpace(c)
		}
	case "xhtml":
		// Narrative is not parsed; it must at least be the div element.
		ok = strings.HasPrefix(s, "<div")
	default:
		ok = p.re.MatchString(s)
		if ok && (p.name == "date" || p.name == "dateTime" || p.name == "instant") {
			if !validCalendarDate(s) {
				return "not a calendar date: " + strconv.Quote(s)
			}
		}
	}
	if !ok {
		return "invalid " + p.name + ": " + strconv.Quote(s)
	}
	return ""
}

// isSpace is RE2's \s.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// isID matches ^[A-Za-z0-9\-\.]{1,64}$.
func isID(s string) bool {
	// "." and ".." fit the pattern, but are dot segments of a URL
	// (RFC 3986): Patient/.. is the type's URL once a client normalises
	// it, so a resource with such an id could not be addressed.
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || isDigit(c) || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validCalendarDate checks the day of a string that already matched a date,
// dateTime or instant pattern (YYYY[-MM[-DD...]]); the patterns allow Feb 31.
func validCalendarDate(s string) bool {
	if len(s) < 10 {
		return true
	}
	year, _ := strconv.Atoi(s[0:4])
	month, _ := strconv.Atoi(s[5:7])
	day, _ := strconv.Atoi(s[8:10])
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month-1]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return day <= days
}

// validReference accepts the Reference.reference forms FHIR defines: a local
// fragment, Type/id[/_history/vid], an absolute http(s) URL, urn:uuid, urn:oid.
func validReference(m *schemaModel, s string) bool {
	switch {
	case s[0] == '#':
		return s == "#" || isID(s[1:])
	case strings.HasPrefix(s, "urn:uuid:"):
		return m.primitives["uuid"].re.MatchString(s)
	case strings.HasPrefix(s, "urn:oid:"):
		return m.primitives["oid"].re.MatchString(s)
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		return err == nil && u.Host != "" && !strings.ContainsAny(s, " \t\n\f\r")
	}
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2:
	case len(parts) == 4 && parts[2] == "_history" && isID(parts[3]):
	default:
		return false
	}
	return m.resources[parts[0]] != nil && isID(parts[1])
}

// referenceTargets checks the resource type a Reference element e refers to,
// in ref.reference and ref.type, against the types the element allows.
// References whose type cannot be told (urn:uuid, urn:oid, other URLs, an
// unknown local id, a logical reference by identifier) are not checked.
func (v *validator) referenceTargets(e *elem, ref *value) {
	if r := ref.get("reference"); r != nil && r.kind == kString && r.str != "" {
		if typ := v.referenceType(r.str); typ != "" && !allowedTarget(e, typ) {
			v.report(fault.Unprocessable, codeValue, "reference", targetMessage(e, "a reference to "+typ))
		}
	}
	if t := ref.get("type"); t != nil && t.kind == kString {
		typ := strings.TrimPrefix(t.str, "http://hl7.org/fhir/StructureDefinition/")
		if v.m.resources[typ] != nil && !allowedTarget(e, typ) {
			v.report(fault.Unprocessable, codeValue, "type", targetMessage(e, "Reference.type "+strconv.Quote(t.str)))
		}
	}
}

func allowedTarget(e *elem, typ string) bool {
	for _, t := range e.targets {
		if t == typ {
			return true
		}
	}
	return false
}

func targetMessage(e *elem, what string) string {
	return what + " is not allowed in " + e.name + ", which refers to " + strings.Join(e.targets, " | ")
}

// referenceType returns the resource type that reference s names, or "": the
// Type of Type/id[/_history/vid], of an http(s) URL whose path ends so, or of
// the contained resource (or container, for "#") a local reference names.
func (v *validator) referenceType(s string) string {
	switch {
	case s[0] == '#':
		return v.localType(s[1:])
	case strings.HasPrefix(s, "http://"):
		s = s[len("http://"):]
	case strings.HasPrefix(s, "https://"):
		s = s[len("https://"):]
	default:
		if strings.HasPrefix(s, "urn:") {
			return ""
		}
		if v.conditionalRefs {
			if typ := v.conditionalType(s); typ != "" {
				return typ
			}
		}
		return v.restType(s, true)
	}
	// The path of an absolute URL, without the host; a query or fragment
	// makes it something else.
	i := strings.IndexByte(s, '/')
	if i < 0 || strings.ContainsAny(s, "?#") {
		return ""
	}
	return v.restType(s[i+1:], false)
}

// restType returns Type of a path that is (whole, or else ends in)
// Type/id[/_history/vid] with a known Type and valid ids, or "".
func (v *validator) restType(p string, whole bool) string {
	// Split off up to four trailing segments.
	var seg [4]string
	n := 0
	for n < 4 {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			seg[n] = p
			n++
			p = ""
			break
		}
		seg[n] = p[i+1:]
		n++
		p = p[:i]
	}
	// seg holds the segments last first.
	switch {
	case n >= 4 && seg[1] == "_history" && (!whole || p == "" && n == 4):
		if !isID(seg[0]) || !isID(seg[2]) || v.m.resources[seg[3]] == nil {
			return ""
		}
		return seg[3]
	case n >= 2 && (!whole || n == 2):
		if !isID(seg[0]) || v.m.resources[seg[1]] == nil {
			return ""
		}
		return seg[1]
	}
	return ""
}

// localType returns the resourceType of the contained resource with the
// given id, or of the container itself for the empty id.
func (v *validator) localType(id string) string {
	c := value{kind: kObject, obj: v.container}
	if id == "" {
		return stringMember(&c, "resourceType")
	}
	list := c.get("contained")
	if list == nil || list.kind != kArray {
		return ""
	}
	for i := range list.arr {
		if stringMember(&list.arr[i], "id") == id {
			return stringMember(&list.arr[i], "resourceType")
		}
	}
	return ""
}

func stringMember(o *value, key string) string {
	if o.kind != kObject {
		return ""
	}
	if m := o.get(key); m != nil && m.kind == kString {
		return m.str
	}
	return ""
}
