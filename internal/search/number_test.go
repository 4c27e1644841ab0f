package search

import (
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

func TestEncodeNumOrder(t *testing.T) {
	ordered := []float64{
		math.Inf(-1), -math.MaxFloat64, -1e300, -1e10, -123.456, -2, -1.5, -1, -0.5, -1e-10,
		-1e-300, -math.SmallestNonzeroFloat64, 0, math.SmallestNonzeroFloat64, 1e-300, 2.2250738585072014e-308,
		1e-10, 0.1, 0.5, 1, math.Nextafter(1, 2), 1.5, 2, 10, 123.456, 1e10, 1e300, math.MaxFloat64, math.Inf(1),
	}
	slices.Sort(ordered) // the list is hand-written; make sure it is in order
	for i, f := range ordered {
		e := encodeNum(f)
		if len(e) != 16 || strings.Trim(e, "0123456789abcdef") != "" {
			t.Fatalf("encodeNum(%g) = %q, want 16 hex digits", f, e)
		}
		if i > 0 && encodeNum(ordered[i-1]) >= e {
			t.Errorf("encodeNum(%g) = %s does not sort after encodeNum(%g) = %s", f, e, ordered[i-1], encodeNum(ordered[i-1]))
		}
	}
	if encodeNum(math.Copysign(0, -1)) != encodeNum(0) {
		t.Errorf("-0 and 0 encode differently")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		a := math.Float64frombits(r.Uint64())
		b := math.Float64frombits(r.Uint64())
		if math.IsNaN(a) || math.IsNaN(b) {
			continue
		}
		if (a < b) != (encodeNum(a) < encodeNum(b)) || (a == b) != (encodeNum(a) == encodeNum(b)) {
			t.Fatalf("order of %g, %g: encodings %s, %s", a, b, encodeNum(a), encodeNum(b))
		}
	}
}

func TestParseNumberPrecision(t *testing.T) {
	for _, tc := range []struct {
		in        string
		prefix    string
		v, lo, hi float64
	}{
		{"100", "eq", 100, 99.5, 100.5},
		{"100.00", "eq", 100, 99.995, 100.005},
		{"1e2", "eq", 100, 50, 150},
		{"1.0e2", "eq", 100, 95, 105},
		{"1.5", "eq", 1.5, 1.45, 1.55},
		{"-1.5", "eq", -1.5, -1.55, -1.45},
		{"0", "eq", 0, -0.5, 0.5},
		{"0.001", "eq", 0.001, 0.0005, 0.0015},
		{"5.40e-3", "eq", 0.0054, 0.005395, 0.005405},
		{"gt5", "gt", 5, 4.5, 5.5},
		{"ap-2", "ap", -2, -2.5, -1.5},
		{"le+3", "le", 3, 2.5, 3.5},
	} {
		q, err := parseNumber("x", tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if q.prefix != tc.prefix || q.v != tc.v || q.lo != tc.lo || q.hi != tc.hi {
			t.Errorf("%s: got %s %v [%v, %v), want %s %v [%v, %v)", tc.in, q.prefix, q.v, q.lo, q.hi, tc.prefix, tc.v, tc.lo, tc.hi)
		}
	}
	// More digits than a float64 holds still give a non-empty range.
	q, err := parseNumber("x", "0.30000000000000000000000000001")
	if err != nil || !(q.lo < q.hi) || q.v < q.lo || q.v >= q.hi {
		t.Errorf("long decimal: %+v %v", q, err)
	}
	for _, bad := range []string{"", "abc", "xx5", ".5", "1.", "1e", "1e999", "5 ", "0x10", "NaN", "Infinity", "eq", "gt-", "1,5"} {
		if _, err := parseNumber("x", bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// holds evaluates a condition against an index in memory, as the store's
// filter does (one entry must satisfy a range).
func holds(c store.Cond, ix *store.Index) bool {
	switch {
	case c.And != nil:
		for _, a := range c.And {
			if !holds(a, ix) {
				return false
			}
		}
		return true
	case c.Or != nil:
		return slices.ContainsFunc(c.Or, func(o store.Cond) bool { return holds(o, ix) })
	}
	entries := map[string][]string{
		"ref": ix.Ref,
		"tok": ix.Token, "str": ix.String, "dlo": ix.DateLo, "dhi": ix.DateHi,
		"num": ix.Num, "nlo": ix.NumLo, "nhi": ix.NumHi, "has": ix.Has,
		"drg": ix.DateRange, "nrg": ix.NumRange,
	}[c.Field]
	switch {
	case c.Pair != nil:
		return slices.ContainsFunc(entries, func(e string) bool {
			rest, ok := strings.CutPrefix(e, c.Pair.Prefix)
			a, b, _ := strings.Cut(rest, "|")
			in := func(s string, sp store.Span) bool { return sp.Lo <= s && s < sp.Hi }
			return ok && in(a, c.Pair.First) && in(b, c.Pair.Second)
		})
	case c.In != nil:
		return slices.ContainsFunc(entries, func(e string) bool { return slices.Contains(c.In, e) })
	case c.NotIn != nil:
		return !slices.ContainsFunc(entries, func(e string) bool { return slices.Contains(c.NotIn, e) })
	case c.Prefix != nil:
		return slices.ContainsFunc(entries, func(e string) bool {
			return slices.ContainsFunc(c.Prefix, func(p string) bool { return strings.HasPrefix(e, p) })
		})
	}
	return slices.ContainsFunc(entries, func(e string) bool { return c.Lo <= e && e < c.Hi })
}

func indexOf(t *testing.T, body string) *store.Index {
	t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return Index(builtins, res)
}

// matches lists the ids of docs that a search matches.
func matches(t *testing.T, typ, query string, docs map[string]*store.Index) []string {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(builtins, typ, q, false)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query, err)
	}
	var ids []string
	for id, ix := range docs {
		ok := true
		for _, c := range r.Conds {
			ok = ok && holds(c, ix)
		}
		if ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Every prefix on single values and on Ranges, in memory (the HTTP tests
// run the same kind of searches against the database).
func TestNumberPrefixes(t *testing.T) {
	docs := map[string]*store.Index{}
	for id, v := range map[string]string{"m2": "-2", "z": "0", "a": "99.4", "b": "99.5", "c": "100", "d": "100.49", "e": "100.5", "f": "110", "g": "1e300"} {
		docs[id] = indexOf(t, `{"resourceType":"RiskAssessment","id":"`+id+`","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":`+v+`}]}`)
	}
	// Condition onset-age: Ranges [4.5, 10.5) and [19.5, +Inf), and a value 7.
	docs["r1"] = indexOf(t, `{"resourceType":"Condition","subject":{"reference":"Patient/p"},"onsetRange":{"low":{"value":5},"high":{"value":10}}}`)
	docs["r2"] = indexOf(t, `{"resourceType":"Condition","subject":{"reference":"Patient/p"},"onsetRange":{"low":{"value":20}}}`)
	docs["v7"] = indexOf(t, `{"resourceType":"Condition","subject":{"reference":"Patient/p"},"onsetAge":{"value":7}}`)
	for _, tc := range []struct {
		typ, query string
		want       []string
	}{
		{"RiskAssessment", "probability=100", []string{"b", "c", "d"}},
		{"RiskAssessment", "probability=eq100", []string{"b", "c", "d"}},
		{"RiskAssessment", "probability=100.0", []string{"c"}},
		{"RiskAssessment", "probability=1e2", []string{"a", "b", "c", "d", "e", "f"}},
		{"RiskAssessment", "probability=ne100", []string{"a", "e", "f", "g", "m2", "z"}},
		{"RiskAssessment", "probability=gt100", []string{"d", "e", "f", "g"}},
		{"RiskAssessment", "probability=ge100", []string{"c", "d", "e", "f", "g"}},
		{"RiskAssessment", "probability=lt100", []string{"a", "b", "m2", "z"}},
		{"RiskAssessment", "probability=le100", []string{"a", "b", "c", "m2", "z"}},
		{"RiskAssessment", "probability=sa100", []string{"e", "f", "g"}},
		{"RiskAssessment", "probability=eb100", []string{"a", "m2", "z"}},
		{"RiskAssessment", "probability=ap100", []string{"a", "b", "c", "d", "e", "f"}},
		{"RiskAssessment", "probability=ap-2", []string{"m2"}},
		{"RiskAssessment", "probability=0", []string{"z"}},
		{"RiskAssessment", "probability=-2,1e300", []string{"g", "m2"}},
		{"RiskAssessment", "probability=gt0&probability=lt100", []string{"a", "b"}},
		{"RiskAssessment", "probability=lt-1e308", nil},
		{"Condition", "onset-age=7", []string{"v7"}},
		{"Condition", "onset-age=ne7", []string{"r1", "r2"}},
		{"Condition", "onset-age=gt9", []string{"r1", "r2"}},
		{"Condition", "onset-age=gt10", []string{"r1", "r2"}}, // 10 covers [9.5, 10.5)
		{"Condition", "onset-age=gt11", []string{"r2"}},
		{"Condition", "onset-age=ge10.5", []string{"r2"}},
		{"Condition", "onset-age=lt5", []string{"r1"}},
		{"Condition", "onset-age=le4.5", []string{"r1"}},
		{"Condition", "onset-age=lt4.5", nil},
		{"Condition", "onset-age=sa3", []string{"r1", "r2", "v7"}},
		{"Condition", "onset-age=sa5", []string{"r2", "v7"}},
		{"Condition", "onset-age=eb20", []string{"r1", "v7"}},
		{"Condition", "onset-age=eb8", []string{"v7"}},
		{"Condition", "onset-age=1e1", []string{"v7"}}, // [5, 15) does not contain [4.5, 10.5)
		{"Condition", "onset-age=ap10", []string{"r1"}},
		{"Condition", "onset-age=ap25", []string{"r2"}},
	} {
		if got := matches(t, tc.typ, tc.query, docs); !slices.Equal(got, tc.want) {
			t.Errorf("%s?%s = %v, want %v", tc.typ, tc.query, got, tc.want)
		}
	}
}

func TestQuantityAndCompositeInMemory(t *testing.T) {
	docs := map[string]*store.Index{
		"mg": indexOf(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.4,"unit":"milligram","system":"http://unitsofmeasure.org","code":"mg"}}`),
		"g":  indexOf(t, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":5.4,"unit":"g","system":"http://unitsofmeasure.org","code":"g"}}`),
		"odd": indexOf(t, `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"a|b","code":"c$d"}]},`+
			`"valueQuantity":{"value":5.4,"unit":"x|y","system":"s$","code":"1|5"}}`),
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"value-quantity=5.4", []string{"g", "mg", "odd"}},
		{"value-quantity=5.4|http://unitsofmeasure.org|mg", []string{"mg"}},
		{"value-quantity=5.4||mg", []string{"mg"}},
		{"value-quantity=5.4||milligram", []string{"mg"}},
		{"value-quantity=5.4||", []string{"g", "mg", "odd"}},
		{"value-quantity=5.4|http://unitsofmeasure.org|kg", nil},
		{"value-quantity=5.40e-3|http://unitsofmeasure.org|g", nil}, // no unit conversion
		{"value-quantity=5.4||x\\|y", []string{"odd"}},
		{"value-quantity=5.4|s$|1\\|5", []string{"odd"}},
		{"code-value-quantity=a\\|b|c\\$d$5.4|s\\$|1\\|5", []string{"odd"}},
		{"code-value-quantity=c\\$d$gt5", []string{"odd"}},
		{"code-value-quantity=c\\$d$lt5", nil},
		{"code-value-quantity=a\\|b|$5.4", []string{"odd"}},
	} {
		if got := matches(t, "Observation", tc.query, docs); !slices.Equal(got, tc.want) {
			t.Errorf("Observation?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestNumberQuantityCompositeRejects(t *testing.T) {
	for _, q := range []string{
		"value-quantity=five", "value-quantity=5|", "value-quantity=5|s|", "value-quantity=5|a|b|c",
		"value-quantity:exact=5", "code-value-quantity=5", "code-value-quantity=a$b$c", "code-value-quantity=|$5",
		"code-value-date=a$yesterday", "code-value-quantity=a$zz5", "combo-code-value-concept=a",
	} {
		v, _ := url.ParseQuery(q)
		if _, err := Parse(builtins, "Observation", v, false); err == nil {
			t.Errorf("Observation?%s parsed", q)
		}
	}
	v := url.Values{"chromosome-variant-coordinate": {"1$5$6"}}
	if _, err := Parse(builtins, "MolecularSequence", v, false); err == nil {
		t.Errorf("a composite of two ranges parsed")
	}
}

// Every condition a number, quantity or composite search compiles to is on
// a field a declared index {type, field} serves.
func TestNumberQueryShapesIndexed(t *testing.T) {
	indexed := map[string]bool{}
	for _, ix := range store.Indexes()["resources"] {
		if len(ix.Keys) >= 2 && ix.Keys[0].Key == "type" {
			indexed[ix.Keys[1].Key] = true
		}
	}
	var check func(q string, c store.Cond)
	check = func(q string, c store.Cond) {
		for _, s := range append(c.Or, c.And...) {
			check(q, s)
		}
		if c.Or == nil && c.And == nil && !indexed[c.Field] {
			t.Errorf("%s: condition on %q, which no index serves", q, c.Field)
		}
	}
	prefixes := []string{"", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}
	shapes := 0
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range builtins.SearchParams(typ) {
			if !Searchable(p) {
				continue
			}
			var vals []string
			switch p.Type {
			case "number":
				for _, pre := range prefixes {
					vals = append(vals, pre+"1.5")
				}
			case "quantity":
				for _, pre := range prefixes {
					vals = append(vals, pre+"1.5", pre+"1.5|s|c", pre+"1.5||u")
				}
			case "composite":
				kinds := compositeKinds(p)
				head := ""
				for _, k := range kinds[:len(kinds)-1] {
					head += map[string]string{"token": "s|a", "reference": "Patient/1", "uri": "http://x"}[k] + "$"
				}
				switch kinds[len(kinds)-1] {
				case "number", "quantity":
					for _, pre := range prefixes {
						vals = append(vals, head+pre+"1.5")
					}
				case "date":
					for _, pre := range prefixes {
						vals = append(vals, head+pre+"2021")
					}
				case "reference":
					vals = append(vals, head+"Patient/1")
				default:
					vals = append(vals, head+"a")
				}
			default:
				continue
			}
			for _, v := range vals {
				r, err := Parse(builtins, typ, url.Values{p.Code: {v}}, false)
				if err != nil {
					t.Errorf("%s?%s=%s: %v", typ, p.Code, v, err)
					continue
				}
				for _, c := range r.Conds {
					check(typ+"?"+p.Code+"="+v, c)
					shapes++
				}
			}
		}
	}
	t.Logf("%d shapes", shapes)
}
