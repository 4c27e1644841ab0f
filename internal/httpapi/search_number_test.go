package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const ucum = `"system":"http://unitsofmeasure.org"`

var numberFixtures = []struct{ path, body string }{
	// number: RiskAssessment probability (ra1 has two predictions)
	{"RiskAssessment/ra1", `{"resourceType":"RiskAssessment","id":"ra1","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":0.02},{"probabilityDecimal":0.5}]}`},
	{"RiskAssessment/ra2", `{"resourceType":"RiskAssessment","id":"ra2","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":0.25}]}`},
	{"RiskAssessment/ra3", `{"resourceType":"RiskAssessment","id":"ra3","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":1}]}`},
	{"RiskAssessment/ra4", `{"resourceType":"RiskAssessment","id":"ra4","status":"final","subject":{"reference":"Patient/p"}}`},
	// quantity
	{"Observation/q1", `{"resourceType":"Observation","id":"q1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueQuantity":{"value":5.4,"unit":"mg",` + ucum + `,"code":"mg"}}`},
	{"Observation/q2", `{"resourceType":"Observation","id":"q2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueQuantity":{"value":5.4,"unit":"g",` + ucum + `,"code":"g"}}`},
	{"Observation/q3", `{"resourceType":"Observation","id":"q3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"9999-9"}]},"valueQuantity":{"value":5.40,"unit":"milligram"}}`},
	{"Observation/q4", `{"resourceType":"Observation","id":"q4","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2951-2"}]},"valueQuantity":{"value":100,"unit":"mmol/L",` + ucum + `,"code":"mmol/L"}}`},
	// components: blood pressure 120/80
	{"Observation/bp", `{"resourceType":"Observation","id":"bp","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"component":[` +
		`{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mm[Hg]",` + ucum + `,"code":"mm[Hg]"}},` +
		`{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mm[Hg]",` + ucum + `,"code":"mm[Hg]"}}]}`},
	{"Observation/c1", `{"resourceType":"Observation","id":"c1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"449868002"}]}}`},
	{"Observation/cc", `{"resourceType":"Observation","id":"cc","status":"final","code":{"text":"panel"},"component":[` +
		`{"code":{"coding":[{"system":"urn:c","code":"c-a"}]},"valueCodeableConcept":{"coding":[{"system":"urn:v","code":"v1"}]}},` +
		`{"code":{"coding":[{"system":"urn:c","code":"c-b"}]},"valueCodeableConcept":{"coding":[{"system":"urn:v","code":"v2"}]}}]}`},
	{"Observation/s1", `{"resourceType":"Observation","id":"s1","status":"final","code":{"coding":[{"code":"x"}]},"valueString":"Positive result"}`},
	{"Observation/d1", `{"resourceType":"Observation","id":"d1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"11778-8"}]},"valueDateTime":"2021-06-15"}`},
	// quantity Ranges
	{"Condition/co1", `{"resourceType":"Condition","id":"co1","subject":{"reference":"Patient/p"},"onsetRange":{"low":{"value":5,"unit":"a",` + ucum + `,"code":"a"},"high":{"value":10,"unit":"a",` + ucum + `,"code":"a"}}}`},
	{"Condition/co2", `{"resourceType":"Condition","id":"co2","subject":{"reference":"Patient/p"},"onsetAge":{"value":7,"unit":"years",` + ucum + `,"code":"a"}}`},
}

