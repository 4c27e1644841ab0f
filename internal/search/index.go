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
	}
	for _, s := range []*[]string{&ix.Token, &ix.Text, &ix.String, &ix.Exact, &ix.Ref, &ix.URI, &ix.DateLo, &ix.DateHi, &ix.Num, &ix.NumLo, &ix.NumHi} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return ix
}

func addEntries(ix *store.Index, p *fhir.SearchParam, v fhir.IndexValue) {
	c := p.Code
	switch p.Type {
	case "token":
		ix.Token = append(ix.Token, tokenKeys(c, v.System, v.Code)...)
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
		if v.RefType != "" && v.RefID != "" {
			ix.Ref = append(ix.Ref, c+":"+v.RefType+"/"+v.RefID, c+"@"+v.RefID)
		} else if v.Ref != "" {
			ix.Ref = append(ix.Ref, c+":"+v.Ref)
		}
		if v.Code != "" {
			ix.Token = append(ix.Token, tokenKeys(c+"@identifier", v.System, v.Code)...)
		}
	case "date":
		ix.DateLo = append(ix.DateLo, c+"|"+bound(v.Lo, minDate))
		ix.DateHi = append(ix.DateHi, c+"|"+bound(v.Hi, maxDate))
	case "number":
		addNumber(ix, c, v)
	case "quantity":
		addQuantity(ix, c, v)
	case "composite":
		addComposite(ix, p, v)
	}
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
