package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

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
	FullURL string
	Request *BundleRequest
	// Resource is the entry's resource, validated and held as compact
	// JSON; nil when absent or invalid.
	Resource *Compact
	// Err holds the problems of the entry's resource, with expressions
	// such as Bundle.entry[3].resource.status.
	Err error
}

// BundleRequest is Bundle.entry.request.
type BundleRequest struct {
	Method, URL                                        string
	IfNoneMatch, IfModifiedSince, IfMatch, IfNoneExist string
}

// Compact is a validated resource held as its compact JSON, a fraction of
// the size of its tree: the form of many resources waiting their turn,
// such as a bundle's entries. Resource parses it back when it is needed.
type Compact struct {
	typ string
	raw []byte
}

// Compact serialises r compactly; the tree can then be let go.
func (r *Resource) Compact() *Compact { return &Compact{typ: r.typ, raw: r.Bytes()} }

// CompactOf holds raw, the compact JSON of a resource of type typ that was
// validated before (a stored version), without checking it again.
func CompactOf(typ string, raw []byte) *Compact { return &Compact{typ: typ, raw: raw} }

// Type returns the resourceType.
func (c *Compact) Type() string { return c.typ }

// Bytes returns the compact JSON (not a copy: do not change it).
func (c *Compact) Bytes() []byte { return c.raw }

// Resource parses the compact JSON into a tree. It was validated when the
// Compact was made, so it is only decoded.
func (c *Compact) Resource() (*Resource, error) {
	root, err := decodeJSON(c.raw)
	if err != nil {
		return nil, fault.Wrap(err, "decoding a validated resource")
	}
	return &Resource{root: root, typ: c.typ, size: len(c.raw)}, nil
}

// ParseBundle is DecodeBundle of a body in memory, without an entry limit.
func ParseBundle(body []byte, conditionalRefs bool) (*Bundle, error) {
	return DecodeBundle(bytes.NewReader(body), BundleOptions{ConditionalReferences: conditionalRefs})
}

// BundleOptions are the options of DecodeBundle.
type BundleOptions struct {
	// ConditionalReferences allows references such as
	// Patient?identifier=..., to be resolved by a transaction.
	ConditionalReferences bool
	// MaxEntries bounds Bundle.entry (0: no bound): one more is a 413
	// naming Bundle.entry, before it is decoded.
	MaxEntries int
}

// DecodeBundle reads a Bundle from r as ParseResource would check it,
// except that each entry's resource is validated separately (its problems
// land in the entry's Err), with the options o.
//
// The body is never held whole: the entries are decoded one at a time as
// they are read, each resource is validated and kept as compact JSON, and
// the envelope (everything but the entries' resources, small) is validated
// once the body is read, so that its members may come in any order. An
// error reading r is returned wrapped (errors.As finds it); JSON and FHIR
// problems are *fault.Error.
func DecodeBundle(r io.Reader, o BundleOptions) (*Bundle, error) {
	s := bundleStream{dec: json.NewDecoder(r), conditionalRefs: o.ConditionalReferences, maxEntries: o.MaxEntries}
	// Numbers among the tokens stay text: as float64 one such as 1e1000
	// would fail as a Go conversion instead of being a JSON value.
	s.dec.UseNumber()
	root, err := s.envelope()
	if err != nil {
		return nil, err
	}
	if stringMember(&root, "resourceType") != "Bundle" {
		return nil, notBundle()
	}
	v := newValidator(model())
	v.resource(&root, false)
	if err := v.err(); err != nil {
		return nil, err
	}
	b := &Bundle{Type: stringMember(&root, "type"), Entries: s.entries}
	list := root.get("entry")
	for i := range b.Entries {
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
	}
	return b, nil
}

func notBundle() error {
	return fault.New(fault.Invalid, "resourceType", "the body must be a Bundle")
}

// bundleStream walks a Bundle's JSON with encoding/json tokens for the
// top-level object and the entry array, and decodes every value below
// them with the package's own decoder (exact lexemes, strict strings,
// duplicate members), reporting offsets in the whole body.
type bundleStream struct {
	dec             *json.Decoder
	raw             json.RawMessage // reused for each value
	conditionalRefs bool
	maxEntries      int
	entries         []BundleEntry // one per entry element, resources filled in
}

