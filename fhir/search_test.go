package fhir

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func loadExample(tb testing.TB, name string) *Resource {
	tb.Helper()
	body, err := os.ReadFile(filepath.Join("../testdata/r4-examples", name))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := ParseResource(body)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return r
}

// TestSearchValuesAllExamples evaluates every supported parameter over
// every accepted official example, checks the invariants of the values and
// reports counts per parameter type.
func TestSearchValuesAllExamples(t *testing.T) {
	files, err := filepath.Glob("../testdata/r4-examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	type count struct{ evaluated, nonEmpty, values int }
	byType := map[string]*count{}
	resources := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseResource(body)
		if err != nil {
			continue // the known invalid ones, see TestOfficialExamples
		}
		resources++
		for _, p := range builtins.SearchParams(r.Type()) {
			c := byType[p.Type]
			if c == nil {
				c = &count{}
				byType[p.Type] = c
			}
			vals := r.SearchValues(p)
			c.evaluated++
			c.values += len(vals)
			if len(vals) > 0 {
				c.nonEmpty++
			}
			for _, v := range vals {
				if msg := checkIndexValue(p.Type, p.Components, v); msg != "" {
					t.Errorf("%s %s.%s: %s: %+v", filepath.Base(f), r.Type(), p.Code, msg, v)
				}
			}
		}
	}
	var types []string
	for typ := range byType {
		types = append(types, typ)
	}
	sort.Strings(types)
	var tab strings.Builder
	fmt.Fprintf(&tab, "%d resources\n%-10s %9s %9s %7s\n", resources, "type", "evaluated", "non-empty", "values")
	for _, typ := range types {
		c := byType[typ]
		fmt.Fprintf(&tab, "%-10s %9d %9d %7d\n", typ, c.evaluated, c.nonEmpty, c.values)
	}
	t.Logf("search values over the official examples:\n%s", tab.String())
}

// checkIndexValue returns what is wrong with a value of a parameter type.
func checkIndexValue(typ string, comps []SearchComponent, v IndexValue) string {
	switch typ {
	case "token":
		if v.System == "" && v.Code == "" && v.Display == "" {
			return "empty token"
		}
	case "string", "uri":
		if v.Str == "" {
			return "empty string"
		}
	case "reference":
		if v.Ref == "" && v.Code == "" {
			return "empty reference"
		}
		if (v.RefType == "") != (v.RefID == "") {
			return "type without id"
		}
	case "date":
		if v.Lo.IsZero() && v.Hi.IsZero() {
			return "empty date"
		}
		if !v.Lo.IsZero() && !v.Hi.IsZero() && !v.Lo.Before(v.Hi) {
			return "empty date range"
		}
	case "number", "quantity":
		if math.IsNaN(v.NumLo) || math.IsNaN(v.NumHi) || !(v.NumLo < v.NumHi) {
			return "bad number range"
		}
	case "composite":
		if len(v.Parts) != len(comps) {
			return "wrong number of parts"
		}
		for i, p := range v.Parts {
			if msg := checkIndexValue(comps[i].typ, nil, p); msg != "" {
				return "part " + comps[i].Code + ": " + msg
			}
		}
	}
	return ""
}

func dumpJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
