package mappings

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/golden"
)

func newMapper(t *testing.T) *Mapper {
	t.Helper()
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var googleFHIR = func() *jsonformat.Unmarshaller {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		panic(err)
	}
	return u
}()

// kapCase maps one KAP type both ways; labels come from the case's program.
type kapCase struct {
	to   func(m *Mapper, in []byte, l Labels) ([]Resource, error)
	back func(m *Mapper, rs []Resource) (any, bool)
	// typ is the KAP type, to decode inputs for the comparison.
	typ func() any
}

func mapping[T any](to func(*Mapper, T, Labels) ([]Resource, error), back func(*Mapper, []Resource) (T, bool)) kapCase {
	return kapCase{
		to: func(m *Mapper, in []byte, l Labels) ([]Resource, error) {
			var v T
			if err := strictDecode(in, &v); err != nil {
				return nil, err
			}
			return to(m, v, l)
		},
		back: func(m *Mapper, rs []Resource) (any, bool) {
			v, ok := back(m, rs)
			return &v, ok
		},
		typ: func() any { return new(T) },
	}
}

func strictDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// cases are keyed by the prefix of the testdata files: kap/<type>-*.json.
func cases() map[string]kapCase {
	return map[string]kapCase{
		"client":         mapping(func(m *Mapper, v Client, _ Labels) ([]Resource, error) { return m.ClientToFHIR(v) }, (*Mapper).ClientFromFHIR),
		"team":           mapping(func(m *Mapper, v TeamMember, _ Labels) ([]Resource, error) { return m.TeamMemberToFHIR(v) }, (*Mapper).TeamMemberFromFHIR),
		"escort":         mapping((*Mapper).EscortToFHIR, (*Mapper).EscortFromFHIR),
		"program":        mapping(func(m *Mapper, v Program, _ Labels) ([]Resource, error) { return m.ProgramToFHIR(v) }, (*Mapper).ProgramFromFHIR),
		"session":        mapping((*Mapper).SessionToFHIR, (*Mapper).SessionFromFHIR),
		"measurement":    mapping((*Mapper).MeasurementToFHIR, (*Mapper).MeasurementFromFHIR),
		"prescription":   mapping((*Mapper).PrescriptionToFHIR, (*Mapper).PrescriptionFromFHIR),
		"administration": mapping((*Mapper).AdministrationToFHIR, (*Mapper).AdministrationFromFHIR),
		"consent":        mapping((*Mapper).ConsentToFHIR, (*Mapper).ConsentFromFHIR),
		"intention":      mapping((*Mapper).IntentionToFHIR, (*Mapper).IntentionFromFHIR),
	}
}

func caseOf(t *testing.T, file string) (kapCase, Labels) {
	t.Helper()
	name := strings.TrimSuffix(filepath.Base(file), ".json")
	c, ok := cases()[strings.Split(name, "-")[0]]
	if !ok {
		t.Fatalf("%s: no mapping for this file name prefix", file)
	}
	// A -sud case is part of a program with a substance-use indication.
	return c, Labels{SubstanceUse: strings.Contains(name, "-sud")}
}

func render(rs []Resource) string {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, r := range rs {
		var ind bytes.Buffer
		if err := json.Indent(&ind, r.JSON, "  ", "  "); err != nil {
			panic(err)
		}
		b.WriteString("  ")
		b.Write(ind.Bytes())
		if i < len(rs)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	return b.String()
}

func checkValid(t *testing.T, rs []Resource) {
	t.Helper()
	for _, r := range rs {
		if _, err := googleFHIR.Unmarshal(r.JSON); err != nil {
			t.Errorf("%s: google/fhir rejects it: %v\n%s", r.Ref(), err, r.JSON)
		}
		if _, err := fhir.ParseResource(r.JSON); err != nil {
			t.Errorf("%s: fhir.ParseResource rejects it: %v\n%s", r.Ref(), err, r.JSON)
		}
		var head struct {
			ResourceType, ID string
		}
		if err := json.Unmarshal(r.JSON, &head); err != nil || head.ResourceType != r.Type || head.ID != r.ID {
			t.Errorf("%s: resourceType/id in the JSON are %q/%q", r.Ref(), head.ResourceType, head.ID)
		}
	}
}

// TestGolden: every kap/*.json input maps to the golden FHIR resources
// (kap/*.fhir.golden), which validate, and reads back to the input.
func TestGolden(t *testing.T) {
	m := newMapper(t)
	files, _ := filepath.Glob("testdata/kap/*.json")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, l := caseOf(t, f)
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := c.to(m, in, l)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(f, ".json")+".fhir.golden", render(rs))
			checkValid(t, rs)
			got, ok := c.back(m, rs)
			if !ok {
				t.Fatal("the emitted resources do not read back")
			}
			want := c.typ()
			if err := strictDecode(in, want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("KAP → FHIR → KAP differs from the input (-input +read):\n%s", diff)
			}
		})
	}
}

// TestForeign: resources written by others through the FHIR API read into
// the clinic view (foreign/*.json → foreign/*.kap.golden).
func TestForeign(t *testing.T) {
	m := newMapper(t)
	files, _ := filepath.Glob("testdata/foreign/*.json")
	if len(files) == 0 {
		t.Fatal("no foreign inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, _ := caseOf(t, f)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var raws []json.RawMessage
			if err := json.Unmarshal(b, &raws); err != nil {
				t.Fatal(err)
			}
			var rs []Resource
			for _, r := range raws {
				var head struct{ ResourceType, ID string }
				if err := json.Unmarshal(r, &head); err != nil {
					t.Fatal(err)
				}
				rs = append(rs, Resource{Type: head.ResourceType, ID: head.ID, JSON: r})
			}
			checkValid(t, rs)
			got, ok := c.back(m, rs)
			out := "does not fit the KAP model\n"
			if ok {
				j, err := json.MarshalIndent(got, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				out = string(j) + "\n"
			}
			golden.Check(t, strings.TrimSuffix(f, ".json")+".kap.golden", out)
		})
	}
}
