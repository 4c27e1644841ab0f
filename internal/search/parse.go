package search

import (
	"net/url"
	"sort"
	"strings"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Criteria are parsed search parameters: the store conditions they compile
// to, and a canonical text (parameters sorted) that names them.
type Criteria struct {
	Type      string
	Conds     []store.Cond
	Canonical string
}

// ParseCriteria parses the query of a conditional interaction on typ.
func ParseCriteria(typ, query string) (*Criteria, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fault.New(fault.Invalid, "", "the criteria are not a valid query string: %v", err)
	}
	c := &Criteria{Type: typ}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	var canon []string
	for _, name := range names {
		if name != "identifier" {
			return nil, fault.New(fault.Invalid, "", "conditional criteria support only the identifier parameter, not %q", name)
		}
		for _, v := range q[name] {
			cond, err := tokenCond(name, v)
			if err != nil {
				return nil, err
			}
			c.Conds = append(c.Conds, cond)
			canon = append(canon, url.QueryEscape(name)+"="+url.QueryEscape(v))
		}
	}
	if len(c.Conds) == 0 {
		return nil, fault.New(fault.Invalid, "", "conditional criteria need at least one parameter")
	}
	sort.Strings(canon)
	c.Canonical = typ + "?" + strings.Join(canon, "&")
	return c, nil
}

// tokenCond compiles one token parameter value: OR over commas, each
// system|code, |code, system| or code.
func tokenCond(code, value string) (store.Cond, error) {
	var in []string
	for _, alt := range splitUnescaped(value, ',') {
		parts := splitUnescaped(alt, '|')
		switch {
		case len(parts) == 1 && parts[0] != "":
			in = append(in, tokenQuery(code, nil, unescape(parts[0])))
		case len(parts) == 2 && (parts[0] != "" || parts[1] != ""):
			sys := unescape(parts[0])
			in = append(in, tokenQuery(code, &sys, unescape(parts[1])))
		default:
			return store.Cond{}, fault.New(fault.Invalid, "", "%s value %q is not system|code, |code, system| or code", code, alt)
		}
	}
	return store.Cond{Field: "tok", In: in}, nil
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

func unescape(s string) string {
	return strings.NewReplacer(`\,`, ",", `\|`, "|", `\$`, "$", `\\`, `\`).Replace(s)
}
