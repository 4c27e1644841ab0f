package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
)

const obs = `{"resourceType":"Observation","status":"final","code":{"text":"x"}`

func TestParseResourceRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		kind fault.Kind
		code string
		expr string // of the first issue; "" for none
	}{
		{"syntax", `{"resourceType":"Patient",}`, fault.Invalid, codeStructure, ""},
		{"not an object", `[1]`, fault.Invalid, codeStructure, ""},
		{"trailing data", `{"resourceType":"Patient"} {}`, fault.Invalid, codeStructure, ""},
		{"duplicate key", `{"resourceType":"Patient","active":true,"active":false}`, fault.Invalid, codeStructure, ""},
		{"lone surrogate", `{"resourceType":"Patient","id":"\ud800"}`, fault.Invalid, codeStructure, ""},
		{"missing resourceType", `{"id":"a"}`, fault.Invalid, codeStructure, "resourceType"},
		{"unknown resourceType", `{"resourceType":"Patientx"}`, fault.Invalid, codeValue, "resourceType"},
		{"resourceType not a string", `{"resourceType":1}`, fault.Invalid, codeValue, "resourceType"},
		{"unknown element", `{"resourceType":"Patient","foo":1}`, fault.Invalid, codeStructure, "Patient.foo"},
		{"unknown element deep", `{"resourceType":"Patient","name":[{"given":["a"]},{"family":"b","period":{"start":"2020","bogus":true}}]}`, fault.Invalid, codeStructure, "Patient.name[1].period.bogus"},
		{"null", `{"resourceType":"Patient","active":null}`, fault.Invalid, codeStructure, "Patient.active"},
		{"null in array without extension", `{"resourceType":"Patient","name":[{"given":["a",null]}]}`, fault.Invalid, codeStructure, "Patient.name[0].given[1]"},
		{"empty object", `{"resourceType":"Patient","maritalStatus":{}}`, fault.Invalid, codeStructure, "Patient.maritalStatus"},
		{"empty array", `{"resourceType":"Patient","name":[]}`, fault.Invalid, codeStructure, "Patient.name"},
		{"empty string", `{"resourceType":"Patient","name":[{"family":""}]}`, fault.Invalid, codeValue, "Patient.name[0].family"},
		{"array for single", `{"resourceType":"Patient","gender":["male"]}`, fault.Invalid, codeStructure, "Patient.gender"},
		{"single for array", `{"resourceType":"Patient","name":{"family":"x"}}`, fault.Invalid, codeStructure, "Patient.name"},
		{"decimal as string", obs + `,"valueQuantity":{"value":"1.5"}}`, fault.Invalid, codeStructure, "Observation.valueQuantity.value"},
		{"decimal out of range", obs + `,"valueQuantity":{"value":1e400}}`, fault.Invalid, codeValue, "Observation.valueQuantity.value"},
		{"boolean as string", `{"resourceType":"Patient","active":"true"}`, fault.Invalid, codeStructure, "Patient.active"},
		{"string as number", `{"resourceType":"Patient","name":[{"family":1}]}`, fault.Invalid, codeStructure, "Patient.name[0].family"},
		{"integer with fraction", obs + `,"valueInteger":1.0}`, fault.Invalid, codeValue, "Observation.valueInteger"},
		{"integer out of range", obs + `,"valueInteger":2147483648}`, fault.Invalid, codeValue, "Observation.valueInteger"},
		{"positiveInt zero", `{"resourceType":"Patient","multipleBirthInteger":1,"contact":[{"name":{"text":"x"},"period":{"start":"2020"}}],"photo":[{"size":-1}]}`, fault.Invalid, codeValue, "Patient.photo[0].size"},
		{"date Feb 30", `{"resourceType":"Patient","birthDate":"2021-02-30"}`, fault.Invalid, codeValue, "Patient.birthDate"},
		{"dateTime Feb 29 non leap", obs + `,"effectiveDateTime":"2021-02-29T10:00:00Z"}`, fault.Invalid, codeValue, "Observation.effectiveDateTime"},
		{"dateTime without zone", obs + `,"effectiveDateTime":"2021-02-01T10:00:00"}`, fault.Invalid, codeValue, "Observation.effectiveDateTime"},
		{"instant partial", obs + `,"issued":"2021-02-01"}`, fault.Invalid, codeValue, "Observation.issued"},
		{"bad id", `{"resourceType":"Patient","id":"a b"}`, fault.Invalid, codeValue, "Patient.id"},
		{"id too long", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, fault.Invalid, codeValue, "Patient.id"},
		{"uri with space", `{"resourceType":"Patient","identifier":[{"system":"http://a b"}]}`, fault.Invalid, codeValue, "Patient.identifier[0].system"},
		{"unknown code", `{"resourceType":"Patient","gender":"mail"}`, fault.Invalid, codeInvalid, "Patient.gender"},
		{"code with double space", `{"resourceType":"Patient","maritalStatus":{"coding":[{"code":"a  b"}]}}`, fault.Invalid, codeValue, "Patient.maritalStatus.coding[0].code"},
		{"xhtml not a div", `{"resourceType":"Patient","text":{"status":"generated","div":"<p>x</p>"}}`, fault.Invalid, codeValue, "Patient.text.div"},
		{"_given on complex", `{"resourceType":"Patient","_name":[{"id":"x"}]}`, fault.Invalid, codeStructure, "Patient._name"},
		{"_given not an array", `{"resourceType":"Patient","name":[{"given":["a"],"_given":{"id":"x"}}]}`, fault.Invalid, codeStructure, "Patient.name[0]._given"},
		{"_given length mismatch", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[{"id":"x"}]}]}`, fault.Invalid, codeStructure, "Patient.name[0]._given"},
		{"_given unknown element", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null,{"foo":"x"}]}]}`, fault.Invalid, codeStructure, "Patient.name[0].given[1].foo"},
		{"null on both sides", `{"resourceType":"Patient","name":[{"given":["a",null],"_given":[{"id":"x"},null]}]}`, fault.Invalid, codeStructure, "Patient.name[0].given[1]"},
		{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, fault.Unprocessable, codeRequired, "Patient.extension[0].url"},
		{"extension two values", `{"resourceType":"Patient","extension":[{"url":"http://e","valueString":"x","valueBoolean":true}]}`, fault.Unprocessable, codeInvariant, "Patient.extension[0].valueBoolean"},
		{"missing status", `{"resourceType":"Observation","code":{"text":"x"}}`, fault.Unprocessable, codeRequired, "Observation.status"},
		{"missing required choice", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`, fault.Unprocessable, codeRequired, "MedicationRequest.medication[x]"},
		{"choice conflict", obs + `,"valueString":"a","valueQuantity":{"value":1}}`, fault.Unprocessable, codeInvariant, "Observation.valueQuantity"},
		{"choice conflict via extension", obs + `,"valueString":"a","_valueBoolean":{"id":"x"}}`, fault.Unprocessable, codeInvariant, "Observation._valueBoolean"},
		{"bad reference", obs + `,"subject":{"reference":"Patient"}}`, fault.Unprocessable, codeValue, "Observation.subject.reference"},
		{"reference to unknown type", obs + `,"subject":{"reference":"Patientx/1"}}`, fault.Unprocessable, codeValue, "Observation.subject.reference"},
		{"reference with bad id", obs + `,"subject":{"reference":"Patient/a_b"}}`, fault.Unprocessable, codeValue, "Observation.subject.reference"},
		{"reference target type", obs + `,"performer":[{"reference":"Practitioner/1"},{"reference":"Encounter/example"}]}`, fault.Unprocessable, codeValue, "Observation.performer[1].reference"},
		{"reference target type with version", obs + `,"subject":{"reference":"Encounter/1/_history/2"}}`, fault.Unprocessable, codeValue, "Observation.subject.reference"},
		{"reference target type in URL", obs + `,"performer":[{"reference":"https://example.org/fhir/Encounter/1/_history/2"}]}`, fault.Unprocessable, codeValue, "Observation.performer[0].reference"},
		{"reference target type contained", obs + `,"contained":[{"resourceType":"Encounter","id":"e","status":"planned","class":{"code":"x"}}],"subject":{"reference":"#e"}}`, fault.Unprocessable, codeValue, "Observation.subject.reference"},
		{"reference target type container", `{"resourceType":"Encounter","status":"planned","class":{"code":"x"},"contained":[{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"subject":{"reference":"#"}}]}`, fault.Unprocessable, codeValue, "Encounter.contained[0].subject.reference"},
		{"reference target type backbone", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"dispenseRequest":{"performer":{"reference":"Practitioner/f001"}}}`, fault.Unprocessable, codeValue, "MedicationRequest.dispenseRequest.performer.reference"},
		{"reference target type choice", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationReference":{"reference":"Substance/1"},"subject":{"reference":"Patient/1"}}`, fault.Unprocessable, codeValue, "MedicationRequest.medicationReference.reference"},
		{"reference target type data type", `{"resourceType":"Patient","identifier":[{"value":"1","assigner":{"reference":"Patient/1"}}]}`, fault.Unprocessable, codeValue, "Patient.identifier[0].assigner.reference"},
		{"reference type element", obs + `,"subject":{"type":"Encounter","display":"x"}}`, fault.Unprocessable, codeValue, "Observation.subject.type"},
		{"reference type element URL", obs + `,"subject":{"reference":"Patient/1","type":"http://hl7.org/fhir/StructureDefinition/Encounter"}}`, fault.Unprocessable, codeValue, "Observation.subject.type"},
		{"reference target type in bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p"}],"subject":{"reference":"#p"},"performer":[{"reference":"#p"},{"reference":"#"}]}}]}`, fault.Unprocessable, codeValue, "Bundle.entry[0].resource.performer[1].reference"},
		{"contained unknown element", `{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"cod":1}]}`, fault.Invalid, codeStructure, "Patient.contained[0].cod"},
		{"contained missing status", `{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o","code":{"text":"x"}}]}`, fault.Unprocessable, codeRequired, "Patient.contained[0].status"},
		{"contained in contained", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Patient","id":"q"}]}]}`, fault.Unprocessable, codeInvariant, "Patient.contained[0].contained"},
		{"contained without id", `{"resourceType":"Patient","contained":[{"resourceType":"Patient","active":true}]}`, fault.Unprocessable, codeRequired, "Patient.contained[0].id"},
		{"contained without type", `{"resourceType":"Patient","contained":[{"id":"p"}]}`, fault.Invalid, codeStructure, "Patient.contained[0].resourceType"},
		{"bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:2f7e3c2a-8c0e-4c4f-9b56-0c3f1d7c1a11","resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Observation","code":{"text":"x"},"status":"done"}}]}`, fault.Invalid, codeInvalid, "Bundle.entry[2].resource.status"},
		{"parameters resource", `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","gender":"x"}}]}`, fault.Invalid, codeInvalid, "Parameters.parameter[0].resource.gender"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResource([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %s", r.Bytes())
			}
			var fe *fault.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *fault.Error: %v", err, err)
			}
			first := fe.Issues[0]
			expr := ""
			if len(first.Expression) > 0 {
				expr = first.Expression[0]
			}
			got := []any{fe.Kind, first.Code, expr}
			want := []any{tc.kind, tc.code, tc.expr}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("kind, code, expression (-want +got):\n%s\nerror: %v", diff, err)
			}
			if first.Diagnostics == "" {
				t.Error("no diagnostics")
			}
		})
	}
}

