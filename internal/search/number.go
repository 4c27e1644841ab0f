package search

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Numbers and quantities.
//
// A number is stored as encodeNum of its float64 value: 16 hex digits that
// sort bytewise like the numbers, so a numeric range is a string range
// ($elemMatch with operators only, which every backend serves). Each entry
// starts with a family prefix and ends with the 16 digits; a range under
// one prefix selects that family only.
//
//	number     code|<n>
//	quantity   code||<n>                   any unit
//	           code|s=<system>|<code>|<n>  system and code (no UCUM conversion)
//	           code|u=<unit or code>|<n>   unit or code, any system
//
// System, code and unit are escaped (\ | $ with a backslash), so one
// prefix never starts another family's entries.
//
// A single value (valueQuantity, an integer) goes to num as one entry per
// family; a resource with several values has them all there, and each
// condition is one range on num, so it holds for one value. A Range (low
// and high) goes to nlo and nhi, with the precision of its ends ([low.lo,
// high.hi)), and to nrg as family+lo|hi, for the conditions that test both
// ends of one Range (eq, ap).
//
// Composite entries put the first components' keys before the last one's:
//
//	code$<key1>$<last>   key1: a token :code, =system|code or =system|
//	                     (also reference :Type/id, @id, :url; uri :uri)
//
// where <last> is a token key (in tok), a normalised string (str, starts
// with), a date (dlo/dhi, |instant) or a number or quantity entry as above
// without its code (num/nlo/nhi), so one entry pairs the values of one
// element (one component of an Observation) exactly.

// encodeNum is f as 16 hex digits whose bytewise order is numeric order:
// the IEEE 754 bits with the sign bit flipped for positives and all bits
// flipped for negatives. -0 is 0; ±Inf sort at the ends.
func encodeNum(f float64) string {
	if f == 0 {
		f = 0 // -0
	}
	b := math.Float64bits(f)
	if b>>63 == 1 {
		b = ^b
	} else {
		b |= 1 << 63
	}
	return fmt.Sprintf("%016x", b)
}

// numQuery is a parsed number search value: the prefix, the value and the
// range [lo, hi) of its implicit precision (100 is [99.5, 100.5), 1.50 is
// [1.495, 1.505), 1e2 is [50, 150): half a unit of the last significant
// digit).
type numQuery struct {
	prefix    string
	v, lo, hi float64
}

var decimalRE = regexp.MustCompile(`^[+-]?[0-9]{1,100}(\.[0-9]{1,100})?([eE][+-]?[0-9]{1,4})?$`)

func parseNumber(code, s string) (numQuery, error) {
	q := numQuery{prefix: "eq"}
	if len(s) >= 2 && s[0] >= 'a' && s[0] <= 'z' {
		q.prefix, s = s[:2], s[2:]
		switch q.prefix {
		case "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap":
		default:
			return q, fault.New(fault.Invalid, "", "%s value has the unknown prefix %q (eq ne gt lt ge le sa eb ap)", code, q.prefix)
		}
	}
	bad := fault.New(fault.Invalid, "", "%s value %q is not a number such as 5.4, ge100 or 1.2e-3", code, s)
	if !decimalRE.MatchString(s) {
		return q, bad
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		exp, _ = strconv.Atoi(s[i+1:])
	}
	if exp < -400 || exp > 400 {
		return q, bad
	}
	frac := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		frac = len(mant) - i - 1
	}
	x, ok := new(big.Rat).SetString(s)
	if !ok {
		return q, bad
	}
	// half a unit of the last digit: 5 * 10^(exp-frac-1)
	half := big.NewRat(5, 1)
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp-frac-1))), nil))
	if exp-frac-1 >= 0 {
		half.Mul(half, scale)
	} else {
		half.Quo(half, scale)
	}
	q.v, _ = x.Float64()
	q.lo, _ = new(big.Rat).Sub(x, half).Float64()
	q.hi, _ = new(big.Rat).Add(x, half).Float64()
	if q.lo == q.hi { // beyond float64 resolution
		q.lo, q.hi = math.Nextafter(q.lo, math.Inf(-1)), math.Nextafter(q.hi, math.Inf(1))
	}
	return q, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// numCond compiles a number search value against the entries of one
