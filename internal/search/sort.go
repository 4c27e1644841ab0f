package search

import (
	"math"
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Sort keys. A resource has, per sortable parameter with a value, the
// lowest (store.Index.SortAsc) and the highest (SortDesc) key of its values,
// strings whose bytewise order is the parameter's order:
//
//	string     normalised as string search does
//	token      code, a tab (below every printable character), system
//	uri        the uri
//	reference  Type/id, or the reference as written
//	date       the start (lowest) or the end (highest) in instantLayout
//	number     encodeNum of the value; a Range's low or high end
//	quantity   likewise, whatever the unit (no conversion)

// sortKeys are the lowest and highest sort keys of p's values ("" when none
// has a key).
func sortKeys(p *fhir.SearchParam, vals []fhir.IndexValue) (lo, hi string) {
	for _, v := range vals {
		l, h := sortKey(p.Type, v)
		if l != "" && (lo == "" || l < lo) {
			lo = l
		}
		if h != "" && h > hi {
			hi = h
		}
	}
	return lo, hi
}

// sortKey is the key of one value when sorting ascending and descending.
func sortKey(typ string, v fhir.IndexValue) (string, string) {
	var k string
	switch typ {
	case "string":
		k = normalize(v.Str)
	case "uri":
		k = v.Str
	case "token":
		if v.Code != "" || v.System != "" {
			k = v.Code + "\t" + v.System
		}
	case "reference":
		k = v.Ref
		if v.RefType != "" && v.RefID != "" {
			k = v.RefType + "/" + v.RefID
		}
	case "date":
		return bound(v.Lo, minDate), bound(v.Hi, maxDate)
	case "number", "quantity":
		if v.Num == "" {
			if math.IsNaN(v.NumLo) || math.IsNaN(v.NumHi) {
				return "", ""
			}
			return encodeNum(v.NumLo), encodeNum(v.NumHi)
		}
		x, err := strconv.ParseFloat(v.Num, 64)
		if math.IsNaN(x) || (err != nil && !math.IsInf(x, 0)) {
			return "", ""
		}
		k = encodeNum(x)
	}
	return k, k
}

// addSortKeys records p's sort keys in ix.
func addSortKeys(ix *store.Index, p *fhir.SearchParam, vals []fhir.IndexValue) {
	if !sortable(p) {
		return
	}
	if _, ok := store.SortField(p.Code, false); !ok {
		return // not a field name; such a code cannot be sorted by
	}
	lo, hi := sortKeys(p, vals)
	if lo == "" || hi == "" {
		return
	}
	if ix.SortAsc == nil {
		ix.SortAsc, ix.SortDesc = map[string]string{}, map[string]string{}
	}
	ix.SortAsc[p.Code], ix.SortDesc[p.Code] = lo, hi
}

func sortable(p *fhir.SearchParam) bool {
	switch p.Type {
	case "string", "token", "uri", "reference", "date", "number", "quantity":
		return true
	}
	return false
}

// sortBy parses a _sort value: keys separated by commas, each a parameter
// code of the type, '-' first for descending. rid is added last so the
// order is total, which keyset paging needs.
func sortBy(reg *fhir.Registry, typ, v string) ([]store.Sort, error) {
	var out []store.Sort
	for _, key := range strings.Split(v, ",") {
		desc := strings.HasPrefix(key, "-")
		code := strings.TrimPrefix(key, "-")
		var field string
		switch code {
		case "_lastUpdated":
			field = "ts"
		case "_id":
			field = "rid"
		default:
			p := reg.Lookup(typ, code)
			if p == nil {
				return nil, fault.New(fault.Invalid, "", "_sort: %s has no search parameter %q", typ, code)
			}
			f, ok := store.SortField(code, desc)
			if !ok || !sortable(p) {
				return nil, fault.New(fault.Invalid, "", "_sort by %s (a %s parameter) is not supported", code, p.Type)
			}
			field = f
		}
		out = append(out, store.Sort{Field: field, Desc: desc})
	}
	if out[len(out)-1].Field != "rid" {
		out = append(out, store.Sort{Field: "rid"})
	}
	return out, nil
}
