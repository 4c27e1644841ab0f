package patch

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// patient is a stored resource: compact, with an extension on a primitive
// (_birthDate), a primitive list with extensions (_given) and a decimal.
const patient = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.000Z"},` +
	`"identifier":[{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}],"active":true,` +
	`"name":[{"use":"official","family":"Doe","given":["Jane","Q"],"_given":[null,{"extension":[{"url":"urn:x","valueString":"initial"}]}]}],` +
	`"birthDate":"1980-05-17","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1980-05-17T10:00:00Z"}]},` +
	`"extension":[{"url":"urn:weight","valueDecimal":1.50}]}`

const observation = `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"valueQuantity":{"value":72.50,"unit":"kg"}}`

// fail is the expected error: kind and the expression of the first issue.
type fail struct {
	kind fault.Kind
	expr string
}

func run(t *testing.T, current, mediaType, body string, want string, wantErr *fail) {
	t.Helper()
	res, err := Apply([]byte(current), mediaType, []byte(body))
	if wantErr != nil {
		fe, ok := err.(*fault.Error)
		if !ok {
			t.Fatalf("got %v, want a %v error at %q", err, wantErr.kind, wantErr.expr)
		}
		var expr string
		if len(fe.Issues[0].Expression) > 0 {
			expr = fe.Issues[0].Expression[0]
		}
		if got := (fail{fe.Kind, expr}); got != *wantErr {
			t.Fatalf("got %+v (%v), want %+v", got, err, *wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(want, string(res.Bytes())); diff != "" {
		t.Errorf("patched resource (-want +got):\n%s", diff)
	}
}

// edit returns patient with each old replaced by new, in order.
func edit(doc string, pairs ...string) string {
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			panic("edit: no " + pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func TestJSONPatch(t *testing.T) {
	tests := []struct {
		name, body, want string
		err              *fail
	}{
		{"replace keeps order and other lexemes", `[{"op":"replace","path":"/active","value":false}]`,
			edit(patient, `"active":true`, `"active":false`), nil},
		{"add member appends", `[{"op":"add","path":"/gender","value":"female"}]`,
			edit(patient, `1.50}]}`, `1.50}],"gender":"female"}`), nil},
		{"add to array with -", `[{"op":"add","path":"/identifier/-","value":{"value":"3"}}]`,
			edit(patient, `"value":"2"}]`, `"value":"2"},{"value":"3"}]`), nil},
		{"no automatic _given alignment", `[{"op":"add","path":"/name/0/given/-","value":"Ann"}]`, "", &fail{fault.Unprocessable, "Patient.name[0]._given"}},
		{"add inserts at index", `[{"op":"add","path":"/identifier/0","value":{"value":"0"}}]`,
			edit(patient, `"identifier":[`, `"identifier":[{"value":"0"},`), nil},
		{"remove array item", `[{"op":"remove","path":"/identifier/1"}]`,
			edit(patient, `,{"system":"urn:b","value":"2"}`, ``), nil},
		{"number lexeme of the patch kept", `[{"op":"replace","path":"/extension/0/valueDecimal","value":2.500}]`,
			edit(patient, `1.50`, `2.500`), nil},
		{"move", `[{"op":"move","from":"/identifier/1","path":"/identifier/0"}]`,
			edit(patient, `{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}`, `{"system":"urn:b","value":"2"},{"system":"urn:a","value":"1"}`), nil},
		{"copy", `[{"op":"copy","from":"/name/0/family","path":"/name/0/text"}]`,
			edit(patient, `"initial"}]}]}]`, `"initial"}]}],"text":"Doe"}]`), nil},
		{"test passes on equal numbers", `[{"op":"test","path":"/extension/0/valueDecimal","value":1.5},{"op":"replace","path":"/active","value":false}]`,
			edit(patient, `"active":true`, `"active":false`), nil},
		{"test compares objects unordered", `[{"op":"test","path":"/identifier/0","value":{"value":"1","system":"urn:a"}}]`,
			patient, nil},
		{"escapes ~0 ~1", `[{"op":"add","path":"/extension/0/url","value":"urn:x"},{"op":"test","path":"/extension/0/url","value":"urn:x"},{"op":"add","path":"/name/0/a~1b~0c","value":"x"},{"op":"remove","path":"/name/0/a~1b~0c"}]`,
			edit(patient, `urn:weight`, `urn:x`), nil},
		{"test fails", `[{"op":"test","path":"/active","value":false}]`, "", &fail{fault.Unprocessable, "/0"}},
		{"remove missing", `[{"op":"test","path":"/active","value":true},{"op":"remove","path":"/gender"}]`, "", &fail{fault.Unprocessable, "/1/path"}},
		{"index out of range", `[{"op":"add","path":"/identifier/3","value":{}}]`, "", &fail{fault.Unprocessable, "/0/path"}},
		{"leading zero index", `[{"op":"remove","path":"/identifier/01"}]`, "", &fail{fault.Unprocessable, "/0/path"}},
		{"move into itself", `[{"op":"move","from":"/name/0","path":"/name/0/given"}]`, "", &fail{fault.Unprocessable, "/0/path"}},
		{"unknown op", `[{"op":"add","path":"/active","value":false},{"op":"merge","path":"/"}]`, "", &fail{fault.Invalid, "/1/op"}},
		{"missing value", `[{"op":"replace","path":"/active"}]`, "", &fail{fault.Invalid, "/0/value"}},
		{"missing from", `[{"op":"copy","path":"/active"}]`, "", &fail{fault.Invalid, "/0/from"}},
		{"bad pointer", `[{"op":"remove","path":"active"}]`, "", &fail{fault.Invalid, "/0/path"}},
		{"bad escape", `[{"op":"remove","path":"/a~2"}]`, "", &fail{fault.Invalid, "/0/path"}},
		{"not an array", `{"op":"remove","path":"/active"}`, "", &fail{fault.Invalid, ""}},
		{"result invalid is 422 at the element", `[{"op":"replace","path":"/birthDate","value":"May 1980"}]`, "", &fail{fault.Unprocessable, "Patient.birthDate"}},
		{"unknown element is 422", `[{"op":"add","path":"/colour","value":"blue"}]`, "", &fail{fault.Unprocessable, "Patient.colour"}},
		{"id cannot change", `[{"op":"replace","path":"/id","value":"p2"}]`, "", &fail{fault.Unprocessable, "Patient.id"}},
		{"id cannot go", `[{"op":"remove","path":"/id"}]`, "", &fail{fault.Unprocessable, "Patient.id"}},
		{"resourceType cannot change", `[{"op":"replace","path":"/resourceType","value":"Person"}]`, "", &fail{fault.Unprocessable, "Patient.resourceType"}},
		{"whole document", `[{"op":"replace","path":"","value":[]}]`, "", &fail{fault.Unprocessable, "Patient.resourceType"}},
		{"remove whole document", `[{"op":"remove","path":""}]`, "", &fail{fault.Unprocessable, "/0/path"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, patient, "application/json-patch+json", tc.body, tc.want, tc.err)
		})
	}
}

// params wraps operations (JSON of parameter entries) in a Parameters
// resource.
func params(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

// op is one operation parameter with its parts (JSON of part entries).
func op(typ string, parts ...string) string {
	return `{"name":"operation","part":[{"name":"type","valueCode":"` + typ + `"}` + prefixComma(parts) + `]}`
}

func prefixComma(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return "," + strings.Join(parts, ",")
}

func part(name, valueKey, valueJSON string) string {
	return `{"name":"` + name + `","` + valueKey + `":` + valueJSON + `}`
}

func path(p string) string { return part("path", "valueString", `"`+p+`"`) }

func TestFHIRPathPatch(t *testing.T) {
	tests := []struct {
		name, current, body, want string
		err                       *fail
	}{
		{"replace primitive keeps its extension", patient,
			params(op("replace", path("Patient.birthDate"), part("value", "valueDate", `"1981-01-01"`))),
			edit(patient, `"1980-05-17","_birthDate"`, `"1981-01-01","_birthDate"`), nil},
		{"delete primitive takes its extension", patient,
			params(op("delete", path("Patient.birthDate"))),
			edit(patient, `"birthDate":"1980-05-17","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1980-05-17T10:00:00Z"}]},`, ``), nil},
		{"delete list item keeps _given aligned", patient,
			params(op("delete", path("Patient.name[0].given[0]"))),
			edit(patient, `"given":["Jane","Q"],"_given":[null,`, `"given":["Q"],"_given":[`), nil},
		{"delete last item with extension drops _given", patient,
			params(op("delete", path("Patient.name.given[1]"))),
			edit(patient, `"given":["Jane","Q"],"_given":[null,{"extension":[{"url":"urn:x","valueString":"initial"}]}]`, `"given":["Jane"]`), nil},
		{"delete with where", patient,
			params(op("delete", path("Patient.identifier.where(system='urn:b')"))),
			edit(patient, `,{"system":"urn:b","value":"2"}`, ``), nil},
		{"delete of nothing is no change", patient,
			params(op("delete", path("Patient.identifier.where(system='urn:z')"))), patient, nil},
		{"add to a list appends", patient,
			params(op("add", path("Patient.name[0]"), part("name", "valueString", `"given"`), part("value", "valueString", `"Ann"`))),
			edit(patient, `"Q"],"_given":[null,{"extension":[{"url":"urn:x","valueString":"initial"}]}]`, `"Q","Ann"],"_given":[null,{"extension":[{"url":"urn:x","valueString":"initial"}]},null]`), nil},
		{"add single element with extension", patient,
			params(op("add", path("Patient"), part("name", "valueString", `"gender"`),
				`{"name":"value","valueCode":"female","_valueCode":{"extension":[{"url":"urn:g","valueString":"x"}]}}`)),
			edit(patient, `1.50}]}`, `1.50}],"gender":"female","_gender":{"extension":[{"url":"urn:g","valueString":"x"}]}}`), nil},
		{"add backbone from parts", patient,
			params(op("add", path("Patient"), part("name", "valueString", `"contact"`),
				`{"name":"value","part":[{"name":"name","valueHumanName":{"family":"Roe"}},{"name":"telecom","valueContactPoint":{"system":"phone","value":"1"}},{"name":"gender","valueCode":"male"}]}`)),
			edit(patient, `1.50}]}`, `1.50}],"contact":[{"name":{"family":"Roe"},"telecom":[{"system":"phone","value":"1"}],"gender":"male"}]}`), nil},
		{"add choice element by its base name, decimal lexeme kept", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"}}`,
			params(op("add", path("Observation"), part("name", "valueString", `"value"`), part("value", "valueQuantity", `{"value":72.50,"unit":"kg"}`))),
			observation, nil},
		{"replace choice with another type renames in place", observation,
			params(op("replace", path("Observation.value"), part("value", "valueString", `"heavy"`))),
			edit(observation, `"valueQuantity":{"value":72.50,"unit":"kg"}`, `"valueString":"heavy"`), nil},
		{"replace inside keeps sibling lexemes", observation,
			params(op("replace", path("Observation.value.ofType(Quantity).unit"), part("value", "valueString", `"kilogram"`))),
			edit(observation, `"unit":"kg"`, `"unit":"kilogram"`), nil},
		{"insert at 0", patient,
			params(op("insert", path("Patient.identifier"), part("index", "valueInteger", "0"), part("value", "valueIdentifier", `{"value":"0"}`))),
			edit(patient, `"identifier":[`, `"identifier":[{"value":"0"},`), nil},
		{"insert into an empty list", `{"resourceType":"Patient","id":"p1"}`,
			params(op("insert", path("Patient.identifier"), part("index", "valueInteger", "0"), part("value", "valueIdentifier", `{"value":"0"}`))),
			`{"resourceType":"Patient","id":"p1","identifier":[{"value":"0"}]}`, nil},
		{"insert in a primitive list keeps _given aligned", patient,
			params(op("insert", path("Patient.name[0].given"), part("index", "valueInteger", "1"), part("value", "valueString", `"B"`))),
			edit(patient, `["Jane","Q"],"_given":[null,`, `["Jane","B","Q"],"_given":[null,null,`), nil},
		{"move items and their extensions", patient,
			params(op("move", path("Patient.name[0].given"), part("source", "valueInteger", "1"), part("destination", "valueInteger", "0"))),
			edit(patient, `["Jane","Q"],"_given":[null,{"extension":[{"url":"urn:x","valueString":"initial"}]}]`, `["Q","Jane"],"_given":[{"extension":[{"url":"urn:x","valueString":"initial"}]},null]`), nil},
		{"operations apply in order", patient,
			params(op("delete", path("Patient.identifier[0]")), op("replace", path("Patient.identifier[0].value"), part("value", "valueString", `"two"`))),
			edit(patient, `{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}`, `{"system":"urn:b","value":"two"}`), nil},

		{"replace of nothing", patient, params(op("replace", path("Patient.gender"), part("value", "valueCode", `"male"`))), "", &fail{fault.Unprocessable, "Parameters.parameter[0].part[1]"}},
		{"delete of several", patient, params(op("delete", path("Patient.identifier"))), "", &fail{fault.Unprocessable, "Parameters.parameter[0].part[1]"}},
		{"add existing single", patient, params(op("add", path("Patient"), part("name", "valueString", `"active"`), part("value", "valueBoolean", "false"))), "", &fail{fault.Unprocessable, "Parameters.parameter[0].part[2]"}},
		{"insert past the end", patient, params(op("insert", path("Patient.identifier"), part("index", "valueInteger", "3"), part("value", "valueIdentifier", `{"value":"x"}`))), "", &fail{fault.Unprocessable, "Parameters.parameter[0].part[2]"}},
		{"move past the end", patient, params(op("move", path("Patient.identifier"), part("source", "valueInteger", "0"), part("destination", "valueInteger", "2"))), "", &fail{fault.Unprocessable, "Parameters.parameter[0].part[3]"}},
		{"insert into a single element", patient, params(op("insert", path("Patient.birthDate"), part("index", "valueInteger", "0"), part("value", "valueDate", `"2000"`))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[1]"}},
		{"path of a computed value", patient, params(op("delete", path("Patient.active.exists()"))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[1]"}},
		{"path the evaluator cannot parse", patient, params(op("delete", path("Patient.name.given.substring(1)"))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[1]"}},
		{"path not on the type", patient, params(op("delete", path("Patient.colour"))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[1]"}},
		{"unknown element name", patient, params(op("add", path("Patient"), part("name", "valueString", `"colour"`), part("value", "valueString", `"x"`))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[2]"}},
		{"choice of a wrong type", observation, params(op("replace", path("Observation.value"), part("value", "valueHumanName", `{"family":"x"}`))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[2]"}},
		{"unknown type", patient, params(op("upsert", path("Patient"))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[0]"}},
		{"missing part", patient, params(op("add", path("Patient"), part("name", "valueString", `"gender"`))), "", &fail{fault.Invalid, "Parameters.parameter[0]"}},
		{"part that does not apply", patient, params(op("delete", path("Patient.active"), part("index", "valueInteger", "0"))), "", &fail{fault.Invalid, "Parameters.parameter[0].part[2]"}},
		{"parameter not an operation", patient, params(`{"name":"op","part":[{"name":"type","valueCode":"delete"}]}`), "", &fail{fault.Invalid, "Parameters.parameter[0].name"}},
		{"not Parameters", patient, `{"resourceType":"Basic","code":{"text":"x"}}`, "", &fail{fault.Invalid, "resourceType"}},
		{"result invalid", patient, params(op("delete", path("Patient.identifier[0].system")), op("delete", path("Patient.identifier[0].value"))), "", &fail{fault.Unprocessable, "Patient.identifier[0]"}},
		{"id cannot change", patient, params(op("replace", path("Patient.id"), part("value", "valueId", `"p2"`))), "", &fail{fault.Unprocessable, "Patient.id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, tc.current, "application/fhir+json", tc.body, tc.want, tc.err)
		})
	}
}

func TestParseMediaType(t *testing.T) {
	for mt, want := range map[string]fault.Kind{
		"application/json-patch+json; charset=utf-8": -1,
		"application/fhir+json":                      -1,
		"application/json":                           -1,
		"application/merge-patch+json":               fault.UnsupportedMediaType,
		"application/xml-patch+xml":                  fault.UnsupportedMediaType,
		"":                                           fault.UnsupportedMediaType,
	} {
		body := params(op("delete", path("Patient.active")))
		if strings.HasPrefix(mt, "application/json-patch") {
			body = `[]`
		}
		_, err := Parse(mt, []byte(body))
		switch {
		case want == -1 && err != nil:
			t.Errorf("%q: %v", mt, err)
		case want != -1 && !fault.Is(err, want):
			t.Errorf("%q: got %v, want kind %v", mt, err, want)
		}
	}
}