// family: a value in num, or a Range in nlo/nhi.
func numCond(fam string, q numQuery) store.Cond {
	first, last := fam, fam+"\x7f" // every entry of fam lies in [first, last)
	enc := func(f float64) string { return fam + encodeNum(f) }
	gt := func(field string, f float64) store.Cond {
		return store.Cond{Field: field, Lo: enc(f) + "\x00", Hi: last}
	}
	ge := func(field string, f float64) store.Cond { return store.Cond{Field: field, Lo: enc(f), Hi: last} }
	lt := func(field string, f float64) store.Cond { return store.Cond{Field: field, Lo: first, Hi: enc(f)} }
	le := func(field string, f float64) store.Cond {
		return store.Cond{Field: field, Lo: first, Hi: enc(f) + "\x00"}
	}
	or := func(a, b store.Cond) store.Cond { return store.Cond{Or: []store.Cond{a, b}} }
	var value, rng store.Cond // a single value x; a Range [a, b)
	switch q.prefix {
	case "eq": // x in [lo, hi); [a, b) within it
		value = store.Cond{Field: "num", Lo: enc(q.lo), Hi: enc(q.hi)}
		rng = both(fam, store.Span{Lo: encodeNum(q.lo), Hi: "\x7f"}, store.Span{Hi: encodeNum(q.hi) + "\x00"})
	case "ne":
		value = or(lt("num", q.lo), ge("num", q.hi))
		rng = or(lt("nlo", q.lo), gt("nhi", q.hi))
	case "gt": // a point of [a, b) above v: b > next(v)
		value = gt("num", q.v)
		rng = gt("nhi", math.Nextafter(q.v, math.Inf(1)))
	case "ge":
		value = ge("num", q.v)
		rng = gt("nhi", q.v)
	case "lt":
		value = lt("num", q.v)
		rng = lt("nlo", q.v)
	case "le":
		value = le("num", q.v)
		rng = le("nlo", q.v)
	case "sa":
		value = ge("num", q.hi)
		rng = ge("nlo", q.hi)
	case "eb":
		value = lt("num", q.lo)
		rng = le("nhi", q.lo)
	default: // ap: within 10% of the value, at least its precision range
		d := math.Abs(q.v) / 10
		wlo, whi := min(q.lo, q.v-d), max(q.hi, q.v+d)
		value = store.Cond{Field: "num", Lo: enc(wlo), Hi: enc(whi) + "\x00"}
		rng = both(fam, store.Span{Hi: encodeNum(whi) + "\x00"}, store.Span{Lo: encodeNum(wlo) + "\x00", Hi: "\x7f"})
	}
	return or(value, rng)
}

// both is the condition on one Range entry of family fam in nrg: its
// encoded low in lo and its high in hi.
func both(fam string, lo, hi store.Span) store.Cond {
	return store.Cond{Field: "nrg", Pair: &store.Pair{Prefix: fam, First: lo, Second: hi}}
}