func TestParseResourceReportsAllIssues(t *testing.T) {
	_, err := ParseResource([]byte(`{"resourceType":"Observation","foo":1,"code":{"text":""},"subject":{"reference":"x"}}`))
	var got []string
	for _, is := range fault.As(err).Issues {
		got = append(got, is.Code+" "+is.Expression[0])
	}
	want := []string{
		"structure Observation.foo",
		"value Observation.code.text",
		"value Observation.subject.reference",
		"required Observation.status",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("issues (-want +got):\n%s", diff)
	}
	if !fault.Is(err, fault.Invalid) {
		t.Errorf("kind = %v, want Invalid when any issue is Invalid", fault.As(err).Kind)
	}
	var many strings.Builder
	many.WriteString(`{"resourceType":"Patient"`)
	for i := range 300 {
		many.WriteString(`,"x` + strings.Repeat("y", i) + `":1`)
	}
	many.WriteString("}")
	_, err = ParseResource([]byte(many.String()))
	if n := len(fault.As(err).Issues); n != maxIssues {
		t.Errorf("%d issues, want the cap %d", n, maxIssues)
	}
}

var goodInputs = []string{
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50},"_status":{"extension":[{"url":"http://e","valueDecimal":0.000}]},"contained":[{"resourceType":"Patient","id":"p1","name":[{"given":["A",null,"C"],"_given":[null,{"extension":[{"url":"http://e","valueString":"B"}]},null]}]}],"subject":{"reference":"#p1"}}`,
	`{"resourceType":"Patient","id":"x.1-a","meta":{"profile":["http://p"],"_versionId":{"id":"v"}},"active":true,"multipleBirthInteger":-0,"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">a &amp; <b>b</b> é \"q\" \\ \n</div>"},"birthDate":"2000-02-29","name":[{"family":"O'Brien","given":["<script>"]}],"photo":[{"size":0,"data":"AAEC\nAw=="}],"identifier":[{"system":"urn:oid:1.2.3","value":"1"},{"value":"2"}]}`,
	`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:2f7e3c2a-8c0e-4c4f-9b56-0c3f1d7c1a11","resource":{"resourceType":"Patient","active":false},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:2f7e3c2a-8c0e-4c4f-9b56-0c3f1d7c1a11"},"valueQuantity":{"value":1e-7}},"request":{"method":"PUT","url":"Observation/1"}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1/_history/2"},"performer":[{"reference":"https://example.org/fhir/Practitioner/1"},{"reference":"Patient/p","type":"Patient"},{"reference":"urn:uuid:2f7e3c2a-8c0e-4c4f-9b56-0c3f1d7c1a11"},{"type":"http://example.org/StructureDefinition/Doctor","identifier":{"value":"1"}}],"hasMember":[{"reference":"#"}],"focus":[{"reference":"Encounter/1"}],"effectiveDateTime":"2020-01-01T23:59:60.123+14:00","valueTime":"10:00:00"}`,
}