// envelope reads the whole body and returns the top-level object with the
// entries' resources taken out (and into s.entries).
func (s *bundleStream) envelope() (value, error) {
	tok, err := s.dec.Token()
	if err != nil {
		return value{}, s.fail(err)
	}
	if tok != json.Delim('{') {
		return value{}, notBundle()
	}
	root := value{kind: kObject}
	for s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return value{}, s.fail(err)
		}
		key, _ := tok.(string) // Token gives a member name or an error here
		if root.get(key) != nil {
			return value{}, s.syntax(fmt.Sprintf("duplicate member %q", key))
		}
		var val value
		if key == "entry" {
			val, err = s.entryArray()
		} else {
			val, err = s.value(1)
		}
		if err != nil {
			return value{}, err
		}
		root.obj = append(root.obj, member{key: key, val: val})
	}
	if _, err := s.dec.Token(); err != nil { // }
		return value{}, s.fail(err)
	}
	if _, err := s.dec.Token(); err != io.EOF {
		if err == nil {
			return value{}, s.syntax("unexpected data after the JSON value")
		}
		return value{}, s.fail(err)
	}
	return root, nil
}

// value decodes the next value, found at nesting depth depth.
func (s *bundleStream) value(depth int) (value, error) {
	if err := s.dec.Decode(&s.raw); err != nil {
		return value{}, s.fail(err)
	}
	v, err := decodeNested(s.raw, int(s.dec.InputOffset())-len(s.raw), depth)
	if err != nil {
		return value{}, fault.New(fault.Invalid, "", "%v", err)
	}
	return v, nil
}

// entryArray reads Bundle.entry element by element: each resource is
// validated, compacted and taken out; the rest of the entry stays in the
// envelope, copied so that it does not pin the entry's text.
func (s *bundleStream) entryArray() (value, error) {
	tok, err := s.dec.Token()
	if err != nil {
		return value{}, s.fail(err)
	}
	if tok != json.Delim('[') {
		// Not an array: the envelope's validation says so. Its content
		// does not matter.
		return s.placeholder(tok)
	}
	list := value{kind: kArray}
	for s.dec.More() {
		if s.maxEntries > 0 && len(s.entries) == s.maxEntries {
			return value{}, fault.New(fault.TooLarge, "Bundle.entry", "the Bundle has more than %d entries", s.maxEntries)
		}
		e, err := s.value(2)
		if err != nil {
			return value{}, err
		}
		out := BundleEntry{}
		if at := indexOf(&e, "resource"); e.kind == kObject && at >= 0 {
			res := e.obj[at].val
			e.obj = append(e.obj[:at], e.obj[at+1:]...)
			rv := newValidator(model())
			rv.conditionalRefs = s.conditionalRefs
			rv.path = append(rv.path, "Bundle.entry["+strconv.Itoa(len(s.entries))+"].resource"...)
			typ := rv.resource(&res, false)
			if out.Err = rv.err(); out.Err == nil {
				// typ is a slice of the entry's text: copied, not to pin it.
				out.Resource = &Compact{typ: strings.Clone(typ), raw: appendJSON(nil, &res)}
			}
		}
		s.entries = append(s.entries, out)
		list.arr = append(list.arr, e.own())
	}
	if _, err := s.dec.Token(); err != nil { // ]
		return value{}, s.fail(err)
	}
	return list, nil
}

// placeholder skips a value whose first token is tok and returns an empty
// value of its kind.
func (s *bundleStream) placeholder(tok json.Token) (value, error) {
	switch tok.(type) {
	case nil:
		return value{kind: kNull}, nil
	case bool:
		return value{kind: kBool}, nil
	case json.Number:
		return value{kind: kNumber}, nil
	case string:
		return value{kind: kString}, nil
	}
	for depth := 1; depth > 0; { // an object
		tok, err := s.dec.Token()
		if err != nil {
			return value{}, s.fail(err)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return value{kind: kObject}, nil
}

// fail turns an error of the JSON decoder into a fault; an error of the
// reader is returned wrapped.
func (s *bundleStream) fail(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fault.New(fault.Invalid, "", "%v", &syntaxError{off: int(se.Offset), msg: se.Error()})
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return s.syntax("unexpected end of input")
	}
	return fmt.Errorf("reading the bundle: %w", err)
}

// syntax is a JSON syntax problem where the decoder stands.
func (s *bundleStream) syntax(msg string) error {
	return fault.New(fault.Invalid, "", "%v", &syntaxError{off: int(s.dec.InputOffset()), msg: msg})
}

// own returns a deep copy of v whose strings are copies too: strings of
// the decoder share the input's text, which a kept value would pin whole.
func (v *value) own() value {
	c := value{kind: v.kind, str: strings.Clone(v.str)}
	if v.obj != nil {
		c.obj = make([]member, len(v.obj))
		for i := range v.obj {
			c.obj[i] = member{key: strings.Clone(v.obj[i].key), val: v.obj[i].val.own()}
		}
	}
	if v.arr != nil {
		c.arr = make([]value, len(v.arr))
		for i := range v.arr {
			c.arr[i] = v.arr[i].own()
		}
	}
	return c
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
