package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// knownInvalid are the official examples that really break the R4 rules,
// with the expression of the first issue.
var knownInvalid = map[string]string{
	// Questionnaire.item.linkId is 1..1; the nested items of qs1 lack it.
	"Questionnaire-qs1.json": "Questionnaire.item[0].item[0].linkId",
	// Reference target types (also rejected by google/fhir/go jsonformat):
	// Observation.performer may not refer to an Encounter,
	// MedicationRequest.dispenseRequest.performer only to an Organization.
	"Observation-clinical-gender.json": "Observation.performer[0].reference",
	"MedicationRequest-medrx0301.json": "MedicationRequest.dispenseRequest.performer.reference",
}

// TestOfficialExamples parses every R4 example: accepted ones must come back
// semantically identical with byte-identical numbers; rejected ones must be
// listed in knownInvalid.
func TestOfficialExamples(t *testing.T) {
	files, err := filepath.Glob("../testdata/r4-examples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	type counts struct{ accepted, rejected int }
	byType := map[string]*counts{}
	var rejections []string
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ResourceType string }
		if err := json.Unmarshal(body, &head); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c := byType[head.ResourceType]
		if c == nil {
			c = &counts{}
			byType[head.ResourceType] = c
		}
		name := filepath.Base(f)
		r, err := ParseResource(body)
		if err != nil {
			c.rejected++
			var fe *fault.Error
			if !errors.As(err, &fe) || len(fe.Issues) == 0 || len(fe.Issues[0].Expression) == 0 {
				t.Errorf("%s: error without expression: %v", name, err)
				continue
			}
			first := fe.Issues[0]
			rejections = append(rejections, fmt.Sprintf("%s: %d issue(s), first at %s: %s", name, len(fe.Issues), first.Expression[0], first.Diagnostics))
			if want, ok := knownInvalid[name]; !ok || want != first.Expression[0] {
				t.Errorf("%s rejected: %v", name, err)
			}
			continue
		}
		c.accepted++
		if _, ok := knownInvalid[name]; ok {
			t.Errorf("%s accepted, but is listed as invalid", name)
		}
		got := r.Bytes()
		if diff := cmp.Diff(decodeUseNumber(t, body), decodeUseNumber(t, got)); diff != "" {
			t.Errorf("%s: Bytes differs (-file +Bytes):\n%s", name, diff)
		}
		if diff := cmp.Diff(numberLexemes(t, body), numberLexemes(t, got)); diff != "" {
			t.Errorf("%s: number lexemes differ:\n%s", name, diff)
		}
	}
	types := make([]string, 0, len(byType))
	for typ := range byType {
		types = append(types, typ)
	}
	sort.Strings(types)
	var tab strings.Builder
	total := counts{}
	fmt.Fprintf(&tab, "%-36s %8s %8s\n", "type", "accepted", "rejected")
	for _, typ := range types {
		c := byType[typ]
		fmt.Fprintf(&tab, "%-36s %8d %8d\n", typ, c.accepted, c.rejected)
		total.accepted += c.accepted
		total.rejected += c.rejected
	}
	fmt.Fprintf(&tab, "%-36s %8d %8d\n", "total", total.accepted, total.rejected)
	t.Logf("official examples:\n%s", tab.String())
	for _, r := range rejections {
		t.Logf("rejected %s", r)
	}
}

func decodeUseNumber(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// numberLexemes lists the number tokens of b in order, as written.
func numberLexemes(t *testing.T, b []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := tok.(json.Number); ok {
			out = append(out, string(n))
		}
	}
}