func TestRoundTrip(t *testing.T) {
	for _, in := range goodInputs {
		r, err := ParseResource([]byte(in))
		if err != nil {
			t.Errorf("rejected %s: %v", in, err)
			continue
		}
		if got := string(r.Bytes()); got != in {
			t.Errorf("Bytes:\n got %s\nwant %s", got, in)
		}
		// Indented input comes back compact.
		var ind bytes.Buffer
		if err := json.Indent(&ind, []byte(in), "", "  "); err != nil {
			t.Fatal(err)
		}
		r, err = ParseResource(ind.Bytes())
		if err != nil {
			t.Fatalf("indented: %v", err)
		}
		if got := string(r.Bytes()); got != in {
			t.Errorf("Bytes of indented input:\n got %s\nwant %s", got, in)
		}
	}
}

func TestSetIDAndMeta(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 33, 41, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name, in, want string
	}{
		{
			"new id and meta",
			`{"resourceType":"Patient","active":true}`,
			`{"resourceType":"Patient","id":"new","meta":{"versionId":"2","lastUpdated":"2026-11-25T18:33:41.123Z"},"active":true}`,
		},
		{
			"replace id, keep meta content",
			`{"active":true,"resourceType":"Patient","id":"old","meta":{"extension":[{"url":"http://e","valueDecimal":1.0}],"lastUpdated":"2000-01-01T00:00:00Z","_versionId":{"id":"v"},"profile":["http://p"],"versionId":"1","tag":[{"code":"t"}]},"text":{"status":"empty","div":"<div/>"}}`,
			`{"active":true,"resourceType":"Patient","id":"new","meta":{"extension":[{"url":"http://e","valueDecimal":1.0}],"lastUpdated":"2026-11-25T18:33:41.123Z","_versionId":{"id":"v"},"profile":["http://p"],"versionId":"2","tag":[{"code":"t"}]},"text":{"status":"empty","div":"<div/>"}}`,
		},
		{
			"meta without version fields",
			`{"resourceType":"Patient","meta":{"id":"m","extension":[{"url":"http://e","valueString":"s"}],"profile":["http://p"]},"active":true}`,
			`{"resourceType":"Patient","id":"new","meta":{"id":"m","extension":[{"url":"http://e","valueString":"s"}],"versionId":"2","lastUpdated":"2026-11-25T18:33:41.123Z","profile":["http://p"]},"active":true}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResource([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			r.SetID("new")
			r.SetMeta("2", at)
			if got := string(r.Bytes()); got != tc.want {
				t.Errorf("Bytes:\n got %s\nwant %s", got, tc.want)
			}
			if r.ID() != "new" || r.Type() != "Patient" {
				t.Errorf("ID, Type = %q, %q", r.ID(), r.Type())
			}
			if _, err := ParseResource(r.Bytes()); err != nil {
				t.Errorf("result does not parse: %v", err)
			}
		})
	}
}

func TestIdentifiers(t *testing.T) {
	r, err := ParseResource([]byte(goodInputs[1]))
	if err != nil {
		t.Fatal(err)
	}
	want := []Identifier{{System: "urn:oid:1.2.3", Value: "1"}, {Value: "2"}}
	if diff := cmp.Diff(want, r.Identifiers()); diff != "" {
		t.Errorf("Identifiers (-want +got):\n%s", diff)
	}
	if r.ID() != "x.1-a" {
		t.Errorf("ID = %q", r.ID())
	}
	r, err = ParseResource([]byte(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != "" || r.Identifiers() != nil {
		t.Errorf("ID, Identifiers = %q, %v for a bare resource", r.ID(), r.Identifiers())
	}
}

func TestResourceTypes(t *testing.T) {
	types := ResourceTypes()
	if len(types) != 146 {
		t.Errorf("%d resource types, want the 146 of R4", len(types))
	}
	if !sort.StringsAreSorted(types) {
		t.Error("not sorted")
	}
	for _, name := range []string{"Patient", "Observation", "Bundle", "Parameters", "OperationOutcome"} {
		if !IsResourceType(name) {
			t.Errorf("IsResourceType(%q) = false", name)
		}
	}
	for _, name := range []string{"", "patient", "Resource", "DomainResource", "HumanName", "Observation_Component"} {
		if IsResourceType(name) {
			t.Errorf("IsResourceType(%q) = true", name)
		}
	}
}

// TestChoiceGroups checks the derived choice groups against the spec.
func TestChoiceGroups(t *testing.T) {
	m := model()
	group := func(typ, prefix string) []string {
		var names []string
		for _, e := range m.types[typ].elems {
			if e.choice == prefix {
				names = append(names, e.name)
			}
		}
		sort.Strings(names)
		return names
	}
	tests := []struct {
		typ, prefix string
		want        []string
	}{
		{"Observation", "value", []string{"valueBoolean", "valueCodeableConcept", "valueDateTime", "valueInteger", "valuePeriod", "valueQuantity", "valueRange", "valueRatio", "valueSampledData", "valueString", "valueTime"}},
		{"Observation", "effective", []string{"effectiveDateTime", "effectiveInstant", "effectivePeriod", "effectiveTiming"}},
		{"Observation_Component", "value", []string{"valueBoolean", "valueCodeableConcept", "valueDateTime", "valueInteger", "valuePeriod", "valueQuantity", "valueRange", "valueRatio", "valueSampledData", "valueString", "valueTime"}},
		{"MedicationRequest", "medication", []string{"medicationCodeableConcept", "medicationReference"}},
		{"Patient", "deceased", []string{"deceasedBoolean", "deceasedDateTime"}},
		{"Patient", "multipleBirth", []string{"multipleBirthBoolean", "multipleBirthInteger"}},
		// Look-alikes that are separate elements.
		{"CarePlan_Activity", "outcome", nil},
		{"PaymentReconciliation", "payment", nil},
		{"Task", "instantiates", nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, group(tc.typ, tc.prefix)); diff != "" {
			t.Errorf("%s.%s[x] (-want +got):\n%s", tc.typ, tc.prefix, diff)
		}
	}
	ext := group("Extension", "value")
	if len(ext) != 50 {
		t.Errorf("Extension.value[x] has %d types, want 50: %v", len(ext), ext)
	}
	// Every element of a group has the group's prefix and is single.
	for _, td := range m.types {
		for _, e := range td.elems {
			if e.choice != "" && (e.array || !strings.HasPrefix(e.name, e.choice)) {
				t.Errorf("%s.%s in choice %s", td.name, e.name, e.choice)
			}
		}
	}
}

func TestRequired(t *testing.T) {
	m := model()
	for _, c := range []struct {
		typ, elem string
		want      bool
	}{
		{"Observation", "status", true}, // samply: json tag without omitempty
		{"Observation", "code", true},   // schema required list
		{"Observation", "subject", false},
		{"Extension", "url", true},
		{"Narrative", "div", true},
		{"Observation_Component", "code", true},
		{"Patient", "name", false},
	} {
		if got := m.types[c.typ].elems[c.elem].required; got != c.want {
			t.Errorf("%s.%s required = %v, want %v", c.typ, c.elem, got, c.want)
		}
	}
}

// TestHandCheckedPatterns compares checkString with the schema's patterns
// for the primitives it checks without a regexp.
func TestHandCheckedPatterns(t *testing.T) {
	m := model()
	values := []string{"a", "a b", " a", "a ", "a  b", "a\tb", "a\fb", "\f", "a\nb", "\n", "é", "A-1.b", "a_b",
		"http://x", "http://x y", strings.Repeat("a", 64), strings.Repeat("a", 65), "a\vb", "<div>"}
	for _, name := range []string{"string", "markdown", "uri", "url", "canonical", "code", "id"} {
		re := regexp.MustCompile(m.patterns[name])
		for _, s := range values {
			want := re.MatchString(s)
			if got := checkString(m.primitives[name], s) == ""; got != want {
				t.Errorf("%s %q: checkString ok = %v, pattern %v", name, s, got, want)
			}
		}
	}
}

func TestModelIsGenerated(t *testing.T) {
	// The model must stay small enough to embed without thought.
	fi, err := os.Stat("model.json")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Errorf("model.json is %d bytes", fi.Size())
	}
}

func FuzzParseResource(f *testing.F) {
	for _, in := range goodInputs {
		f.Add([]byte(in))
	}
	for _, name := range []string{"Observation-example.json", "Patient-example.json"} {
		b, err := os.ReadFile("../testdata/r4-examples/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"x"}]}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseResource(in)
		if err != nil {
			var fe *fault.Error
			if !errors.As(err, &fe) || len(fe.Issues) == 0 {
				t.Fatalf("error without issues: %v", err)
			}
			return
		}
		out := r.Bytes()
		r2, err := ParseResource(out)
		if err != nil {
			t.Fatalf("Bytes %s does not re-parse: %v", out, err)
		}
		if out2 := r2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("Bytes not stable:\n%s\n%s", out, out2)
		}
	})
}

func BenchmarkParseResource(b *testing.B) {
	body, err := os.ReadFile("../testdata/r4-examples/Patient-example.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseResource(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReferenceTargets checks the generated targets of a few elements.
func TestReferenceTargets(t *testing.T) {
	m := model()
	for _, c := range []struct {
		typ, elem string
		want      []string
	}{
		{"Observation", "performer", []string{"Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"}},
		{"Observation", "subject", []string{"Patient", "Group", "Device", "Location"}},
		{"Observation", "focus", nil}, // Reference(Any)
		{"MedicationRequest_DispenseRequest", "performer", []string{"Organization"}},
		{"MedicationRequest", "medicationReference", []string{"Medication"}},
		{"Identifier", "assigner", []string{"Organization"}},
		{"Extension", "valueReference", nil},
		{"Bundle_Entry", "resource", nil},
	} {
		if diff := cmp.Diff(c.want, m.types[c.typ].elems[c.elem].targets); diff != "" {
			t.Errorf("%s.%s targets (-want +got):\n%s", c.typ, c.elem, diff)
		}
	}
	n := 0
	for _, td := range m.types {
		for _, e := range td.elems {
			if e.targets != nil {
				n++
			}
		}
	}
	if n < 600 {
		t.Errorf("%d elements with targets, want the R4 core's 650", n)
	}
}

// TestReferenceTargetsAgreeWithGoogle checks that the google/fhir/go R4
// parser, the source of the targets, rejects what the target check rejects.
func TestReferenceTargetsAgreeWithGoogle(t *testing.T) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		obs + `,"performer":[{"reference":"Encounter/example"}]}`,
		obs + `,"subject":{"reference":"Encounter/1/_history/2"}}`,
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"dispenseRequest":{"performer":{"reference":"Practitioner/f001"}}}`,
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationReference":{"reference":"Substance/1"},"subject":{"reference":"Patient/1"}}`,
		`{"resourceType":"Patient","identifier":[{"value":"1","assigner":{"reference":"Patient/1"}}]}`,
	} {
		if _, err := u.UnmarshalR4([]byte(in)); err == nil {
			t.Errorf("google/fhir/go accepts %s", in)
		}
		if _, err := ParseResource([]byte(in)); !fault.Is(err, fault.Unprocessable) {
			t.Errorf("ParseResource(%s) = %v, want Unprocessable", in, err)
		}
	}
	// And both accept the allowed types.
	ok := obs + `,"performer":[{"reference":"Practitioner/1"}],"subject":{"reference":"Group/1"},"focus":[{"reference":"Encounter/1"}]}`
	if _, err := u.UnmarshalR4([]byte(ok)); err != nil {
		t.Errorf("google/fhir/go rejects %s: %v", ok, err)
	}
	if _, err := ParseResource([]byte(ok)); err != nil {
		t.Errorf("ParseResource(%s): %v", ok, err)
	}
}
