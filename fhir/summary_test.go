package fhir

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/golden"
)

// stored parses body as the server would store it.
func stored(t *testing.T, body string) []byte {
	t.Helper()
	r, err := ParseResource([]byte(body))
	if err != nil {
		t.Fatalf("ParseResource: %v", err)
	}
	return r.Bytes()
}

func apply(t *testing.T, s Subset, raw []byte) string {
	t.Helper()
	out, err := s.Apply(raw)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", s, err)
	}
	return string(out)
}

const subsettedTag = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`

func TestSubsetApply(t *testing.T) {
	const pat = `{"resourceType":"Patient","id":"p","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.678Z","profile":["http://x/p"]},` +
		`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},` +
		`"extension":[{"url":"http://x/e","valueDecimal":1.50}],"active":true,"_active":{"extension":[{"url":"http://x/a","valueDecimal":2.0}]},` +
		`"name":[{"family":"Doe","_family":{"extension":[{"url":"http://x/f","valueString":"y"}]}}],` +
		`"deceasedDateTime":"2020","maritalStatus":{"text":"M"},` +
		`"link":[{"id":"l1","other":{"reference":"Patient/q"},"type":"seealso","extension":[{"url":"http://x/l","valueInteger":1}]}],` +
		`"communication":[{"language":{"text":"en"}}]}`
	const obs = `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"bp"},"valueQuantity":{"value":120.00,"unit":"mm"},` +
		`"note":[{"text":"n"}],"component":[{"code":{"text":"s"},"valueQuantity":{"value":1.0e2},"interpretation":[{"text":"H"}]},` +
		`{"code":{"text":"d"},"referenceRange":[{"text":"r"}]}]}`
	const tagged = `{"resourceType":"Basic","id":"b","meta":{"tag":[` + subsettedTag + `]},"code":{"text":"c"},"text":{"status":"empty","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`
	const metaLess = `{"resourceType":"Basic","id":"b","code":{"text":"c"},"author":{"reference":"Patient/p"}}`
	meta := `"meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.678Z","profile":["http://x/p"],"tag":[` + subsettedTag + `]}`
	tests := []struct {
		name string
		in   string
		s    Subset
		want string
	}{
		{"true keeps summary elements whole, their _field and typed choices", pat, Subset{Summary: SummaryTrue},
			`{"resourceType":"Patient","id":"p",` + meta + `,"active":true,"_active":{"extension":[{"url":"http://x/a","valueDecimal":2.0}]},` +
				`"name":[{"family":"Doe","_family":{"extension":[{"url":"http://x/f","valueString":"y"}]}}],"deceasedDateTime":"2020",` +
				`"link":[{"other":{"reference":"Patient/q"},"type":"seealso"}]}`},
		{"true filters backbone elements and keeps their mandatory elements", obs, Subset{Summary: SummaryTrue},
			`{"resourceType":"Observation","id":"o","meta":{"tag":[` + subsettedTag + `]},"status":"final","code":{"text":"bp"},"valueQuantity":{"value":120.00,"unit":"mm"},` +
				`"component":[{"code":{"text":"s"},"valueQuantity":{"value":1.0e2}},{"code":{"text":"d"}}]}`},
		{"text keeps text and mandatory top-level elements", obs, Subset{Summary: SummaryText},
			`{"resourceType":"Observation","id":"o","meta":{"tag":[` + subsettedTag + `]},"status":"final","code":{"text":"bp"}}`},
		{"data drops text only", pat, Subset{Summary: SummaryData},
			`{"resourceType":"Patient","id":"p",` + meta + `,"extension":[{"url":"http://x/e","valueDecimal":1.50}],"active":true,"_active":{"extension":[{"url":"http://x/a","valueDecimal":2.0}]},` +
				`"name":[{"family":"Doe","_family":{"extension":[{"url":"http://x/f","valueString":"y"}]}}],` +
				`"deceasedDateTime":"2020","maritalStatus":{"text":"M"},` +
				`"link":[{"id":"l1","other":{"reference":"Patient/q"},"type":"seealso","extension":[{"url":"http://x/l","valueInteger":1}]}],` +
				`"communication":[{"language":{"text":"en"}}]}`},
		{"data without text is whole and untagged", obs, Subset{Summary: SummaryData}, obs},
		{"elements by choice base name, with _field", pat, Subset{Elements: []string{"deceased", "active"}},
			`{"resourceType":"Patient","id":"p",` + meta + `,"active":true,"_active":{"extension":[{"url":"http://x/a","valueDecimal":2.0}]},"deceasedDateTime":"2020"}`},
		{"elements keep mandatory ones", obs, Subset{Elements: []string{"note"}},
			`{"resourceType":"Observation","id":"o","meta":{"tag":[` + subsettedTag + `]},"status":"final","code":{"text":"bp"},"note":[{"text":"n"}]}`},
		{"elements naming everything present change nothing", obs, Subset{Elements: []string{"value", "note", "component"}}, obs},
		{"an existing SUBSETTED tag is not repeated", tagged, Subset{Summary: SummaryData},
			`{"resourceType":"Basic","id":"b","meta":{"tag":[` + subsettedTag + `]},"code":{"text":"c"}}`},
		{"a resource without meta gets one after id", metaLess, Subset{Summary: SummaryText},
			`{"resourceType":"Basic","id":"b","meta":{"tag":[` + subsettedTag + `]},"code":{"text":"c"}}`},
		{"whole", pat, Subset{}, pat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := stored(t, tt.in)
			got := apply(t, tt.s, raw)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := ParseResource([]byte(got)); err != nil {
				t.Errorf("the subset is not a valid resource: %v", err)
			}
		})
	}
}

