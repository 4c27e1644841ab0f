package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const jsonPatchType = "application/json-patch+json"

func TestPatchInstance(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "patch1"))
	url := "/fhir/Patient/" + id
	jp := func(body string, headers ...string) *response {
		t.Helper()
		return e.do("PATCH", url, body, append([]string{"Content-Type", jsonPatchType}, headers...)...)
	}

	r := jp(`[{"op":"test","path":"/gender","value":"female"},{"op":"replace","path":"/gender","value":"male"}]`)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("patch: %d %s %s", r.status, r.header.Get("ETag"), r.body)
	}
	if body := string(r.body); !strings.Contains(body, `"gender":"male"`) || !strings.Contains(body, `"valueDecimal":1.50`) {
		t.Errorf("patched resource lost its content or lexemes: %s", body)
	}
	if read := e.get(url); string(read.body) != string(r.body) {
		t.Errorf("read after patch:\n got %s\nwant %s", read.body, r.body)
	}
	if h := e.get(url + "/_history"); !strings.Contains(string(h.body), `"method":"PATCH"`) {
		t.Errorf("history does not record the PATCH: %s", h.body)
	}

	// A patch that changes nothing writes no version, as a no-op update.
	if r := jp(`[{"op":"test","path":"/gender","value":"male"}]`); r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("no-op patch: %d %s %s", r.status, r.header.Get("ETag"), r.body)
	}

	// FHIRPath Patch, with If-Match and Prefer as for an update.
	fp := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},` +
		`{"name":"path","valueString":"Patient"},{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1970-01-02"}]}]}`
	if r := e.do("PATCH", url, fp, "If-Match", `W/"1"`); r.status != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d %s", r.status, r.body)
	}
	r = e.do("PATCH", url, fp, "If-Match", `W/"2"`, "Prefer", "return=minimal")
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("ETag") != `W/"3"` {
		t.Errorf("FHIRPath Patch with If-Match: %d %s %s", r.status, r.header.Get("ETag"), r.body)
	}
	if read := e.get(url); !strings.Contains(string(read.body), `"birthDate":"1970-01-02"`) {
		t.Errorf("FHIRPath Patch not applied: %s", read.body)
	}

	tests := []struct {
		name, contentType, body string
		status                  int
		expr                    string
	}{
		{"failed test", jsonPatchType, `[{"op":"test","path":"/gender","value":"female"}]`, http.StatusUnprocessableEntity, "/0"},
		{"invalid patch document", jsonPatchType, `[{"op":"replace","path":"/gender","value":"other"},{"op":"frobnicate","path":"/x"}]`, http.StatusBadRequest, "/1/op"},
		{"patch syntax", jsonPatchType, `[{"op":`, http.StatusBadRequest, ""},
		{"result invalid", jsonPatchType, `[{"op":"replace","path":"/birthDate","value":"yesterday"}]`, http.StatusUnprocessableEntity, "Patient.birthDate"},
		{"id changed", jsonPatchType, `[{"op":"replace","path":"/id","value":"other"}]`, http.StatusUnprocessableEntity, "Patient.id"},
		{"FHIRPath path not evaluable", "application/fhir+json",
			`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name.select(family)"}]}]}`,
			http.StatusBadRequest, "Parameters.parameter[0].part[1]"},
		{"merge patch", "application/merge-patch+json", `{"gender":"male"}`, http.StatusUnsupportedMediaType, ""},
		{"XML patch", "application/xml-patch+xml", `<diff/>`, http.StatusUnsupportedMediaType, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("PATCH", url, tc.body, "Content-Type", tc.contentType)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := r.expression(t); got != tc.expr {
				t.Errorf("expression %q, want %q: %s", got, tc.expr, r.body)
			}
		})
	}
	if read := e.get(url); read.header.Get("ETag") != `W/"3"` {
		t.Errorf("a rejected patch wrote a version: %s", read.header.Get("ETag"))
	}

	if r := e.do("PATCH", "/fhir/Patient/nobody", `[]`, "Content-Type", jsonPatchType); r.status != http.StatusNotFound {
		t.Errorf("patch of a missing resource: %d %s", r.status, r.body)
	}
	e.do("DELETE", url, "")
	if r := jp(`[]`); r.status != http.StatusGone {
		t.Errorf("patch of a deleted resource: %d %s", r.status, r.body)
	}
}

