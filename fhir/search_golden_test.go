package fhir

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func tok(system, code, display string) IndexValue {
	return IndexValue{System: system, Code: code, Display: display}
}

func ref(ref, typ, id string) IndexValue { return IndexValue{Ref: ref, RefType: typ, RefID: id} }

func str(s string) IndexValue { return IndexValue{Str: s} }

func qty(num string, lo, hi float64, unit, system, code string) IndexValue {
	return IndexValue{Num: num, NumLo: lo, NumHi: hi, Unit: unit, System: system, Code: code}
}

func parts(ps ...IndexValue) IndexValue { return IndexValue{Parts: ps} }

const (
	loinc  = "http://loinc.org"
	snomed = "http://snomed.info/sct"
	ucum   = "http://unitsofmeasure.org"
)

// TestSearchValuesGolden checks the values of some parameters over
// official examples.
func TestSearchValuesGolden(t *testing.T) {
	bpSys := []IndexValue{
		tok(loinc, "8480-6", "Systolic blood pressure"),
		tok(snomed, "271649006", "Systolic blood pressure"),
		tok("http://acme.org/devices/clinical-codes", "bp-s", "Systolic Blood pressure"),
	}
	bpDia := tok(loinc, "8462-4", "Diastolic blood pressure")
	q107 := qty("107", 106.5, 107.5, "mmHg", ucum, "mm[Hg]")
	q60 := qty("60", 59.5, 60.5, "mmHg", ucum, "mm[Hg]")
	weightCodes := []IndexValue{
		tok(loinc, "29463-7", "Body Weight"),
		tok(loinc, "3141-9", "Body weight Measured"),
		tok(snomed, "27113001", "Body weight"),
		tok("http://acme.org/devices/clinical-codes", "body-weight", "Body Weight"),
	}
	tests := []struct {
		file, code string
		want       []IndexValue
	}{
		{"Observation-example.json", "code", weightCodes},
		{"Observation-example.json", "subject", []IndexValue{ref("Patient/example", "Patient", "example")}},
		{"Observation-example.json", "patient", []IndexValue{ref("Patient/example", "Patient", "example")}},
		{"Observation-example.json", "date", []IndexValue{{Lo: day(2016, 3, 28), Hi: day(2016, 3, 29)}}},
		{"Observation-example.json", "value-quantity", []IndexValue{qty("185", 184.5, 185.5, "lbs", ucum, "[lb_av]")}},
		{"Observation-example.json", "_id", []IndexValue{tok("", "example", "")}},
		{"Observation-blood-pressure.json", "combo-code", []IndexValue{
			tok(loinc, "85354-9", "Blood pressure panel with all children optional"),
			{Display: "Blood pressure systolic & diastolic"},
			bpSys[0], bpSys[1], bpSys[2], bpDia,
		}},
		{"Observation-blood-pressure.json", "component-code-value-quantity", []IndexValue{
			parts(bpSys[0], q107), parts(bpSys[1], q107), parts(bpSys[2], q107), parts(bpDia, q60),
		}},
		{"Observation-blood-pressure.json", "value-quantity", nil},
		{"Observation-blood-pressure.json", "component-value-quantity", []IndexValue{q107, q60}},
		{"Patient-example.json", "name", []IndexValue{
			str("Chalmers"), str("Peter"), str("James"), str("Jim"), str("Windsor"), str("Peter"), str("James"),
		}},
		{"Patient-example.json", "family", []IndexValue{str("Chalmers"), str("Windsor")}},
		{"Patient-example.json", "birthdate", []IndexValue{{Lo: day(1974, 12, 25), Hi: day(1974, 12, 26)}}},
		{"Patient-example.json", "identifier", []IndexValue{{System: "urn:oid:1.2.36.146.595.217.0.1", Code: "12345",
			TypeCodings: []IndexValue{tok("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "")}}}},
		{"Patient-example.json", "gender", []IndexValue{tok("", "male", "")}},
		{"Patient-example.json", "address-city", []IndexValue{str("PleasantVille")}},
		{"Patient-example.json", "address", []IndexValue{
			str("534 Erewhon St PeasantVille, Rainbow, Vic  3999"), str("534 Erewhon St"), str("PleasantVille"),
			str("Rainbow"), str("Vic"), str("3999"),
		}},
		{"Patient-example.json", "deceased", []IndexValue{tok("", "false", "")}},
		{"Patient-example.json", "phone", []IndexValue{tok("", "(03) 5555 6473", ""), tok("", "(03) 3410 5613", ""), tok("", "(03) 5555 8834", "")}},
		{"Patient-example.json", "organization", []IndexValue{ref("Organization/1", "Organization", "1")}},
		{"MedicationRequest-medrx0302.json", "medication", []IndexValue{{Ref: "#med0320"}}},
		{"MedicationRequest-medrx0302.json", "code", nil},
		{"MedicationRequest-medrx0308.json", "code", []IndexValue{tok("http://www.nlm.nih.gov/research/umls/rxnorm", "856907", "Vicodin 5/500 Oral Tablet")}},
		{"MedicationRequest-medrx0308.json", "authoredon", []IndexValue{{Lo: day(2015, 1, 15), Hi: day(2015, 1, 16)}}},
		{"MedicationRequest-medrx0308.json", "subject", []IndexValue{ref("Patient/pat1", "Patient", "pat1")}},
		{"Encounter-f203.json", "date", []IndexValue{{Lo: day(2013, 3, 11), Hi: day(2013, 3, 21)}}},
		{"Encounter-f203.json", "class", []IndexValue{tok("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP", "inpatient encounter")}},
		{"Encounter-f203.json", "patient", []IndexValue{ref("Patient/f201", "Patient", "f201")}},
		{"EpisodeOfCare-example.json", "status", []IndexValue{tok("", "active", "")}},
		{"EpisodeOfCare-example.json", "patient", []IndexValue{ref("Patient/example", "Patient", "example")}},
		{"EpisodeOfCare-example.json", "date", []IndexValue{{Lo: day(2014, 9, 1)}}},
		{"EpisodeOfCare-example.json", "care-manager", []IndexValue{ref("Practitioner/14", "Practitioner", "14")}},
	}
	for _, tc := range tests {
		t.Run(tc.file+"/"+tc.code, func(t *testing.T) {
			r := loadExample(t, tc.file)
			p := builtins.Lookup(r.Type(), tc.code)
			if p == nil {
				t.Fatalf("no parameter %s of %s", tc.code, r.Type())
			}
			if diff := cmp.Diff(tc.want, r.SearchValues(p)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", p.Expression, diff)
			}
		})
	}
}

// TestSearchValuesSynthetic covers the value kinds and FHIRPath features
// the official examples above do not.
func TestSearchValuesSynthetic(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name, body, code string
		want             []IndexValue
	}{
		{"absolute and versioned references", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"subject":{"reference":"http://example.org/fhir/Patient/p1/_history/2"},
			"performer":[{"reference":"urn:uuid:8d3e1b2c-0000-4000-8000-000000000001"},{"identifier":{"system":"urn:s","value":"v"}},{"reference":"Practitioner/x","identifier":{"system":"urn:s","value":"w"}}]}`,
			"performer", []IndexValue{
				{Ref: "urn:uuid:8d3e1b2c-0000-4000-8000-000000000001"},
				{System: "urn:s", Code: "v"},
				{Ref: "Practitioner/x", RefType: "Practitioner", RefID: "x", System: "urn:s", Code: "w"},
			}},
		{"resolve() is Patient on an absolute URL", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"subject":{"reference":"http://example.org/fhir/Patient/p1/_history/2"}}`,
			"patient", []IndexValue{ref("http://example.org/fhir/Patient/p1/_history/2", "Patient", "p1")}},
		{"resolve() is Patient on a Group", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"subject":{"reference":"Group/g"}}`, "patient", nil},
		{"resolve() of a contained resource", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"contained":[{"resourceType":"Patient","id":"p"}],"subject":{"reference":"#p"}}`,
			"patient", []IndexValue{{Ref: "#p"}}},
		{"period choice, dateTime precision and zone", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"effectivePeriod":{"start":"2021-03-04T10:00:00+02:00","end":"2021-03-04T11:30:00.25Z"}}`,
			"date", []IndexValue{{Lo: time.Date(2021, 3, 4, 8, 0, 0, 0, time.UTC), Hi: time.Date(2021, 3, 4, 11, 30, 0, 260e6, time.UTC)}}},
		{"year precision", `{"resourceType":"Patient","birthDate":"2021"}`, "birthdate",
			[]IndexValue{{Lo: day(2021, 1, 1), Hi: day(2022, 1, 1)}}},
		{"month precision", `{"resourceType":"Patient","birthDate":"2020-02"}`, "birthdate",
			[]IndexValue{{Lo: day(2020, 2, 1), Hi: day(2020, 3, 1)}}},
		{"timing events", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"effectiveTiming":{"event":["2020-05-02","2020-05-01T10:00:00Z"]}}`,
			"date", []IndexValue{{Lo: time.Date(2020, 5, 1, 10, 0, 0, 0, time.UTC), Hi: day(2020, 5, 3)}}},
		{"decimal precision", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"valueQuantity":{"value":1.50,"unit":"mg"}}`, "value-quantity", []IndexValue{qty("1.50", 1.495, 1.505, "mg", "", "")}},
		{"exponent precision", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"valueQuantity":{"value":1.5e2}}`, "value-quantity", []IndexValue{qty("1.5e2", 145, 155, "", "", "")}},
		{"range", `{"resourceType":"Condition","subject":{"reference":"Patient/p"},
			"onsetRange":{"low":{"value":10,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}}`,
			"onset-age", []IndexValue{{NumLo: 9.5, NumHi: inf, Unit: "a", System: ucum, Code: "a"}}},
		{"age is a Quantity", `{"resourceType":"Condition","subject":{"reference":"Patient/p"},
			"onsetAge":{"value":3,"code":"a","system":"http://unitsofmeasure.org"}}`,
			"onset-age", []IndexValue{qty("3", 2.5, 3.5, "", ucum, "a")}},
		{"codeable concept text and identifier type", `{"resourceType":"Patient",
			"identifier":[{"type":{"text":"MRN"},"system":"urn:x","value":"1"}],"maritalStatus":{"text":"single"}}`,
			"identifier", []IndexValue{tok("urn:x", "1", "MRN")}},
		{"boolean token", `{"resourceType":"Patient","active":true}`, "active", []IndexValue{tok("", "true", "")}},
		{"deceased dateTime", `{"resourceType":"Patient","deceasedDateTime":"2020"}`, "deceased", []IndexValue{tok("", "true", "")}},
		{"no deceased", `{"resourceType":"Patient"}`, "deceased", []IndexValue{tok("", "false", "")}},
		{"meta", `{"resourceType":"Patient","meta":{"lastUpdated":"2024-01-02T03:04:05.678Z","tag":[{"system":"urn:t","code":"a"}],
			"profile":["http://example.org/p"],"source":"urn:src"}}`,
			"_lastUpdated", []IndexValue{{Lo: time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC), Hi: time.Date(2024, 1, 2, 3, 4, 5, 679e6, time.UTC)}}},
		{"_tag", `{"resourceType":"Patient","meta":{"tag":[{"system":"urn:t","code":"a"}]}}`, "_tag", []IndexValue{tok("urn:t", "a", "")}},
		{"_profile", `{"resourceType":"Patient","meta":{"profile":["http://example.org/p"]}}`, "_profile", []IndexValue{str("http://example.org/p")}},
		{"canonical reference", `{"resourceType":"QuestionnaireResponse","status":"completed",
			"questionnaire":"http://example.org/fhir/Questionnaire/q1|2"}`,
			"questionnaire", []IndexValue{ref("http://example.org/fhir/Questionnaire/q1|2", "Questionnaire", "q1")}},
		{"bundle composition", `{"resourceType":"Bundle","type":"document",
			"entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Composition","id":"c1","status":"final","type":{"text":"t"},"date":"2020","author":[{"display":"a"}],"title":"t"}}]}`,
			"composition", []IndexValue{ref("Composition/c1", "Composition", "c1")}},
		{"where on a child: telecom email", `{"resourceType":"Patient","telecom":[{"system":"phone","value":"1"},{"system":"email","value":"a@b"}]}`,
			"email", []IndexValue{tok("", "a@b", "")}},
		{"where(type=...) on relatedArtifact", `{"resourceType":"PlanDefinition","status":"draft",
			"relatedArtifact":[{"type":"depends-on","resource":"http://x/Library/l1"},{"type":"citation","resource":"http://x/Library/l2"}]}`,
			"depends-on", []IndexValue{ref("http://x/Library/l1", "Library", "l1")}},
		{"composite with %resource", `{"resourceType":"MolecularSequence","coordinateSystem":0,
			"referenceSeq":{"chromosome":{"coding":[{"system":"urn:c","code":"1"}]}},
			"variant":[{"start":22125500,"end":22125510}]}`,
			"chromosome-variant-coordinate", []IndexValue{parts(tok("urn:c", "1", ""), qty("22125500", 22125499.5, 22125500.5, "", "", ""), qty("22125510", 22125509.5, 22125510.5, "", "", ""))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResource([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			p := builtins.Lookup(r.Type(), tc.code)
			if p == nil {
				t.Fatalf("no parameter %s of %s", tc.code, r.Type())
			}
			if diff := cmp.Diff(tc.want, r.SearchValues(p)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", p.Expression, diff)
			}
		})
	}
}

func TestSearchParamsAPI(t *testing.T) {
	ps := builtins.SearchParams("Observation")
	if len(ps) == 0 {
		t.Fatal("no Observation parameters")
	}
	for i := 1; i < len(ps); i++ {
		if ps[i-1].Code >= ps[i].Code {
			t.Errorf("not sorted: %s, %s", ps[i-1].Code, ps[i].Code)
		}
	}
	for _, code := range []string{"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} {
		for _, rt := range []string{"Observation", "Patient", "Bundle", "Binary"} {
			if builtins.Lookup(rt, code) == nil {
				t.Errorf("%s has no %s", rt, code)
			}
		}
	}
	if p := builtins.Lookup("Patient", "_text"); p != nil {
		t.Errorf("_text is supported: %+v", p)
	}
	if builtins.Lookup("Location", "near") != nil || builtins.Lookup("Nope", "_id") != nil || builtins.SearchParams("Nope") != nil {
		t.Error("unsupported or unknown parameters are returned")
	}
	// A multi-base parameter keeps only its base's branch.
	if p := builtins.Lookup("Condition", "code"); p == nil || p.Expression != "Condition.code" {
		t.Errorf("Condition code: %+v", p)
	}
	p := builtins.Lookup("Observation", "component-code-value-quantity")
	want := []SearchComponent{{Code: "component-code", Expression: "code"}, {Code: "component-value-quantity", Expression: "value.as(Quantity)"}}
	if diff := cmp.Diff(want, p.Components, cmp.Comparer(func(a, b SearchComponent) bool {
		return a.Code == b.Code && a.Expression == b.Expression
	})); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if p := builtins.Lookup("Observation", "subject"); p == nil || p.Type != "reference" || len(p.Targets) == 0 {
		t.Errorf("Observation subject: %+v", p)
	}
}

func TestFHIRPathCompileErrors(t *testing.T) {
	for _, src := range []string{
		"Observation.code.memberOf('x')", "Observation.value > 3", "Observation.", "(Observation.code",
		"Observation.code[x]", "'abc", "Observation.extension(url)",
	} {
		if _, err := compileFHIRPath(src); err == nil {
			t.Errorf("%s: compiled", src)
		}
	}
	m := model()
	for _, src := range []string{"Observation.foo", "Observation.value as Foo", "Observation.code.where(foo='x')"} {
		n, err := compileFHIRPath(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fpCheck(m, n, nil, []string{"Observation"}, "Observation"); err == nil {
			t.Errorf("%s: checked", src)
		}
	}
}

func TestSearchParamTargets(t *testing.T) {
	tests := []struct {
		typ, code string
		want      []string
	}{
		{"Observation", "patient", []string{"Patient"}},
		{"AllergyIntolerance", "patient", []string{"Patient"}},
		{"Observation", "subject", []string{"Device", "Group", "Location", "Patient"}},
		{"Observation", "encounter", []string{"Encounter"}},
		{"Composition", "encounter", []string{"Encounter"}},
		{"Observation", "performer", []string{"CareTeam", "Organization", "Patient", "Practitioner", "PractitionerRole", "RelatedPerson"}},
	}
	for _, tc := range tests {
		p := builtins.Lookup(tc.typ, tc.code)
		if p == nil {
			t.Errorf("%s %s: nil", tc.typ, tc.code)
			continue
		}
		if diff := cmp.Diff(tc.want, p.Targets); diff != "" {
			t.Errorf("%s %s targets (-want +got):\n%s", tc.typ, tc.code, diff)
		}
	}
}

// TestCompositeBound checks that one element's cross product is bounded.
func TestCompositeBound(t *testing.T) {
	var codings []string
	for i := range 20 {
		codings = append(codings, fmt.Sprintf(`{"system":"urn:s","code":"c%d"}`, i))
	}
	cc := `{"coding":[` + strings.Join(codings, ",") + `]}`
	body := `{"resourceType":"Observation","status":"final","code":` + cc + `,"valueCodeableConcept":` + cc + `}`
	r, err := ParseResource([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	vals := r.SearchValues(builtins.Lookup("Observation", "code-value-concept"))
	if len(vals) != maxCompositeValues {
		t.Errorf("%d values, want %d", len(vals), maxCompositeValues)
	}
}

func BenchmarkSearchValuesObservation(b *testing.B) {
	r := loadExample(b, "Observation-blood-pressure.json")
	ps := builtins.SearchParams("Observation")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = 0
		for _, p := range ps {
			n += len(r.SearchValues(p))
		}
	}
	b.ReportMetric(float64(len(ps)), "params")
	b.ReportMetric(float64(n), "values")
}

func BenchmarkLoadSearchParams(b *testing.B) {
	m := model()
	for b.Loop() {
		if _, err := loadSearchParams(m, searchParamsJSON); err != nil {
			b.Fatal(err)
		}
	}
}
