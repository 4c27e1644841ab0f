// Package search implements FHIR search: the index entries extracted from a
// resource at write time, and the compilation of search parameters into
// store conditions over those entries. Client text only ever becomes
// values compared for equality or anchored, escaped prefixes: never a field
// name or an operator.
package search

import (
	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Entry formats. Every entry starts with the parameter's code, which has no
// '=', ':' or '|' (codes are checked when a parameter is registered):
//
//	token   code=system|value   (system may be empty: code=|value)
//	        code=system|        (any value in that system)
//	        code:value          (any system)
//	others  code:value
func tokenKeys(code, system, value string) []string {
	var keys []string
	if value != "" {
		keys = append(keys, code+":"+value, code+"="+system+"|"+value)
	}
	if system != "" {
		keys = append(keys, code+"="+system+"|")
	}
	return keys
}

// tokenQuery is the entry a token search value matches: system|code,
// |code, system| or code.
func tokenQuery(code string, system *string, value string) string {
	if system == nil {
		return code + ":" + value
	}
	return code + "=" + *system + "|" + value
}

// Index computes the index entries of a resource.
func Index(res *fhir.Resource) *store.Index {
	ix := &store.Index{}
	for _, id := range res.Identifiers() {
		ix.Token = append(ix.Token, tokenKeys("identifier", id.System, id.Value)...)
	}
	if len(ix.Token) > 0 {
		ix.Has = []string{"identifier"}
	}
	return ix
}
