package fhir

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is the JSON type of a value.
type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kObject
	kArray
)

// value is a node of the ordered JSON tree. Numbers keep their lexeme in str
// so that 1.50 is written back as 1.50; strings hold the decoded text.
type value struct {
	kind kind
	str  string // string text, number lexeme, or "true"/"false"
	obj  []member
	arr  []value
}

type member struct {
	key string
	val value
}

// get returns the member named key, or nil.
func (v *value) get(key string) *value {
	for i := range v.obj {
		if v.obj[i].key == key {
			return &v.obj[i].val
		}
	}
	return nil
}

// maxDepth bounds nesting so that hostile input cannot exhaust the stack;
// real resources stay far below it.
const maxDepth = 500

// syntaxError is a JSON syntax problem at a byte offset.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

type decoder struct {
	src   string // one copy of the input; strings without escapes are slices of it
	pos   int
	depth int
}

// decodeJSON parses exactly one JSON value (plus white space) from body.
func decodeJSON(body []byte) (value, error) {
	return decodeNested(body, 0, 0)
}

// decodeNested is decodeJSON of a value found at byte offset off of a
// larger document, at nesting depth depth: errors give offsets in that
// document, and its enclosing levels count towards maxDepth.
func decodeNested(body []byte, off, depth int) (value, error) {
	d := decoder{src: string(body), depth: depth}
	v, err := d.value()
	if err == nil {
		d.skipSpace()
		if d.pos != len(d.src) {
			err = d.errorf("unexpected data after the JSON value")
		}
	}
	if err != nil {
		if se, ok := err.(*syntaxError); ok {
			se.off += off
		}
		return value{}, err
	}
	return v, nil
}

func (d *decoder) errorf(format string, args ...any) error {
	return &syntaxError{off: d.pos, msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (value, error) {
	d.skipSpace()
	if d.pos >= len(d.src) {
		return value{}, d.errorf("unexpected end of input")
	}
	switch c := d.src[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		s, err := d.string()
		return value{kind: kString, str: s}, err
	case c == 't':
		return d.literal("true", kBool)
	case c == 'f':
		return d.literal("false", kBool)
	case c == 'n':
		return d.literal("null", kNull)
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	default:
		return value{}, d.errorf("unexpected character %q", c)
	}
}

func (d *decoder) literal(lit string, k kind) (value, error) {
	if !strings.HasPrefix(d.src[d.pos:], lit) {
		return value{}, d.errorf("invalid literal")
	}
	d.pos += len(lit)
	return value{kind: k, str: lit}, nil
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.errorf("nesting deeper than %d", maxDepth)
	}
	return nil
}

func (d *decoder) object() (value, error) {
	if err := d.enter(); err != nil {
		return value{}, err
	}
	d.pos++ // {
	v := value{kind: kObject}
	var seen map[string]bool // only for large objects; small ones scan v.obj
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == '}' {
		d.pos++
		d.depth--
		return v, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != '"' {
			return value{}, d.errorf("expected a member name")
		}
		start := d.pos
		key, err := d.string()
		if err != nil {
			return value{}, err
		}
		if seen == nil && len(v.obj) >= 16 {
			seen = make(map[string]bool, 2*len(v.obj))
			for _, m := range v.obj {
				seen[m.key] = true
			}
		}
		if seen != nil && seen[key] || seen == nil && v.get(key) != nil {
			d.pos = start
			return value{}, d.errorf("duplicate member %q", key)
		}
		if seen != nil {
			seen[key] = true
		}
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != ':' {
			return value{}, d.errorf("expected ':'")
		}
		d.pos++
		val, err := d.value()
		if err != nil {
			return value{}, err
		}
		v.obj = append(v.obj, member{key: key, val: val})
		d.skipSpace()
		if d.pos >= len(d.src) {
			return value{}, d.errorf("unexpected end of input in object")
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			return v, nil
		default:
			return value{}, d.errorf("expected ',' or '}'")
		}
	}
}

func (d *decoder) array() (value, error) {
	if err := d.enter(); err != nil {
		return value{}, err
	}
	d.pos++ // [
	v := value{kind: kArray}
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		d.depth--
		return v, nil
	}
	for {
		item, err := d.value()
		if err != nil {
			return value{}, err
		}
		v.arr = append(v.arr, item)
		d.skipSpace()
		if d.pos >= len(d.src) {
			return value{}, d.errorf("unexpected end of input in array")
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			return v, nil
		default:
			return value{}, d.errorf("expected ',' or ']'")
		}
	}
}

