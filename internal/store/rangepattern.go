package store

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// rangePattern is a regular expression, in the syntax RE2 (FerretDB) and
// PCRE (MongoDB) share, that matches exactly the strings s with
// lo <= s < hi in bytewise order: one entry of an array field, where
// FerretDB 1.24 tests the operators of {$elemMatch: {$gte, $lt}} against
// any entries, not one. UTF-8 keeps code point order, so the pattern works
// on runes. Every rune but ASCII letters and digits is written \x{..}: client
// text never becomes pattern syntax. ok is false when no string matches
// (lo >= hi, or either is not UTF-8, which no stored entry is).
func rangePattern(lo, hi string) (pattern string, ok bool) {
	body, ok := rangeBody(lo, hi)
	return "^" + body + `\z`, ok
}

// pairPattern matches exactly the strings prefix + a + "|" + b with a in
// p.First and b in p.Second, for entries whose a and b hold no '|' (so the
// one '|' after prefix is the separator).
func pairPattern(p *Pair) (pattern string, ok bool) {
	first, ok1 := rangeBody(p.First.Lo, p.First.Hi)
	second, ok2 := rangeBody(p.Second.Lo, p.Second.Hi)
	if !ok1 || !ok2 || !utf8.ValidString(p.Prefix) {
		return "", false
	}
	// QuoteMeta keeps the prefix a literal MongoDB can bound an index scan by.
	var b strings.Builder
	b.WriteString("^" + regexp.QuoteMeta(p.Prefix) + first)
	lit(&b, '|')
	b.WriteString(second + `\z`)
	return b.String(), true
}

// rangeBody is rangePattern without its anchors.
func rangeBody(lo, hi string) (pattern string, ok bool) {
	if lo >= hi || !utf8.ValidString(lo) || !utf8.ValidString(hi) {
		return "", false
	}
	l, h := []rune(lo), []rune(hi)
	k := 0
	for k < len(l) && k < len(h) && l[k] == h[k] {
		k++
	}
	var b strings.Builder
	b.WriteString("(?:")
	for _, r := range l[:k] {
		lit(&b, r)
	}
	l, h = l[k:], h[k:] // lo < hi: h is not empty, and l[0] < h[0] if l is not
	if len(l) == 0 {
		b.WriteString(patLess(h))
	} else {
		b.WriteString("(?:")
		lit(&b, l[0])
		b.WriteString(patAtLeast(l[1:]))
		if l[0]+1 < h[0] {
			b.WriteString("|" + class(l[0]+1, h[0]-1) + anyRest)
		}
		if rest := patLess(h[1:]); rest != "" {
			b.WriteString("|")
			lit(&b, h[0])
			b.WriteString(rest)
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String(), true
}

const anyRest = `(?s:.*)`

// patAtLeast matches the rest of a string that is >= l.
func patAtLeast(l []rune) string {
	if len(l) == 0 {
		return anyRest
	}
	var b strings.Builder
	b.WriteString("(?:")
	if l[0] < utf8.MaxRune {
		b.WriteString(class(l[0]+1, utf8.MaxRune) + anyRest + "|")
	}
	lit(&b, l[0])
	b.WriteString(patAtLeast(l[1:]) + ")")
	return b.String()
}

// patLess matches the rest of a string that is < h; "" when none is.
func patLess(h []rune) string {
	if len(h) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("(?:") // the empty alternative: a proper prefix of h
	if h[0] > 0 {
		b.WriteString("|" + class(0, h[0]-1) + anyRest)
	}
	if rest := patLess(h[1:]); rest != "" {
		b.WriteString("|")
		lit(&b, h[0])
		b.WriteString(rest)
	}
	b.WriteString(")")
	return b.String()
}

func lit(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
		b.WriteRune(r)
		return
	}
	fmt.Fprintf(b, `\x{%x}`, r)
}

func class(from, to rune) string {
	return fmt.Sprintf(`[\x{%x}-\x{%x}]`, from, to)
}
