package search

import (
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

const (
	instantLayout = "2006-01-02T15:04:05.000Z"
	minDate       = "0000"
	maxDate       = "~" // sorts after every digit
)

// Index computes the index entries of a resource from every search
// parameter of its type in reg that search serves (see Searchable).
func Index(reg *fhir.Registry, res *fhir.Resource) *store.Index {
	ix := &store.Index{}
	for _, p := range reg.SearchParams(res.Type()) {
		if !Searchable(p) || p.Code == "_id" || p.Code == "_lastUpdated" {
			continue // _id and _lastUpdated are the record's own fields
		}
		vals := res.SearchValues(p)
		if len(vals) == 0 {
			continue
		}
		ix.Has = append(ix.Has, p.Code)
		for _, v := range vals {
			addEntries(ix, p, v)
		}
		addSortKeys(ix, p, vals)
	}
	for _, s := range []*[]string{&ix.Token, &ix.Text, &ix.String, &ix.Exact, &ix.Ref, &ix.URI, &ix.DateLo, &ix.DateHi, &ix.DateRange, &ix.Num, &ix.NumLo, &ix.NumHi, &ix.NumRange} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return ix
}

// refKeys are the entries of a reference value after its parameter's code,
// each part passed through esc: ":Type/id" and "@id" when it is a literal
// Type/id, and ":" the reference as written (without /_history/..) when it
// is absolute or not Type/id, so that a search for the absolute URL finds
// it too.
func refKeys(v fhir.IndexValue, esc func(string) string) []string {
	var keys []string
	if v.RefType != "" && v.RefID != "" {
		keys = append(keys, ":"+esc(v.RefType+"/"+v.RefID), "@"+esc(v.RefID))
	}
	if ref := withoutHistory(v.Ref); ref != "" && (isAbsolute(ref) || v.RefType == "" || v.RefID == "") {
		keys = append(keys, ":"+esc(ref))
	}
	return keys
}

func addEntries(ix *store.Index, p *fhir.SearchParam, v fhir.IndexValue) {
	c := p.Code
	switch p.Type {
	case "token":
		ix.Token = append(ix.Token, tokenKeys(c, v.System, v.Code)...)
		for _, tc := range v.TypeCodings {
			if tc.Code != "" && v.Code != "" {
				ix.Token = append(ix.Token, ofTypeKey(c, tc.System, tc.Code, v.Code))
			}
		}
		if v.Display != "" {
			ix.Text = append(ix.Text, c+":"+normalize(v.Display))
		}
	case "string":
		if v.Str != "" {
			ix.String = append(ix.String, c+":"+normalize(v.Str))
			ix.Exact = append(ix.Exact, c+":"+v.Str)
		}
	case "uri":
		if v.Str != "" {
			ix.URI = append(ix.URI, c+":"+v.Str)
		}
	case "reference":
		for _, k := range refKeys(v, func(s string) string { return s }) {
			ix.Ref = append(ix.Ref, c+k)
		}
		if v.Code != "" {
			ix.Token = append(ix.Token, tokenKeys(c+"@identifier", v.System, v.Code)...)
		}
	case "date":
		addDate(ix, c, v)
	case "number":
		addNumber(ix, c, v)
	case "quantity":
		addQuantity(ix, c, v)
	case "composite":
		addComposite(ix, p, v)
	}
}

// addDate adds the entries of the date range of v under prefix: its start,
// its end, and both in one entry for conditions on both ends.
func addDate(ix *store.Index, prefix string, v fhir.IndexValue) {
	lo, hi := bound(v.Lo, minDate), bound(v.Hi, maxDate)
	ix.DateLo = append(ix.DateLo, prefix+"|"+lo)
	ix.DateHi = append(ix.DateHi, prefix+"|"+hi)
	ix.DateRange = append(ix.DateRange, prefix+"|"+lo+"|"+hi)
}

func bound(t time.Time, open string) string {
	if t.IsZero() {
		return open
	}
	return t.UTC().Format(instantLayout)
}

// normalize makes string search case- and accent-insensitive: lower case,
// combining marks removed after canonical decomposition.
func normalize(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

// Searchable reports whether search serves p: every type, composites only
// when compositeKinds serves them.
func Searchable(p *fhir.SearchParam) bool {
	switch p.Type {
	case "token", "string", "uri", "reference", "date", "number", "quantity":
		return true
	case "composite":
		return compositeKinds(p) != nil
	}
	return false
}
