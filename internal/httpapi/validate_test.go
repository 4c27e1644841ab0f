package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// issue is the part of an OperationOutcome issue the tests compare.
type issue struct{ Severity, Code, Expression string }

func issuesOf(t *testing.T, r *response) []issue {
	t.Helper()
	var out []issue
	for _, is := range r.json(t)["issue"].([]any) {
		is := is.(map[string]any)
		var expr string
		if es, _ := is["expression"].([]any); len(es) > 0 {
			expr = es[0].(string)
		}
		out = append(out, issue{is["severity"].(string), is["code"].(string), expr})
	}
	return out
}

func TestValidate(t *testing.T) {
	e := newEnv(t)
	existing := e.create("Patient", `{"resourceType":"Patient","active":true}`)
	gone := e.create("Patient", `{"resourceType":"Patient","active":false}`)
	if r := e.do("DELETE", "/fhir/Patient/"+gone, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	history := func() int {
		b := e.get("/fhir/_history?_count=1000").json(t)
		entries, _ := b["entry"].([]any)
		return len(entries)
	}
	before := history()

	valid := []issue{{"information", "informational", ""}}
	for _, c := range []struct {
		name, path, body string
		want             []issue
	}{
		{"valid at type level", "/fhir/Patient/$validate", `{"resourceType":"Patient","birthDate":"1970-01-01"}`, valid},
		{"a client id is fine for a create", "/fhir/Patient/$validate", `{"resourceType":"Patient","id":"x"}`, valid},
		{"unknown element", "/fhir/Patient/$validate", `{"resourceType":"Patient","colour":"blue"}`,
			[]issue{{"error", "structure", "Patient.colour"}}},
		{"bad primitive", "/fhir/Patient/$validate", `{"resourceType":"Patient","birthDate":"1970-13-01"}`,
			[]issue{{"error", "value", "Patient.birthDate"}}},
		{"missing required elements", "/fhir/Observation/$validate", `{"resourceType":"Observation"}`,
			[]issue{{"error", "required", "Observation.code"}, {"error", "required", "Observation.status"}}},
		{"another type than the URL's", "/fhir/Observation/$validate", `{"resourceType":"Patient"}`,
			[]issue{{"error", "structure", "resourceType"}}},
		{"mode=update needs an id", "/fhir/Patient/$validate?mode=update", `{"resourceType":"Patient"}`,
			[]issue{{"error", "structure", "Patient.id"}}},
		{"in a Parameters body", "/fhir/Patient/$validate",
			`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","gender":"robot"}}]}`,
			[]issue{{"error", "code-invalid", "Patient.gender"}}},
		{"mode in a Parameters body", "/fhir/Patient/$validate",
			`{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"update"},{"name":"resource","resource":{"resourceType":"Patient"}}]}`,
			[]issue{{"error", "structure", "Patient.id"}}},
		{"a Parameters resource itself", "/fhir/Parameters/$validate", `{"resourceType":"Parameters","parameter":[{"name":"x","valueString":"y"}]}`, valid},
		{"instance: the URL's id", "/fhir/Patient/" + existing + "/$validate", `{"resourceType":"Patient","id":"` + existing + `"}`, valid},
		{"instance: another id", "/fhir/Patient/" + existing + "/$validate", `{"resourceType":"Patient","id":"other"}`,
			[]issue{{"error", "structure", "Patient.id"}}},
		{"instance, mode=create ignores the id", "/fhir/Patient/" + existing + "/$validate?mode=create", `{"resourceType":"Patient"}`, valid},
		{"delete of an existing resource", "/fhir/Patient/" + existing + "/$validate?mode=delete", `{}`, valid},
		{"delete of a missing resource", "/fhir/Patient/missing/$validate?mode=delete", `{}`,
			[]issue{{"warning", "not-found", ""}}},
		{"delete of a deleted resource", "/fhir/Patient/" + gone + "/$validate?mode=delete", `{}`,
			[]issue{{"warning", "deleted", ""}}},
		{"a profile is not checked", "/fhir/Patient/$validate?profile=http://example.org/StructureDefinition/p", `{"resourceType":"Patient"}`,
			[]issue{{"warning", "not-supported", "profile"}}},
		{"the base profile is", "/fhir/Patient/$validate?profile=http://hl7.org/fhir/StructureDefinition/Patient", `{"resourceType":"Patient"}`, valid},
		{"a SearchParameter the registry refuses", "/fhir/SearchParameter/$validate",
			`{"resourceType":"SearchParameter","url":"http://x/sp","name":"x","status":"active","description":"x","code":"family","base":["Patient"],"type":"string","expression":"Patient.name.family"}`,
			[]issue{{"error", "invariant", "SearchParameter.code"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", c.path, c.body)
			if r.status != http.StatusOK {
				t.Fatalf("%d, want 200: %s", r.status, r.body)
			}
			if got := issuesOf(t, r); !cmp.Equal(c.want, got) {
				t.Errorf("issues (-want +got):\n%s\n%s", cmp.Diff(c.want, got), r.body)
			}
		})
	}

	for _, c := range []struct {
		name, path, body, contentType string
		status                        int
		expression                    string
	}{
		{"not JSON", "/fhir/Patient/$validate", `{"resourceType":`, "application/fhir+json", http.StatusBadRequest, ""},
		{"not a JSON content type", "/fhir/Patient/$validate", `<Patient/>`, "application/fhir+xml", http.StatusUnsupportedMediaType, ""},
		{"an unknown mode", "/fhir/Patient/$validate?mode=patch", `{"resourceType":"Patient"}`, "application/fhir+json", http.StatusBadRequest, "mode"},
		{"delete needs an instance", "/fhir/Patient/$validate?mode=delete", `{}`, "application/fhir+json", http.StatusBadRequest, "mode"},
		{"an unknown parameter", "/fhir/Patient/$validate?strict=true", `{"resourceType":"Patient"}`, "application/fhir+json", http.StatusBadRequest, "strict"},
		{"Parameters without a resource", "/fhir/Patient/$validate", `{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create"}]}`, "application/fhir+json", http.StatusBadRequest, ""},
		{"an unknown type", "/fhir/Thing/$validate", `{"resourceType":"Patient"}`, "application/fhir+json", http.StatusNotFound, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", c.path, c.body, "Content-Type", c.contentType)
			if r.status != c.status {
				t.Fatalf("%d, want %d: %s", r.status, c.status, r.body)
			}
			if got := r.expression(t); got != c.expression {
				t.Errorf("expression %q, want %q", got, c.expression)
			}
		})
	}

	// mode=delete needs no body.
	if r := e.do("POST", "/fhir/Patient/"+existing+"/$validate?mode=delete", "", "Content-Type", "application/fhir+json"); r.status != http.StatusOK {
		t.Errorf("mode=delete without a body: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/fhir/Patient/$validate", "", "Content-Type", "application/fhir+json"); r.status != http.StatusBadRequest {
		t.Errorf("no body to validate: %d %s", r.status, r.body)
	}

	if after := history(); after != before {
		t.Errorf("$validate wrote: %d history entries before, %d after", before, after)
	}
}