func TestElementNames(t *testing.T) {
	tests := []struct {
		typ, list string
		want      []string
		bad       string // diagnostics of the fault, "" for none
	}{
		{"Patient", "name,deceased,_id", []string{"name", "deceased"}, `_elements: Patient has no element "_id"`},
		{"Patient", "name, birthDate", []string{"name", "birthDate"}, ""},
		{"Observation", "value,component", []string{"value", "component"}, ""},
		// Choice elements go by their base name only.
		{"Observation", "valueQuantity,bogus", nil, `_elements: Observation has no element "valueQuantity", "bogus"`},
		{"Patient", "name.family,", nil, `_elements: Patient has no element "name.family", ""`},
	}
	for _, tt := range tests {
		got, err := ElementNames(tt.typ, tt.list)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ElementNames(%s, %q) (-want +got):\n%s", tt.typ, tt.list, diff)
		}
		if tt.bad == "" {
			if err != nil {
				t.Errorf("ElementNames(%s, %q): %v", tt.typ, tt.list, err)
			}
			continue
		}
		fe := fault.As(err)
		if err == nil || fe.Kind != fault.Invalid || fe.Issues[0].Diagnostics != tt.bad || cmp.Diff([]string{"_elements"}, fe.Issues[0].Expression) != "" {
			t.Errorf("ElementNames(%s, %q) = %v, want Invalid at _elements: %s", tt.typ, tt.list, err, tt.bad)
		}
	}
}

// TestSummaryCoversModel checks that summary.json describes exactly the
// resource types of the model, and that its names are elements of them.
func TestSummaryCoversModel(t *testing.T) {
	var f summaryFile
	if err := json.Unmarshal(summaryJSON, &f); err != nil {
		t.Fatal(err)
	}
	var types []string
	for typ, st := range f.Types {
		types = append(types, typ)
		td := model().resources[typ]
		if td == nil {
			continue
		}
		for _, p := range append(st.Summary, st.Mandatory...) {
			if !strings.Contains(p, ".") && td.elems[p] == nil {
				t.Errorf("%s.%s is not an element of the model", typ, p)
			}
		}
	}
	sort.Strings(types)
	if diff := cmp.Diff(ResourceTypes(), types); diff != "" {
		t.Errorf("summary.json types (-model +summary):\n%s", diff)
	}
	if len(summaries()) != len(types) {
		t.Errorf("loaded %d types, want %d", len(summaries()), len(types))
	}
}

// summaryModes are the subsets the golden files and the examples test run.
var summaryModes = []struct {
	name string
	s    Subset
}{
	{"_summary=true", Subset{Summary: SummaryTrue}},
	{"_summary=text", Subset{Summary: SummaryText}},
	{"_summary=data", Subset{Summary: SummaryData}},
	{"_elements=identifier,value", Subset{Elements: []string{"identifier", "value"}}},
}

// TestSubsetGolden subsets official examples (a _field extension, backbone
// elements, contained resources, decimals) in every mode; the golden files
// hold the outputs indented, which keeps number lexemes.
func TestSubsetGolden(t *testing.T) {
	for _, name := range []string{"Patient-example", "Observation-blood-pressure", "Observation-10minute-apgar-score", "CarePlan-example"} {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("..", "testdata", "r4-examples", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			raw := stored(t, string(body))
			var out bytes.Buffer
			for _, m := range summaryModes {
				got := apply(t, m.s, raw)
				out.WriteString("## " + m.name + "\n")
				if err := json.Indent(&out, []byte(got), "", "  "); err != nil {
					t.Fatal(err)
				}
				out.WriteString("\n")
			}
			golden.Check(t, filepath.Join("testdata", "summary", name+".golden"), out.String())
		})
	}
}

// TestSubsetExamplesStayValid subsets every accepted official example in
// every mode: the result must be accepted by this package and by
// google/fhir/go, be tagged when it lost content, and not change
// when subsetted again.
func TestSubsetExamplesStayValid(t *testing.T) {
	files, err := filepath.Glob("../testdata/r4-examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseResource(body)
		if err != nil {
			continue // TestOfficialExamples accounts for the rejected ones
		}
		raw := r.Bytes()
		for _, m := range summaryModes {
			got := apply(t, m.s, raw)
			where := filepath.Base(f) + " " + m.name
			if _, err := ParseResource([]byte(got)); err != nil {
				t.Errorf("%s: invalid subset: %v", where, err)
			}
			if _, err := u.UnmarshalR4([]byte(got)); err != nil {
				t.Errorf("%s: google/fhir/go rejects the subset: %v", where, err)
			}
			if !strings.Contains(got, `"code":"SUBSETTED"`) && got != string(raw) {
				t.Errorf("%s: not tagged, but not the whole resource", where)
			}
			if again := apply(t, m.s, []byte(got)); again != got {
				t.Errorf("%s: subsetting again changes it:\n%s\n%s", where, got, again)
			}
		}
	}
}
