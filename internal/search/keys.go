// Package search implements FHIR search: the index entries extracted from a
// resource at write time, and the compilation of search parameters into
// store conditions over those entries. Client text only ever becomes
// values compared for equality or anchored, escaped prefixes: never a field
// name or an operator.
package search

import "strings"

// Entry formats. Every entry starts with the parameter's code, which has no
// '=', ':' or '|' (codes are checked when a parameter is registered):
//
//	token      code=system|value   (system may be empty: code=|value)
//	           code=system|        (any value in that system)
//	           code:value          (any system)
//	           code@of-type=system|code|value (an Identifier's type
//	           coding and value, for :of-type)
//	reference  code:Type/id, code@id (any type), code:url
//	           and the identifier as the token code@identifier
//	date       code|lo and code|hi, instants in instantLayout; open ends
//	           are minDate and maxDate
//	others     code:value (strings lowercased and without accents)
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

// ofTypeKey is the entry of an Identifier with value whose type has a
// coding system|code, which code:of-type=system|code|value matches.
func ofTypeKey(code, system, typeCode, value string) string {
	return code + "@of-type=" + system + "|" + typeCode + "|" + value
}

// tokenQuery is the entry a token search value matches: system|code,
// |code, system| or code.
func tokenQuery(code string, system *string, value string) string {
	if system == nil {
		return code + ":" + value
	}
	return code + "=" + *system + "|" + value
}

// splitUnescaped splits s at sep where sep is not escaped with a backslash.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape undoes the search escapes \, \| \$ and \\.
func unescape(s string) string {
	return strings.NewReplacer(`\,`, ",", `\|`, "|", `\$`, "$", `\\`, `\`).Replace(s)
}
