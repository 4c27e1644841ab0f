package fhir

// A FHIRPath subset: what the R4 search parameter expressions use. Paths
// (A.b.c, arrays flatten, choice elements by their base name: value finds
// valueQuantity, valueString, ...), the type operators is/as and the
// functions as(), ofType(), is(), indexers [n], unions |, = and !=, and/or,
// string, boolean and integer literals, %resource, $this, and the functions
// where(), exists(), empty(), not(), first(), last(), resolve() and
// extension(url). Anything else is a compile error, which makes the search
// parameter unsupported.

import (
	"fmt"
	"strconv"
	"strings"
)

type fpOp uint8

const (
	fpName   fpOp = iota // child element (or type name at the start of a path)
	fpFunc               // function call
	fpUnion              // left | right
	fpIs                 // left is name
	fpAs                 // left as name
	fpEq                 // left = right
	fpNe                 // left != right
	fpAnd                // left and right
	fpOr                 // left or right
	fpIndex              // left[right]
	fpString             // literal
	fpBool               // literal
	fpInt                // literal
	fpVar                // %resource, %rootResource, %context
	fpThis               // $this
)

// fpNode is a node of a compiled expression. For fpName and fpFunc, left is
// the input (nil: the evaluation context).
type fpNode struct {
	op          fpOp
	name        string // element, function, type or variable name; literal text
	left, right *fpNode
	args        []*fpNode
	n           int // fpInt value
}

// ---- lexer ----

type fpTok struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'v' %var, '$' $this, 'o' operator/punctuation, 0 end
	text string
}

