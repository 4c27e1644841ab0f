package search

import (
	"bufio"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// FuzzParseSearch parses a raw query string against the registry as the HTTP
// layer does (a type search strict and lenient, a system search, the
// criteria of a conditional write): it never panics, an error is a 4xx
// fault, and a parsed search sorts only by fields the store accepts.
func FuzzParseSearch(f *testing.F) {
	file, err := os.Open("testdata/fuzz-queries.txt")
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		if typ, query, ok := strings.Cut(lines.Text(), "\t"); ok && !strings.HasPrefix(typ, "#") {
			f.Add(typ, query)
		}
	}
	f.Fuzz(func(t *testing.T, typ, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return // the HTTP server's query parsing refuses it first
		}
		check := func(what string, r *Request, err error) {
			t.Helper()
			if err != nil {
				if s := fault.Status(err); s < 400 || s >= 500 {
					t.Fatalf("%s: status %d: %v", what, s, err)
				}
				return
			}
			for _, s := range r.Sort {
				if s.Field == "" || strings.ContainsAny(strings.TrimPrefix(strings.TrimPrefix(s.Field, "sa."), "sd."), ".$") {
					t.Fatalf("%s: sort field %q", what, s.Field)
				}
			}
			checkConds(t, what, r.Conds)
		}
		if fhir.IsResourceType(typ) {
			for _, lenient := range []bool{false, true} {
				r, err := Parse(builtins, typ, cloneQuery(q), lenient)
				check("Parse", r, err)
			}
			r, err := ParseCriteria(builtins, typ, query)
			check("ParseCriteria", r, err)
		}
		r, err := ParseSystem(builtins, cloneQuery(q), false)
		check("ParseSystem", r, err)
	})
}

// checkConds fails on a condition with no field or a field that client
// text could have named (only the fixed entry and meta fields exist).
func checkConds(t *testing.T, what string, conds []store.Cond) {
	t.Helper()
	for _, c := range conds {
		if c.Field != "" && strings.ContainsAny(c.Field, ".$") {
			t.Fatalf("%s: condition field %q", what, c.Field)
		}
		checkConds(t, what, c.Or)
		checkConds(t, what, c.And)
	}
}

func cloneQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
