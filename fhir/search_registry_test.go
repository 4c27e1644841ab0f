package fhir

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// TestSearchRegistry loads the embedded registry, logs the unsupported
// parameters and the supported/total counts per parameter type, and checks
// that at least 95% of the parameters that are not special by design are
// supported.
func TestSearchRegistry(t *testing.T) {
	reg := searchRegistryGet()
	type count struct{ supported, total int }
	byType := map[string]*count{}
	bump := func(typ string, ok bool) {
		c := byType[typ]
		if c == nil {
			c = &count{}
			byType[typ] = c
		}
		c.total++
		if ok {
			c.supported++
		}
	}
	var f struct {
		Params []paramFile `json:"params"`
	}
	mustUnmarshal(t, searchParamsJSON, &f)
	unsupported := map[string]unsupportedParam{}
	for _, u := range reg.unsupported {
		unsupported[u.Base+"."+u.Code] = u
	}
	for _, p := range f.Params {
		_, bad := unsupported[p.Base+"."+p.Code]
		bump(p.Type, !bad)
	}
	var lines []string
	for _, u := range reg.unsupported {
		lines = append(lines, u.Base+"."+u.Code+" ("+u.Type+"): "+u.Reason)
	}
	sort.Strings(lines)
	t.Logf("unsupported search parameters (%d):\n%s", len(lines), strings.Join(lines, "\n"))
	var types []string
	for typ := range byType {
		types = append(types, typ)
	}
	sort.Strings(types)
	supported, total := 0, 0
	for _, typ := range types {
		c := byType[typ]
		t.Logf("%-10s %4d of %4d supported", typ, c.supported, c.total)
		if typ == "special" {
			continue
		}
		supported += c.supported
		total += c.total
	}
	t.Logf("all but special: %d of %d supported (%.1f%%)", supported, total, 100*float64(supported)/float64(total))
	if supported*100 < total*95 {
		t.Errorf("only %d of %d parameters supported", supported, total)
	}
	if reg.total != len(f.Params) {
		t.Errorf("total %d, want %d", reg.total, len(f.Params))
	}
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}
