package fhir

import (
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// jsonPatch is an RFC 6902 JSON Patch document. Errors name the operation
// by a JSON Pointer into the patch document (/2/path): the document has no
// FHIRPath of its own.
type jsonPatch []jpOp

type jpOp struct {
	op         string
	at         string   // "/<index>", the operation in the document
	path, from []string // decoded pointer tokens
	pathText   string   // as sent, for messages
	fromText   string
	value      value
}

// ParseJSONPatch reads a JSON Patch document (application/json-patch+json):
// an array of add, remove, replace, move, copy and test operations. A
// malformed document is Invalid, naming the operation's member.
func ParseJSONPatch(body []byte) (Patch, error) {
	doc, err := decodeJSON(body)
	if err != nil {
		return nil, fault.New(fault.Invalid, "", "%v", err)
	}
	if doc.kind != kArray {
		return nil, fault.New(fault.Invalid, "", "a JSON Patch document is an array of operations")
	}
	p := make(jsonPatch, 0, len(doc.arr))
	for i := range doc.arr {
		o := &doc.arr[i]
		op := jpOp{at: "/" + strconv.Itoa(i)}
		if o.kind != kObject {
			return nil, fault.New(fault.Invalid, op.at, "an operation is an object")
		}
		kind := o.get("op")
		if kind == nil || kind.kind != kString {
			return nil, fault.New(fault.Invalid, op.at+"/op", "the operation has no op")
		}
		op.op = kind.str
		switch op.op {
		case "add", "remove", "replace", "move", "copy", "test":
		default:
			return nil, fault.New(fault.Invalid, op.at+"/op", "unknown op %q (add, remove, replace, move, copy or test)", op.op)
		}
		if op.path, op.pathText, err = pointerMember(o, op.at, "path"); err != nil {
			return nil, err
		}
		switch op.op {
		case "add", "replace", "test":
			v := o.get("value")
			if v == nil {
				return nil, fault.New(fault.Invalid, op.at+"/value", "%s needs a value", op.op)
			}
			op.value = *v
		case "move", "copy":
			if op.from, op.fromText, err = pointerMember(o, op.at, "from"); err != nil {
				return nil, err
			}
		}
		// Members an operation does not define are ignored, as RFC 6902 says.
		p = append(p, op)
	}
	return p, nil
}

// pointerMember reads member key of an operation as a JSON Pointer.
func pointerMember(o *value, at, key string) ([]string, string, error) {
	m := o.get(key)
	if m == nil || m.kind != kString {
		return nil, "", fault.New(fault.Invalid, at+"/"+key, "the operation has no %s", key)
	}
	toks, ok := parsePointer(m.str)
	if !ok {
		return nil, "", fault.New(fault.Invalid, at+"/"+key, "%q is not a JSON Pointer (RFC 6901)", m.str)
	}
	return toks, m.str, nil
}

// parsePointer splits an RFC 6901 pointer into unescaped tokens ("" is the
// whole document).
func parsePointer(s string) ([]string, bool) {
	if s == "" {
		return nil, true
	}
	if s[0] != '/' {
		return nil, false
	}
	toks := strings.Split(s[1:], "/")
	for i, t := range toks {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || t[j+1] != '0' && t[j+1] != '1') {
				return nil, false
			}
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, true
}

func (p jsonPatch) apply(root *value, _ string) error {
	for i := range p {
		if err := p[i].apply(root); err != nil {
			return err
		}
	}
	return nil
}

func (op *jpOp) apply(root *value) error {
	switch op.op {
	case "add":
		return op.add(root, op.path, op.value.clone())
	case "remove":
		_, err := op.remove(root, op.path, "path")
		return err
	case "replace":
		t := resolvePointer(root, op.path)
		if t == nil {
			return op.missing("path")
		}
		*t = op.value.clone()
		return nil
	case "move":
		if len(op.path) > len(op.from) && equalTokens(op.path[:len(op.from)], op.from) {
			return fault.New(fault.Unprocessable, op.at+"/path", "cannot move %q into itself", op.fromText)
		}
		v, err := op.remove(root, op.from, "from")
		if err != nil {
			return err
		}
		return op.add(root, op.path, v)
	case "copy":
		f := resolvePointer(root, op.from)
		if f == nil {
			return op.missing("from")
		}
		return op.add(root, op.path, f.clone())
	default: // test
		t := resolvePointer(root, op.path)
		if t == nil {
			return op.missing("path")
		}
		if !jsonEqual(t, &op.value) {
			return fault.New(fault.Unprocessable, op.at, "test failed: the value at %q is not the one given", op.pathText).WithCode("processing")
		}
		return nil
	}
}

func (op *jpOp) missing(member string) error {
	text := op.pathText
	if member == "from" {
		text = op.fromText
	}
	return fault.New(fault.Unprocessable, op.at+"/"+member, "%s: the resource has nothing at %q", op.op, text).WithCode("processing")
}

// add puts v at toks: the whole document, a member of an object (replaced
// in place when present, else appended), or an array position (- appends).
func (op *jpOp) add(root *value, toks []string, v value) error {
	if len(toks) == 0 {
		*root = v
		return nil
	}
	parent := resolvePointer(root, toks[:len(toks)-1])
	last := toks[len(toks)-1]
	switch {
	case parent == nil:
		return op.missing("path")
	case parent.kind == kObject:
		if t := parent.get(last); t != nil {
			*t = v
		} else {
			parent.obj = append(parent.obj, member{key: last, val: v})
		}
		return nil
	case parent.kind == kArray:
		i := len(parent.arr)
		if last != "-" {
			var ok bool
			if i, ok = arrayIndex(last, len(parent.arr)+1); !ok {
				return op.missing("path")
			}
		}
		parent.arr = insertAt(parent.arr, i, v)
		return nil
	}
	return op.missing("path")
}

// remove takes the value at toks out of the document and returns it.
func (op *jpOp) remove(root *value, toks []string, member string) (value, error) {
	if len(toks) == 0 {
		return value{}, fault.New(fault.Unprocessable, op.at+"/"+member, "%s cannot remove the whole resource", op.op)
	}
	parent := resolvePointer(root, toks[:len(toks)-1])
	last := toks[len(toks)-1]
	if parent != nil && parent.kind == kObject {
		if i := indexOf(parent, last); i >= 0 {
			v := parent.obj[i].val
			parent.obj = append(parent.obj[:i], parent.obj[i+1:]...)
			return v, nil
		}
	}
	if parent != nil && parent.kind == kArray {
		if i, ok := arrayIndex(last, len(parent.arr)); ok {
			v := parent.arr[i]
			parent.arr = append(parent.arr[:i], parent.arr[i+1:]...)
			return v, nil
		}
	}
	return value{}, op.missing(member)
}

// resolvePointer returns the value toks point to, or nil.
func resolvePointer(root *value, toks []string) *value {
	v := root
	for _, t := range toks {
		switch v.kind {
		case kObject:
			v = v.get(t)
		case kArray:
			i, ok := arrayIndex(t, len(v.arr))
			if !ok {
				return nil
			}
			v = &v.arr[i]
		default:
			return nil
		}
		if v == nil {
			return nil
		}
	}
	return v
}

// arrayIndex reads a pointer token as an index below n: decimal digits
// without a leading zero, as RFC 6901 requires.
func arrayIndex(t string, n int) (int, bool) {
	if t == "" || len(t) > 1 && t[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(t); i++ {
		if !isDigit(t[i]) {
			return 0, false
		}
	}
	i, err := strconv.Atoi(t)
	return i, err == nil && i < n
}

func equalTokens(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// jsonEqual is RFC 6902 equality: numbers by value (1.50 equals 1.5),
// objects whatever their member order.
func jsonEqual(a, b *value) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case kNumber:
		return numberKey(a.str) == numberKey(b.str)
	case kArray:
		if len(a.arr) != len(b.arr) {
			return false
		}
		for i := range a.arr {
			if !jsonEqual(&a.arr[i], &b.arr[i]) {
				return false
			}
		}
		return true
	case kObject:
		if len(a.obj) != len(b.obj) {
			return false
		}
		for i := range a.obj {
			o := b.get(a.obj[i].key)
			if o == nil || !jsonEqual(&a.obj[i].val, o) {
				return false
			}
		}
		return true
	}
	return a.str == b.str
}

// numberKey is a canonical form of a JSON number lexeme: sign, significant
// digits and the exponent of the last one, so that 1.50, 1.5 and 15e-1 have
// the same key. (Not big.Rat: 1e999999999 would allocate the power.)
func numberKey(lex string) string {
	neg := strings.HasPrefix(lex, "-")
	lex = strings.TrimPrefix(lex, "-")
	mant, expText, _ := strings.Cut(strings.ToLower(lex), "e")
	exp, err := strconv.Atoi(expText)
	if expText != "" && err != nil {
		return lex // an exponent beyond int: compare as written
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	if trimmed == "" {
		return "0"
	}
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + strconv.Itoa(exp)
}
