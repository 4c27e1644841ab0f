package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/golden"
)

// TestOfficialExamples loads the official R4 examples once for two
// checks: the round trip of each example, then the exact answers of the
// search acceptance cases over them (search_exact_test.go).
func TestOfficialExamples(t *testing.T) {
	t.Parallel() // long, on its own database: uses the second CPU while the rest run
	e := newEnv(t)
	before := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	roundTripExamples(t, e)
	if rejected := loadExamples(e, exactExtra); len(rejected) > 0 {
		t.Fatalf("extra examples rejected: %v", rejected)
	}
	runExact(t, e, exampleCases(before))
}

// roundTripExamples stores every official R4 example under its own id and
// reads it back: semantically identical, every number lexeme
// byte-identical, meta set by the server. Examples the server rejects must
// be rejected with a 4xx OperationOutcome naming the element.
func roundTripExamples(t *testing.T, e *env) {
	type tally struct{ stored, rejected int }
	byType := map[string]*tally{}
	var rejected []string
	for _, ex := range readExamples(t, officialExamples) {
		f, body := ex.file, ex.body
		n := byType[ex.typ]
		if n == nil {
			n = &tally{}
			byType[ex.typ] = n
		}
		path := "/fhir/" + ex.typ + "/" + ex.id
		r := e.do("PUT", path, string(body), "Prefer", "return=minimal")
		if r.status >= 400 {
			n.rejected++
			expr := r.expression(t)
			rejected = append(rejected, fmt.Sprintf("%s: %d at %s", filepath.Base(f), r.status, expr))
			if r.status >= 500 || expr == "" {
				t.Errorf("%s: rejected with %d and no expression: %s", f, r.status, r.body)
			}
			continue
		}
		n.stored++
		back := e.get(path)
		if back.status != http.StatusOK {
			t.Errorf("%s: read back %d", f, back.status)
			continue
		}
		if diff := cmp.Diff(withoutServerMeta(t, body), withoutServerMeta(t, back.body)); diff != "" {
			t.Errorf("%s changed in the round trip (-sent +read):\n%s", f, diff)
		}
		if want, got := numbers(t, body), numbers(t, back.body); !cmp.Equal(want, got) {
			t.Errorf("%s: number lexemes changed:\n%s", f, cmp.Diff(want, got))
		}
	}
	types := make([]string, 0, len(byType))
	for typ := range byType {
		types = append(types, typ)
	}
	sort.Strings(types)
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %7s %8s\n", "type", "stored", "rejected")
	total := tally{}
	for _, typ := range types {
		fmt.Fprintf(&table, "%-28s %7d %8d\n", typ, byType[typ].stored, byType[typ].rejected)
		total.stored += byType[typ].stored
		total.rejected += byType[typ].rejected
	}
	fmt.Fprintf(&table, "%-28s %7d %8d\n", "all", total.stored, total.rejected)
	fmt.Fprintf(&table, "\nrejected:\n  %s\n", strings.Join(rejected, "\n  "))
	t.Logf("official R4 examples through the REST API:\n%s", table.String())
	golden.Check(t, "testdata/official-examples.golden", table.String())
}

const officialExamples = "../../testdata/r4-examples/*.json"

// example is one example resource file with its type and id.
type example struct {
	file    string
	body    []byte
	typ, id string
}

// readExamples reads the resource files matching pattern.
func readExamples(t *testing.T, pattern string) []example {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples match %s: %v", pattern, err)
	}
	out := make([]example, 0, len(files))
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal(body, &head); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, example{file: f, body: body, typ: head.ResourceType, id: head.ID})
	}
	return out
}

// withoutServerMeta decodes a resource and drops what the server sets.
func withoutServerMeta(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	return m
}

// numbers lists the number lexemes of a JSON document in order.
func numbers(t *testing.T, b []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out []string
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if n, ok := tok.(json.Number); ok {
			out = append(out, string(n))
		}
	}
	return out
}