func fpLex(src string) ([]fpTok, error) {
	var toks []fpTok
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, fpTok{'i', src[i:j]})
			i = j
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated `")
			}
			toks = append(toks, fpTok{'i', src[i+1 : i+1+j]})
			i += j + 2
		case c == '%' || c == '$':
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("bad variable at %d", i)
			}
			k := byte('v')
			if c == '$' {
				k = '$'
			}
			toks = append(toks, fpTok{k, src[i+1 : j]})
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, fpTok{'s', b.String()})
			i = j + 1
		case isDigit(c):
			j := i + 1
			for j < len(src) && isDigit(src[j]) {
				j++
			}
			if j < len(src) && src[j] == '.' && j+1 < len(src) && isDigit(src[j+1]) {
				return nil, fmt.Errorf("decimal literals are not supported")
			}
			toks = append(toks, fpTok{'n', src[i:j]})
			i = j
		case c == '!' && i+1 < len(src) && src[i+1] == '=':
			toks = append(toks, fpTok{'o', "!="})
			i += 2
		case strings.IndexByte(".()[],|=", c) >= 0:
			toks = append(toks, fpTok{'o', src[i : i+1]})
			i++
		default:
			return nil, fmt.Errorf("unsupported character %q", c)
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// ---- parser ----

type fpParser struct {
	toks []fpTok
	pos  int
}

func (p *fpParser) peek() fpTok {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return fpTok{}
}

func (p *fpParser) next() fpTok { t := p.peek(); p.pos++; return t }

func (p *fpParser) isOp(s string) bool { t := p.peek(); return t.kind == 'o' && t.text == s }
func (p *fpParser) isWord(s string) bool {
	t := p.peek()
	return t.kind == 'i' && t.text == s
}

func (p *fpParser) expect(s string) error {
	if !p.isOp(s) {
		return fmt.Errorf("expected %q at token %d", s, p.pos)
	}
	p.pos++
	return nil
}

// compileFHIRPath parses an expression of the subset.
func compileFHIRPath(src string) (*fpNode, error) {
	toks, err := fpLex(src)
	if err != nil {
		return nil, err
	}
	p := &fpParser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.peek().text)
	}
	return n, nil
}

// Precedence, loosest first: or, and, = !=, |, is as, invocation.
func (p *fpParser) or() (*fpNode, error) {
	l, err := p.and()
	for err == nil && p.isWord("or") {
		p.pos++
		var r *fpNode
		if r, err = p.and(); err == nil {
			l = &fpNode{op: fpOr, left: l, right: r}
		}
	}
	return l, err
}

func (p *fpParser) and() (*fpNode, error) {
	l, err := p.equality()
	for err == nil && p.isWord("and") {
		p.pos++
		var r *fpNode
		if r, err = p.equality(); err == nil {
			l = &fpNode{op: fpAnd, left: l, right: r}
		}
	}
	return l, err
}

func (p *fpParser) equality() (*fpNode, error) {
	l, err := p.union()
	for err == nil && (p.isOp("=") || p.isOp("!=")) {
		op := fpEq
		if p.next().text == "!=" {
			op = fpNe
		}
		var r *fpNode
		if r, err = p.union(); err == nil {
			l = &fpNode{op: op, left: l, right: r}
		}
	}
	return l, err
}

func (p *fpParser) union() (*fpNode, error) {
	l, err := p.typeOp()
	for err == nil && p.isOp("|") {
		p.pos++
		var r *fpNode
		if r, err = p.typeOp(); err == nil {
			l = &fpNode{op: fpUnion, left: l, right: r}
		}
	}
	return l, err
}

func (p *fpParser) typeOp() (*fpNode, error) {
	l, err := p.postfix()
	for err == nil && (p.isWord("is") || p.isWord("as")) {
		op := fpIs
		if p.next().text == "as" {
			op = fpAs
		}
		var t string
		if t, err = p.typeSpec(); err == nil {
			l = &fpNode{op: op, left: l, name: t}
		}
	}
	return l, err
}

// typeSpec reads Name or Namespace.Name and returns the name (FHIR.Quantity
// is Quantity; System.String is String).
func (p *fpParser) typeSpec() (string, error) {
	t := p.next()
	if t.kind != 'i' {
		return "", fmt.Errorf("expected a type name")
	}
	if (t.text == "FHIR" || t.text == "System") && p.isOp(".") {
		p.pos++
		if t = p.next(); t.kind != 'i' {
			return "", fmt.Errorf("expected a type name")
		}
	}
	return t.text, nil
}

func (p *fpParser) postfix() (*fpNode, error) {
	n, err := p.term()
	for err == nil {
		switch {
		case p.isOp("."):
			p.pos++
			n, err = p.invocation(n)
		case p.isOp("["):
			p.pos++
			var idx *fpNode
			if idx, err = p.or(); err == nil {
				if idx.op != fpInt {
					return nil, fmt.Errorf("only integer literal indexes are supported")
				}
				n = &fpNode{op: fpIndex, left: n, n: idx.n}
				err = p.expect("]")
			}
		default:
			return n, nil
		}
	}
	return n, err
}

func (p *fpParser) term() (*fpNode, error) {
	t := p.peek()
	switch t.kind {
	case 's':
		p.pos++
		return &fpNode{op: fpString, name: t.text}, nil
	case 'n':
		p.pos++
		i, err := strconv.Atoi(t.text)
		return &fpNode{op: fpInt, name: t.text, n: i}, err
	case 'v':
		p.pos++
		switch t.text {
		case "resource", "rootResource", "context":
			return &fpNode{op: fpVar, name: t.text}, nil
		}
		return nil, fmt.Errorf("unsupported variable %%%s", t.text)
	case '$':
		p.pos++
		if t.text != "this" {
			return nil, fmt.Errorf("unsupported variable $%s", t.text)
		}
		return &fpNode{op: fpThis}, nil
	case 'i':
		if t.text == "true" || t.text == "false" {
			p.pos++
			return &fpNode{op: fpBool, name: t.text}, nil
		}
		return p.invocation(nil)
	case 'o':
		if t.text == "(" {
			p.pos++
			n, err := p.or()
			if err != nil {
				return nil, err
			}
			return n, p.expect(")")
		}
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}

// invocation reads a name or a function call applied to in.
func (p *fpParser) invocation(in *fpNode) (*fpNode, error) {
	t := p.next()
	if t.kind != 'i' {
		return nil, fmt.Errorf("expected a name after '.'")
	}
	if !p.isOp("(") {
		return &fpNode{op: fpName, name: t.text, left: in}, nil
	}
	p.pos++
	n := &fpNode{op: fpFunc, name: t.text, left: in}
	switch t.text {
	case "as", "ofType", "is":
		ts, err := p.typeSpec()
		if err != nil {
			return nil, err
		}
		n.args = []*fpNode{{op: fpName, name: ts}}
		return n, p.expect(")")
	}
	for !p.isOp(")") {
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, a)
		if !p.isOp(",") {
			break
		}
		p.pos++
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	arity := map[string][2]int{
		"where": {1, 1}, "exists": {0, 1}, "empty": {0, 0}, "not": {0, 0},
		"first": {0, 0}, "last": {0, 0}, "resolve": {0, 0}, "extension": {1, 1},
	}
	a, ok := arity[t.text]
	if !ok {
		return nil, fmt.Errorf("unsupported function %s()", t.text)
	}
	if len(n.args) < a[0] || len(n.args) > a[1] {
		return nil, fmt.Errorf("%s() takes %d to %d arguments", t.text, a[0], a[1])
	}
	if t.text == "extension" && n.args[0].op != fpString {
		return nil, fmt.Errorf("extension() needs a string literal")
	}
	return n, nil
}

// ---- static check ----

// anyType stands for a value of unknown type (a resolved reference, a
// contained resource): any element name is accepted.
const anyType = "*"

// fpCheck computes the types an expression can produce on input of the
// given types and fails on a name that no input type has, so that a wrong
// expression is reported instead of silently finding nothing.
func fpCheck(m *schemaModel, n *fpNode, in []string, this []string, root string) ([]string, error) {
	input := func() ([]string, error) {
		if n.left == nil {
			return this, nil
		}
		return fpCheck(m, n.left, in, this, root)
	}
	switch n.op {
	case fpString:
		return []string{"string"}, nil
	case fpBool:
		return []string{"boolean"}, nil
	case fpInt:
		return []string{"integer"}, nil
	case fpVar:
		return []string{root}, nil
	case fpThis:
		return this, nil
	case fpEq, fpNe, fpAnd, fpOr:
		if _, err := fpCheck(m, n.left, in, this, root); err != nil {
			return nil, err
		}
		if _, err := fpCheck(m, n.right, in, this, root); err != nil {
			return nil, err
		}
		return []string{"boolean"}, nil
	case fpUnion:
		l, err := fpCheck(m, n.left, in, this, root)
		if err != nil {
			return nil, err
		}
		r, err := fpCheck(m, n.right, in, this, root)
		return appendUnique(l, r...), err
	case fpIndex:
		return fpCheck(m, n.left, in, this, root)
	case fpIs:
		_, err := fpCheck(m, n.left, in, this, root)
		return []string{"boolean"}, err
	case fpAs:
		ts, err := fpCheck(m, n.left, in, this, root)
		if err != nil {
			return nil, err
		}
		return filterTypes(m, ts, n.name)
	case fpName:
		ts, err := input()
		if err != nil {
			return nil, err
		}
		var out []string
		for _, t := range ts {
			if n.left == nil && isUpper(n.name) && typeIs(m, t, n.name) {
				out = appendUnique(out, t)
				continue
			}
			out = appendUnique(out, childTypes(m, t, n.name)...)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no element %s on %s", n.name, strings.Join(ts, ","))
		}
		return out, nil
	case fpFunc:
		ts, err := input()
		if err != nil {
			return nil, err
		}
		switch n.name {
		case "where":
			for _, t := range ts {
				if _, err := fpCheck(m, n.args[0], []string{t}, []string{t}, root); err != nil {
					return nil, err
				}
			}
			return ts, nil
		case "exists":
			if len(n.args) == 1 {
				for _, t := range ts {
					if _, err := fpCheck(m, n.args[0], []string{t}, []string{t}, root); err != nil {
						return nil, err
					}
				}
			}
			return []string{"boolean"}, nil
		case "empty", "not", "is":
			return []string{"boolean"}, nil
		case "first", "last":
			return ts, nil
		case "as", "ofType":
			return filterTypes(m, ts, n.args[0].name)
		case "resolve":
			return []string{anyType}, nil
		case "extension":
			return []string{"Extension"}, nil
		}
	}
	return nil, fmt.Errorf("cannot check %v", n.op)
}

func filterTypes(m *schemaModel, ts []string, want string) ([]string, error) {
	var out []string
	for _, t := range ts {
		if typeIs(m, t, want) {
			out = append(out, t)
		} else if t == anyType {
			out = append(out, want)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is never a %s", strings.Join(ts, ","), want)
	}
	return out, nil
}

// childTypes are the types element name of type t can have.
func childTypes(m *schemaModel, t, name string) []string {
	if t == anyType {
		return []string{anyType}
	}
	td := m.types[t]
	if td == nil {
		return nil
	}
	if e := td.elems[name]; e != nil {
		if e.typ == resourceList {
			return []string{anyType}
		}
		return []string{e.typ}
	}
	var out []string
	for _, e := range choiceElems(td, name) {
		out = appendUnique(out, e.typ)
	}
	return out
}

func appendUnique(s []string, add ...string) []string {
outer:
	for _, a := range add {
		for _, x := range s {
			if x == a {
				continue outer
			}
		}
		s = append(s, a)
	}
	return s
}

func isUpper(s string) bool { return s != "" && s[0] >= 'A' && s[0] <= 'Z' }

// subtypes of the FHIR types that FHIRPath type tests accept for a base.
var fpSubtypes = map[string][]string{
	"Quantity": {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"},
	"string":   {"code", "id", "markdown"},
	"uri":      {"url", "canonical", "oid", "uuid"},
	"integer":  {"positiveInt", "unsignedInt"},
}

// typeIs reports whether a value of FHIR type t is a want (FHIRPath is):
// the same type (System types match their FHIR primitive, DateTime is
// dateTime), a specialisation, or any resource for Resource and
// DomainResource.
func typeIs(m *schemaModel, t, want string) bool {
	if t == want || t == anyType && want == anyType {
		return true
	}
	if t == "" || t == anyType {
		return false
	}
	if strings.EqualFold(t, want) && m.primitives[t] != nil {
		return true
	}
	if want == "Resource" || want == "DomainResource" {
		return m.resources[t] != nil
	}
	for w, subs := range fpSubtypes {
		if strings.EqualFold(w, want) {
			for _, s := range subs {
				if s == t {
					return true
				}
			}
		}
	}
	return false
}

// ---- evaluation ----

// fpItem is one value of a collection: a node of the resource tree with its
// FHIR type. A resolved reference that is not contained has typ set and v
// nil.
type fpItem struct {
	v   *value
	typ string
}

type fpEnv struct {
	m    *schemaModel
	root fpItem
}

var (
	fpTrue  = &value{kind: kBool, str: "true"}
	fpFalse = &value{kind: kBool, str: "false"}
)

func fpBoolean(b bool) []fpItem {
	if b {
		return []fpItem{{fpTrue, "boolean"}}
	}
	return []fpItem{{fpFalse, "boolean"}}
}

// truth is the FHIRPath boolean of a collection: nil when empty, else
// false only for a single false.
func truth(c []fpItem) *bool {
	if len(c) == 0 {
		return nil
	}
	b := !(len(c) == 1 && c[0].v != nil && c[0].v.kind == kBool && c[0].v.str == "false")
	return &b
}

func (env *fpEnv) eval(n *fpNode, this []fpItem) []fpItem {
	input := func() []fpItem {
		if n.left == nil {
			return this
		}
		return env.eval(n.left, this)
	}
	switch n.op {
	case fpString:
		return []fpItem{{&value{kind: kString, str: n.name}, "string"}}
	case fpBool:
		return fpBoolean(n.name == "true")
	case fpInt:
		return []fpItem{{&value{kind: kNumber, str: n.name}, "integer"}}
	case fpVar:
		return []fpItem{env.root}
	case fpThis:
		return this
	case fpUnion:
		l := env.eval(n.left, this)
		r := env.eval(n.right, this)
		out := make([]fpItem, 0, len(l)+len(r))
		for _, c := range [][]fpItem{l, r} {
		next:
			for _, it := range c {
				for _, o := range out {
					if o.v == it.v && o.v != nil && o.typ == it.typ {
						continue next
					}
				}
				out = append(out, it)
			}
		}
		return out
	case fpIndex:
		in := env.eval(n.left, this)
		if n.n < 0 || n.n >= len(in) {
			return nil
		}
		return in[n.n : n.n+1]
	case fpIs:
		in := env.eval(n.left, this)
		if len(in) != 1 {
			return nil
		}
		return fpBoolean(typeIs(env.m, in[0].typ, n.name))
	case fpAs:
		return env.ofType(env.eval(n.left, this), n.name)
	case fpEq, fpNe:
		l, r := env.eval(n.left, this), env.eval(n.right, this)
		if len(l) != 1 || len(r) != 1 || l[0].v == nil || r[0].v == nil {
			return nil
		}
		eq := primEqual(l[0].v, r[0].v)
		return fpBoolean(eq == (n.op == fpEq))
	case fpAnd, fpOr:
		l, r := truth(env.eval(n.left, this)), truth(env.eval(n.right, this))
		dominant := n.op == fpOr // or: true wins; and: false wins
		if l != nil && *l == dominant || r != nil && *r == dominant {
			return fpBoolean(dominant)
		}
		if l == nil || r == nil {
			return nil
		}
		return fpBoolean(!dominant)
	case fpName:
		in := input()
		var out []fpItem
		for _, it := range in {
			if n.left == nil && isUpper(n.name) && typeIs(env.m, it.typ, n.name) {
				out = append(out, it)
				continue
			}
			out = env.children(out, it, n.name)
		}
		return out
	case fpFunc:
		return env.call(n, input())
	}
	return nil
}

func (env *fpEnv) call(n *fpNode, in []fpItem) []fpItem {
	switch n.name {
	case "where":
		var out []fpItem
		for _, it := range in {
			if b := truth(env.eval(n.args[0], []fpItem{it})); b != nil && *b {
				out = append(out, it)
			}
		}
		return out
	case "exists":
		if len(n.args) == 0 {
			return fpBoolean(len(in) > 0)
		}
		for _, it := range in {
			if b := truth(env.eval(n.args[0], []fpItem{it})); b != nil && *b {
				return fpBoolean(true)
			}
		}
		return fpBoolean(false)
	case "empty":
		return fpBoolean(len(in) == 0)
	case "not":
		if b := truth(in); b != nil {
			return fpBoolean(!*b)
		}
		return nil
	case "first":
		if len(in) > 0 {
			return in[:1]
		}
		return nil
	case "last":
		if len(in) > 0 {
			return in[len(in)-1:]
		}
		return nil
	case "as", "ofType":
		return env.ofType(in, n.args[0].name)
	case "is":
		if len(in) != 1 {
			return nil
		}
		return fpBoolean(typeIs(env.m, in[0].typ, n.args[0].name))
	case "resolve":
		var out []fpItem
		for _, it := range in {
			if r, ok := env.resolve(it); ok {
				out = append(out, r)
			}
		}
		return out
	case "extension":
		var out []fpItem
		for _, it := range in {
			for _, ext := range env.children(nil, it, "extension") {
				if u := ext.v.get("url"); u != nil && u.str == n.args[0].name {
					out = append(out, ext)
				}
			}
		}
		return out
	}
	return nil
}

func (env *fpEnv) ofType(in []fpItem, t string) []fpItem {
	var out []fpItem
	for _, it := range in {
		if typeIs(env.m, it.typ, t) {
			out = append(out, it)
		}
	}
	return out
}

// primEqual compares two primitives: same JSON kind and same text.
func primEqual(a, b *value) bool {
	return a.kind == b.kind && a.str == b.str
}

// children appends to out the values of element name of it: the element,
// or the present member of the choice group name (value: valueQuantity).
// Arrays flatten; nulls (array gaps of primitives) are skipped.
func (env *fpEnv) children(out []fpItem, it fpItem, name string) []fpItem {
	if it.v == nil || it.v.kind != kObject {
		return out
	}
	typ := it.typ
	if typ == anyType || typ == "" {
		typ = resourceTypeOf(it.v)
	}
	td := env.m.types[typ]
	if td == nil {
		return out
	}
	if e := td.elems[name]; e != nil {
		return appendChild(out, e, it.v.get(name))
	}
	for _, e := range choiceElems(td, name) {
		if v := it.v.get(e.name); v != nil {
			out = appendChild(out, e, v)
		}
	}
	return out
}

func appendChild(out []fpItem, e *elem, v *value) []fpItem {
	if v == nil {
		return out
	}
	add := func(v *value) {
		switch {
		case v.kind == kNull:
		case e.typ == resourceList:
			out = append(out, fpItem{v, resourceTypeOf(v)})
		default:
			out = append(out, fpItem{v, e.typ})
		}
	}
	if v.kind == kArray {
		for i := range v.arr {
			add(&v.arr[i])
		}
	} else {
		add(v)
	}
	return out
}

func resourceTypeOf(v *value) string {
	if v == nil {
		return ""
	}
	if rt := v.get("resourceType"); rt != nil {
		return rt.str
	}
	return ""
}

// resolve gives the target of a Reference (or of a canonical/uri): the
// contained resource for #id, else a value-less item typed by the
// reference's Type/id (relative or absolute URL) or by Reference.type.
func (env *fpEnv) resolve(it fpItem) (fpItem, bool) {
	var ref string
	switch {
	case it.v == nil:
		return fpItem{}, false
	case it.typ == "Reference":
		if r := it.v.get("reference"); r != nil {
			ref = r.str
		}
	case it.v.kind == kString:
		ref = it.v.str
	}
	if strings.HasPrefix(ref, "#") {
		if cs := env.root.v.get("contained"); cs != nil {
			for i := range cs.arr {
				if id := cs.arr[i].get("id"); id != nil && id.str == ref[1:] {
					return fpItem{&cs.arr[i], resourceTypeOf(&cs.arr[i])}, true
				}
			}
		}
		return fpItem{}, false
	}
	if t, _ := splitReference(env.m, ref); t != "" {
		return fpItem{nil, t}, true
	}
	if it.typ == "Reference" {
		if t := it.v.get("type"); t != nil && env.m.resources[t.str] != nil {
			return fpItem{nil, t.str}, true
		}
	}
	return fpItem{}, false
}

// splitReference returns type and id of a literal reference Type/id or
// [base]/Type/id, with an optional /_history/vid; "" when it is none
// (urn:uuid:, #contained, a canonical that is not a resource URL).
func splitReference(m *schemaModel, ref string) (typ, id string) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.IndexByte(ref, '|'); i >= 0 { // canonical version
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", ""
	}
	id = ref[j+1:]
	rest := ref[:j]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if m.resources[typ] == nil || !isID(id) {
		return "", ""
	}
	if typ != rest && !strings.Contains(ref, "://") {
		return "", "" // a relative reference is exactly Type/id
	}
	return typ, id
}

// choiceElems are the elements of choice group name of td, in a stable
// order.
func choiceElems(td *typeDef, name string) []*elem {
	return modelChoices().of(td, name)
}