func TestSearchNumbersQuantitiesComposites(t *testing.T) {
	e := newEnv(t)
	for _, f := range numberFixtures {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
	for _, tc := range []struct {
		typ, param, value string
		want              []string
	}{
		// number: the value's precision for eq/ne/sa/eb, the exact value for gt/ge/lt/le
		{"RiskAssessment", "probability", "0.5", []string{"ra1"}},
		{"RiskAssessment", "probability", "eq0.25", []string{"ra2"}},
		{"RiskAssessment", "probability", "0.250", []string{"ra2"}},
		{"RiskAssessment", "probability", "0.3", []string{"ra2"}}, // [0.25, 0.35)
		{"RiskAssessment", "probability", "0.4", nil},
		{"RiskAssessment", "probability", "ne0.25", []string{"ra1", "ra3"}},
		{"RiskAssessment", "probability", "gt0.25", []string{"ra1", "ra3"}},
		{"RiskAssessment", "probability", "ge0.25", []string{"ra1", "ra2", "ra3"}},
		{"RiskAssessment", "probability", "lt0.25", []string{"ra1"}},
		{"RiskAssessment", "probability", "le0.25", []string{"ra1", "ra2"}},
		{"RiskAssessment", "probability", "sa0.25", []string{"ra1", "ra3"}},
		{"RiskAssessment", "probability", "eb0.25", []string{"ra1"}},
		{"RiskAssessment", "probability", "eb0.02", nil},
		{"RiskAssessment", "probability", "ap1.0", []string{"ra3"}},
		{"RiskAssessment", "probability", "ap0.26", []string{"ra2"}},
		{"RiskAssessment", "probability", "1e0", []string{"ra1", "ra3"}}, // [0.5, 1.5)
		{"RiskAssessment", "probability", "0.02,1", []string{"ra1", "ra3"}},
		{"RiskAssessment", "probability:missing", "true", []string{"ra4"}},
		// quantity: number, number|system|code, number||unit-or-code; no unit conversion
		{"Observation", "value-quantity", "5.4", []string{"q1", "q2", "q3"}},
		{"Observation", "value-quantity", "5.4|http://unitsofmeasure.org|mg", []string{"q1"}},
		{"Observation", "value-quantity", "5.4||mg", []string{"q1"}},
		{"Observation", "value-quantity", "5.40||milligram", []string{"q3"}},
		{"Observation", "value-quantity", "5.4||", []string{"q1", "q2", "q3"}},
		{"Observation", "value-quantity", "5.40e-3|http://unitsofmeasure.org|g", nil},
		{"Observation", "value-quantity", "gt5|http://unitsofmeasure.org|mmol/L", []string{"q4"}},
		{"Observation", "value-quantity", "lt6", []string{"q1", "q2", "q3"}},
		{"Observation", "value-quantity", "ge100", []string{"q4"}},
		{"Observation", "value-quantity", "ap95", []string{"q4"}},
		{"Observation", "value-quantity", "ap80", nil},
		{"Observation", "component-value-quantity", "120", []string{"bp"}},
		{"Observation", "component-value-quantity", "100", nil}, // 80 and 120: each condition holds for one value
		{"Observation", "component-value-quantity", "gt100||mm[Hg]", []string{"bp"}},
		{"Observation", "combo-value-quantity", "ap100", []string{"q4"}},
		{"Observation", "combo-value-quantity", "gt110", []string{"bp"}},
		{"Condition", "onset-age", "7", []string{"co2"}},
		{"Condition", "onset-age", "7||years", []string{"co2"}},
		{"Condition", "onset-age", "lt5|http://unitsofmeasure.org|a", []string{"co1"}},
		{"Condition", "onset-age", "gt9|http://unitsofmeasure.org|a", []string{"co1"}},
		{"Condition", "onset-age", "ge6", []string{"co1", "co2"}},
		{"Condition", "onset-age", "sa7", nil},
		// composites: one entry per element, so the pairing is exact
		{"Observation", "code-value-quantity", "http://loinc.org|2345-7$5.4", []string{"q1", "q2"}},
		{"Observation", "code-value-quantity", "2345-7$5.4||mg", []string{"q1"}},
		{"Observation", "code-value-quantity", "http://loinc.org|$gt50", []string{"q4"}},
		{"Observation", "code-value-quantity", "9999-9$5.4||mg", nil},
		{"Observation", "code-value-quantity", "9999-9$5.4||milligram", []string{"q3"}},
		{"Observation", "code-value-quantity", "8480-6$120", nil},
		{"Observation", "component-code-value-quantity", "http://loinc.org|8480-6$gt100", []string{"bp"}},
		{"Observation", "component-code-value-quantity", "http://loinc.org|8462-4$gt100", nil},
		{"Observation", "component-code-value-quantity", "8462-4$lt100", []string{"bp"}},
		{"Observation", "component-code-value-quantity", "8480-6$lt100", nil},
		{"Observation", "component-code-value-quantity", "8480-6$120|http://unitsofmeasure.org|mm[Hg]", []string{"bp"}},
		{"Observation", "component-code-value-quantity", "8480-6$80,8462-4$80", []string{"bp"}},
		{"Observation", "combo-code-value-quantity", "8480-6$120", []string{"bp"}},
		{"Observation", "combo-code-value-quantity", "2345-7$5.4||mg", []string{"q1"}},
		{"Observation", "code-value-concept", "http://loinc.org|72166-2$http://snomed.info/sct|449868002", []string{"c1"}},
		{"Observation", "code-value-concept", "72166-2$449868002", []string{"c1"}},
		{"Observation", "code-value-concept", "72166-2$1234", nil},
		{"Observation", "combo-code-value-concept", "c-a$urn:v|v1", []string{"cc"}},
		{"Observation", "combo-code-value-concept", "c-a$urn:v|v2", nil},
		{"Observation", "combo-code-value-concept", "c-b$v2", []string{"cc"}},
		{"Observation", "combo-code-value-concept", "72166-2$449868002", []string{"c1"}},
		{"Observation", "component-code-value-concept", "urn:c|c-a$v1", []string{"cc"}},
		{"Observation", "component-code-value-concept", "72166-2$449868002", nil},
		{"Observation", "code-value-string", "x$pos", []string{"s1"}},
		{"Observation", "code-value-string", "|x$POSITIVE", []string{"s1"}},
		{"Observation", "code-value-string", "x$result", nil},
		{"Observation", "code-value-date", "11778-8$2021-06", []string{"d1"}},
		{"Observation", "code-value-date", "11778-8$gt2021-07", nil},
		{"Observation", "code-value-date", "11778-8$lt2021-07", []string{"d1"}},
		{"Observation", "code-value-date", "http://loinc.org|11778-8$ge2021-06-15", []string{"d1"}},
		{"Observation", "code-value-date", "8480-6$2021", nil},
		{"Observation", "code-value-quantity:missing", "true", []string{"bp", "c1", "cc", "d1", "s1"}},
	} {
		q := url.Values{tc.param: {tc.value}}.Encode()
		t.Run(tc.typ+"?"+tc.param+"="+tc.value, func(t *testing.T) {
			r := e.get("/fhir/" + tc.typ + "?" + q)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if diff := cmp.Diff(tc.want, searchIDs(t, r)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}

	// An update without the value removes its entries.
	if r := e.do("PUT", "/fhir/Observation/q4", `{"resourceType":"Observation","id":"q4","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2951-2"}]}}`); r.status != http.StatusOK {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if ids := searchIDs(t, e.get("/fhir/Observation?value-quantity=ge100")); ids != nil {
		t.Errorf("after the update value-quantity=ge100 finds %v", ids)
	}
}

func TestSearchNumberRejects(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ typ, param, value string }{
		{"RiskAssessment", "probability", "high"},
		{"RiskAssessment", "probability", "xx0.5"},
		{"RiskAssessment", "probability:exact", "0.5"},
		{"Observation", "value-quantity", "5|http://unitsofmeasure.org|"},
		{"Observation", "value-quantity", "5|mg"},
		{"Observation", "code-value-quantity", "5.4"},
		{"Observation", "code-value-date", "x$yesterday"},
		{"MolecularSequence", "chromosome-variant-coordinate", "1$5$6"},
	} {
		t.Run(tc.typ+"?"+tc.param+"="+tc.value, func(t *testing.T) {
			r := e.get("/fhir/" + tc.typ + "?" + url.Values{tc.param: {tc.value}}.Encode())
			if r.status != http.StatusBadRequest {
				t.Fatalf("%d, want 400: %s", r.status, r.body)
			}
			if name, _, _ := strings.Cut(tc.param, ":"); !strings.Contains(string(r.body), name) {
				t.Errorf("the OperationOutcome does not name %s: %s", name, r.body)
			}
		})
	}
}