// string decodes a string token. Invalid UTF-8 and lone surrogates are
// rejected rather than replaced, so that what is stored is what was sent.
func (d *decoder) string() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	for d.pos < len(d.src) {
		c := d.src[d.pos]
		switch {
		case c == '"':
			s := d.src[start:d.pos]
			d.pos++
			return s, nil
		case c == '\\':
			return d.escapedString(start)
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, n := utf8.DecodeRuneInString(d.src[d.pos:])
			if r == utf8.RuneError && n == 1 {
				return "", d.errorf("invalid UTF-8 in string")
			}
			d.pos += n
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *decoder) escapedString(start int) (string, error) {
	var b strings.Builder
	b.WriteString(d.src[start:d.pos])
	for d.pos < len(d.src) {
		c := d.src[d.pos]
		switch {
		case c == '"':
			d.pos++
			return b.String(), nil
		case c == '\\':
			if d.pos+1 >= len(d.src) {
				return "", d.errorf("unterminated string")
			}
			e := d.src[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, err := d.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if !strings.HasPrefix(d.src[d.pos:], `\u`) {
						return "", d.errorf("lone surrogate in string")
					}
					d.pos += 2
					r2, err := d.hex4()
					if err != nil {
						return "", err
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", d.errorf("invalid surrogate pair in string")
					}
				}
				b.WriteRune(r)
			default:
				d.pos -= 2
				return "", d.errorf("invalid escape")
			}
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			d.pos++
		default:
			r, n := utf8.DecodeRuneInString(d.src[d.pos:])
			if r == utf8.RuneError && n == 1 {
				return "", d.errorf("invalid UTF-8 in string")
			}
			b.WriteString(d.src[d.pos : d.pos+n])
			d.pos += n
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *decoder) hex4() (rune, error) {
	if d.pos+4 > len(d.src) {
		return 0, d.errorf("short \\u escape")
	}
	n, err := strconv.ParseUint(d.src[d.pos:d.pos+4], 16, 32)
	if err != nil {
		return 0, d.errorf("invalid \\u escape")
	}
	d.pos += 4
	return rune(n), nil
}

// number scans a number token against the JSON grammar, which is also the
// FHIR decimal pattern, and keeps its lexeme.
func (d *decoder) number() (value, error) {
	start := d.pos
	s := d.src
	i := d.pos
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		d.pos = i
		return value{}, d.errorf("invalid number")
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			d.pos = i
			return value{}, d.errorf("invalid number")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			d.pos = i
			return value{}, d.errorf("invalid number")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	d.pos = i
	return value{kind: kNumber, str: s[start:i]}, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// appendJSON writes v compactly: member order and number lexemes as parsed,
// strings re-encoded with only the escapes JSON requires (no HTML escaping).
func appendJSON(b []byte, v *value) []byte {
	switch v.kind {
	case kNull:
		return append(b, "null"...)
	case kBool, kNumber:
		return append(b, v.str...)
	case kString:
		return appendString(b, v.str)
	case kObject:
		b = append(b, '{')
		for i := range v.obj {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v.obj[i].key)
			b = append(b, ':')
			b = appendJSON(b, &v.obj[i].val)
		}
		return append(b, '}')
	default: // kArray
		b = append(b, '[')
		for i := range v.arr {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, &v.arr[i])
		}
		return append(b, ']')
	}
}

const hexDigits = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