// escKey escapes the separators of composite and quantity entries.
var escKey = strings.NewReplacer(`\`, `\\`, `|`, `\|`, `$`, `\$`).Replace

// addNumber adds the entries of a number value under base.
func addNumber(ix *store.Index, base string, v fhir.IndexValue) {
	addNum(ix, []string{base + "|"}, v)
}

// addQuantity adds the entries of a quantity value under base, one per
// family it can be found by.
func addQuantity(ix *store.Index, base string, v fhir.IndexValue) {
	fams := []string{base + "||"}
	if v.System != "" && v.Code != "" {
		fams = append(fams, base+"|s="+escKey(v.System)+"|"+escKey(v.Code)+"|")
	}
	if v.Unit != "" {
		fams = append(fams, base+"|u="+escKey(v.Unit)+"|")
	}
	if v.Code != "" && v.Code != v.Unit {
		fams = append(fams, base+"|u="+escKey(v.Code)+"|")
	}
	addNum(ix, fams, v)
}

func addNum(ix *store.Index, fams []string, v fhir.IndexValue) {
	if v.Num != "" {
		x, err := strconv.ParseFloat(v.Num, 64)
		if math.IsNaN(x) || (err != nil && !math.IsInf(x, 0)) {
			return
		}
		for _, f := range fams {
			ix.Num = append(ix.Num, f+encodeNum(x))
		}
		return
	}
	if math.IsNaN(v.NumLo) || math.IsNaN(v.NumHi) {
		return
	}
	for _, f := range fams {
		lo, hi := encodeNum(v.NumLo), encodeNum(v.NumHi)
		ix.NumLo = append(ix.NumLo, f+lo)
		ix.NumHi = append(ix.NumHi, f+hi)
		ix.NumRange = append(ix.NumRange, f+lo+"|"+hi)
	}
}

// numberCond compiles the values of a number parameter.
func numberCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	if modifier != "" {
		return store.Cond{}, badModifier(p.Code, modifier)
	}
	return anyOf(alts, func(v string) (store.Cond, error) {
		q, err := parseNumber(p.Code, v)
		if err != nil {
			return store.Cond{}, err
		}
		return numCond(p.Code+"|", q), nil
	})
}

// quantityCond compiles the values of a quantity parameter.
func quantityCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	if modifier != "" {
		return store.Cond{}, badModifier(p.Code, modifier)
	}
	return anyOf(alts, func(v string) (store.Cond, error) { return quantityValueCond(p.Code, p.Code, v) })
}

// quantityValueCond compiles one quantity value, [prefix]number,
// [prefix]number|system|code or [prefix]number||unit, against the entries
// under base.
func quantityValueCond(code, base, v string) (store.Cond, error) {
	parts := splitUnescaped(v, '|')
	fam := base + "||"
	switch {
	case len(parts) == 1:
	case len(parts) == 3:
		sys, c := unescape(parts[1]), unescape(parts[2])
		switch {
		case sys == "" && c == "":
		case sys == "":
			fam = base + "|u=" + escKey(c) + "|"
		case c == "":
			return store.Cond{}, fault.New(fault.Invalid, "", "%s value %q names a system without a code", code, v)
		default:
			fam = base + "|s=" + escKey(sys) + "|" + escKey(c) + "|"
		}
	default:
		return store.Cond{}, fault.New(fault.Invalid, "", "%s value %q is not number, number|system|code or number||unit", code, v)
	}
	q, err := parseNumber(code, parts[0])
	if err != nil {
		return store.Cond{}, err
	}
	return numCond(fam, q), nil
}

// compositeKinds are the component types of a composite parameter that
// search serves (nil if it does not): every component but the last must be
// compared for equality (token, reference, uri), the last may be any type
// but composite. Two ranges cannot be one string range, so composites such
// as MolecularSequence chromosome-variant-coordinate (token, number,
// number) are not served.
func compositeKinds(p *fhir.SearchParam) []string {
	return compositeTypes()[p]
}

var compositeTypes = sync.OnceValue(func() map[*fhir.SearchParam][]string {
	// Custom parameters are never composite: the built-in ones suffice.
	builtins := fhir.NewRegistry()
	m := map[*fhir.SearchParam][]string{}
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range builtins.SearchParams(typ) {
			if p.Type != "composite" || len(p.Components) < 2 {
				continue
			}
			var kinds []string
			for i, c := range p.Components {
				cp := builtins.Lookup(typ, c.Code)
				if cp == nil {
					kinds = nil
					break
				}
				k := cp.Type
				if equalityKind(k) || i == len(p.Components)-1 && (k == "string" || k == "date" || k == "number" || k == "quantity") {
					kinds = append(kinds, k)
					continue
				}
				kinds = nil
				break
			}
			if kinds != nil {
				m[p] = kinds
			}
		}
	}
	return m
})

func equalityKind(k string) bool { return k == "token" || k == "reference" || k == "uri" }

// equalityKeys are the keys of a token, reference or uri component value.
func equalityKeys(kind string, v fhir.IndexValue) []string {
	var keys []string
	switch kind {
	case "token":
		if v.Code != "" {
			keys = append(keys, ":"+escKey(v.Code), "="+escKey(v.System)+"|"+escKey(v.Code))
		}
		if v.System != "" {
			keys = append(keys, "="+escKey(v.System)+"|")
		}
	case "reference":
		keys = append(keys, refKeys(v, escKey)...)
	case "uri":
		if v.Str != "" {
			keys = append(keys, ":"+escKey(v.Str))
		}
	}
	return keys
}

// equalityQuery is the key one token (code, system|code, |code, system|),
// reference (Type/id, id, URL) or uri component value matches.
func equalityQuery(code, kind, s string) (string, error) {
	switch kind {
	case "token":
		parts := splitUnescaped(s, '|')
		switch {
		case len(parts) == 1 && parts[0] != "":
			return ":" + escKey(unescape(parts[0])), nil
		case len(parts) == 2 && (parts[0] != "" || parts[1] != ""):
			return "=" + escKey(unescape(parts[0])) + "|" + escKey(unescape(parts[1])), nil
		}
		return "", fault.New(fault.Invalid, "", "%s component %q is not system|code, |code, system| or code", code, s)
	case "reference":
		v := withoutHistory(unescape(s))
		typ, id, isRel := strings.Cut(v, "/")
		switch {
		case isAbsolute(v):
			return ":" + escKey(v), nil
		case isRel && fhir.IsResourceType(typ) && fhir.ValidID(id):
			return ":" + escKey(v), nil
		case !isRel && fhir.ValidID(v):
			return "@" + escKey(v), nil
		}
		return "", fault.New(fault.Invalid, "", "%s component %q is not Type/id, an id or an absolute URL", code, v)
	}
	return ":" + escKey(unescape(s)), nil
}

// addComposite adds the entries of one composite value (one element's
// combination of component values).
func addComposite(ix *store.Index, p *fhir.SearchParam, v fhir.IndexValue) {
	kinds := compositeKinds(p)
	if kinds == nil || len(v.Parts) != len(kinds) {
		return
	}
	n := len(kinds)
	bases := []string{p.Code + "$"}
	for i, k := range kinds[:n-1] {
		var next []string
		for _, b := range bases {
			for _, key := range equalityKeys(k, v.Parts[i]) {
				next = append(next, b+key+"$")
			}
		}
		bases = next
	}
	last := v.Parts[n-1]
	for _, b := range bases {
		switch kinds[n-1] {
		case "string":
			if last.Str != "" {
				ix.String = append(ix.String, b+normalize(last.Str))
			}
		case "date":
			addDate(ix, b, last)
		case "number":
			addNumber(ix, b, last)
		case "quantity":
			addQuantity(ix, b, last)
		default:
			for _, key := range equalityKeys(kinds[n-1], last) {
				ix.Token = append(ix.Token, b+key)
			}
		}
	}
}

// compositeCond compiles the values of a composite parameter: components
// joined by $ (\$ escapes a $ in a component).
func compositeCond(p *fhir.SearchParam, modifier string, alts []string) (store.Cond, error) {
	if modifier != "" {
		return store.Cond{}, badModifier(p.Code, modifier)
	}
	kinds := compositeKinds(p)
	n := len(kinds)
	return anyOf(alts, func(v string) (store.Cond, error) {
		parts := splitUnescaped(v, '$')
		if n == 0 || len(parts) != n {
			return store.Cond{}, fault.New(fault.Invalid, "", "%s value %q must have %d components joined by $", p.Code, v, n)
		}
		base := p.Code + "$"
		for i, k := range kinds[:n-1] {
			key, err := equalityQuery(p.Code, k, parts[i])
			if err != nil {
				return store.Cond{}, err
			}
			base += key + "$"
		}
		last := parts[n-1]
		switch kinds[n-1] {
		case "string":
			return store.Cond{Field: "str", Prefix: []string{base + normalize(unescape(last))}}, nil
		case "date":
			if _, _, _, err := searchDate(p.Code, last); err != nil {
				return store.Cond{}, err
			}
			return dateCond(base, last)
		case "number":
			q, err := parseNumber(p.Code, last)
			if err != nil {
				return store.Cond{}, err
			}
			return numCond(base+"|", q), nil
		case "quantity":
			return quantityValueCond(p.Code, base, last)
		}
		key, err := equalityQuery(p.Code, kinds[n-1], last)
		if err != nil {
			return store.Cond{}, err
		}
		return store.Cond{Field: "tok", In: []string{base + key}}, nil
	})
}