func TestConditionalPatch(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "cp-one"))
	e.create("Patient", fmt.Sprintf(patient, "cp-two"))
	e.create("Patient", fmt.Sprintf(patient, "cp-two"))
	body := `[{"op":"add","path":"/active","value":true}]`
	patchWhere := func(query string) *response {
		t.Helper()
		return e.do("PATCH", "/fhir/Patient?"+query, body, "Content-Type", jsonPatchType)
	}

	r := patchWhere("identifier=urn:oid:1.2.3|cp-one")
	if r.status != http.StatusOK || r.json(t)["id"] != id || r.json(t)["active"] != true {
		t.Fatalf("one match: %d %s", r.status, r.body)
	}
	if r := patchWhere("identifier=urn:oid:1.2.3|cp-none"); r.status != http.StatusNotFound {
		t.Errorf("no match: %d %s", r.status, r.body)
	}
	if r := patchWhere("identifier=urn:oid:1.2.3|cp-two"); r.status != http.StatusPreconditionFailed {
		t.Errorf("two matches: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", "/fhir/Patient", body, "Content-Type", jsonPatchType); r.status != http.StatusBadRequest {
		t.Errorf("no criteria: %d %s", r.status, r.body)
	}
	if r := patchWhere("nosuchparam=1"); r.status != http.StatusBadRequest {
		t.Errorf("unknown criteria: %d %s", r.status, r.body)
	}
}

func TestCapabilityStatementListsPatch(t *testing.T) {
	e := newEnv(t)
	cs := e.get("/fhir/metadata").json(t)
	rest := cs["rest"].([]any)[0].(map[string]any)
	for _, res := range rest["resource"].([]any) {
		r := res.(map[string]any)
		found := false
		for _, in := range r["interaction"].([]any) {
			found = found || in.(map[string]any)["code"] == "patch"
		}
		if !found {
			t.Fatalf("%s does not list the patch interaction", r["type"])
		}
	}
	if doc := rest["documentation"].(string); !strings.Contains(doc, "FHIRPath Patch") || !strings.Contains(doc, "json-patch+json") {
		t.Errorf("the documentation does not say what PATCH supports: %s", doc)
	}
}

// TestConcurrentPatchesLoseNothing sends patches that each append an
// identifier to one resource from two service instances at once: a patch
// that loses the race to another writer is applied again to the new
// version, so every identifier is in the final version.
func TestConcurrentPatchesLoseNothing(t *testing.T) {
	e := newEnv(t)
	other, _ := e.second()
	id := e.create("Patient", `{"resourceType":"Patient","identifier":[{"value":"0"}]}`)
	const n = 30
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			base := e.srv.URL
			if i%2 == 1 {
				base = other.URL
			}
			body := fmt.Sprintf(`[{"op":"add","path":"/identifier/-","value":{"value":"%d"}}]`, i)
			if r := do(t, base, "PATCH", "/fhir/Patient/"+id, body, "Content-Type", jsonPatchType); r.status != http.StatusOK {
				t.Errorf("patch %d: %d %s", i, r.status, r.body)
			}
		}(i)
	}
	wg.Wait()
	r := e.get("/fhir/Patient/" + id)
	if r.header.Get("ETag") != fmt.Sprintf(`W/"%d"`, n+1) {
		t.Errorf("current ETag %s, want version %d", r.header.Get("ETag"), n+1)
	}
	got := map[string]bool{}
	for _, ident := range r.json(t)["identifier"].([]any) {
		got[ident.(map[string]any)["value"].(string)] = true
	}
	for i := 0; i <= n; i++ {
		if !got[fmt.Sprint(i)] {
			t.Errorf("identifier %d was lost", i)
		}
	}
}
