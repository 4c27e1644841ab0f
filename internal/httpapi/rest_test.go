package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const patient = `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"%s"}],"name":[{"family":"Testperson"}],"_gender":{"extension":[{"url":"http://example.org/x","valueDecimal":1.50}]},"gender":"female"}`

func TestCreateReadVRead(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "a1"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	wantLoc := e.srv.URL + "/fhir/Patient/" + id + "/_history/1"
	if got := r.header.Get("Location"); got != wantLoc {
		t.Errorf("Location = %q, want %q", got, wantLoc)
	}
	if got := r.header.Get("ETag"); got != `W/"1"` {
		t.Errorf("ETag = %q", got)
	}
	if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
		t.Errorf("Last-Modified %q: %v", r.header.Get("Last-Modified"), err)
	}
	if !strings.Contains(string(r.body), `"valueDecimal":1.50`) {
		t.Errorf("decimal not kept exactly: %s", r.body)
	}
	meta := r.json(t)["meta"].(map[string]any)
	if meta["versionId"] != "1" {
		t.Errorf("meta.versionId = %v", meta["versionId"])
	}
	lu, err := time.Parse(time.RFC3339Nano, meta["lastUpdated"].(string))
	if err != nil || time.Since(lu) > time.Minute || lu.Location() != time.UTC {
		t.Errorf("meta.lastUpdated = %v (%v)", meta["lastUpdated"], err)
	}

	read := e.get("/fhir/Patient/" + id)
	if read.status != http.StatusOK || string(read.body) != string(r.body) {
		t.Errorf("read: %d\n got %s\nwant %s", read.status, read.body, r.body)
	}
	vread := e.get("/fhir/Patient/" + id + "/_history/1")
	if vread.status != http.StatusOK || string(vread.body) != string(r.body) {
		t.Errorf("vread: %d %s", vread.status, vread.body)
	}
	// A client id on create is ignored: the server assigns one.
	id2 := e.create("Patient", `{"resourceType":"Patient","id":"mine"}`)
	if id2 == "mine" {
		t.Error("create kept the client's id")
	}
}

func TestUpdateVersionsAndNoOp(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "u1"))
	body := fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":true}`, id)
	r := e.do("PUT", "/fhir/Patient/"+id, body)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("update: %d %s %s", r.status, r.header.Get("ETag"), r.body)
	}
	again := e.do("PUT", "/fhir/Patient/"+id, body)
	if again.status != http.StatusOK || again.header.Get("ETag") != `W/"2"` {
		t.Errorf("identical update made a version: %d %s", again.status, again.header.Get("ETag"))
	}
	if string(again.body) != string(r.body) {
		t.Errorf("identical update changed meta:\n%s\n%s", again.body, r.body)
	}
	// Update-as-create with a client-chosen id.
	c := e.do("PUT", "/fhir/Patient/client-1", `{"resourceType":"Patient","id":"client-1"}`)
	if c.status != http.StatusCreated || c.header.Get("ETag") != `W/"1"` {
		t.Errorf("update-as-create: %d %s", c.status, c.body)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "d1"))
	if r := e.do("DELETE", "/fhir/Patient/"+id, ""); r.status != http.StatusNoContent || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("delete: %d %v", r.status, r.header)
	}
	if r := e.get("/fhir/Patient/" + id); r.status != http.StatusGone {
		t.Errorf("read after delete: %d", r.status)
	}
	if r := e.get("/fhir/Patient/" + id + "/_history/2"); r.status != http.StatusGone {
		t.Errorf("vread of the tombstone: %d", r.status)
	}
	if r := e.get("/fhir/Patient/" + id + "/_history/1"); r.status != http.StatusOK {
		t.Errorf("vread of the version before delete: %d", r.status)
	}
	// Idempotent: no new version, same answer.
	if r := e.do("DELETE", "/fhir/Patient/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("second delete: %d", r.status)
	}
	if r := e.do("DELETE", "/fhir/Patient/never", ""); r.status != http.StatusNoContent {
		t.Errorf("delete of unknown: %d", r.status)
	}
	h := e.get("/fhir/Patient/" + id + "/_history")
	if n := len(h.json(t)["entry"].([]any)); n != 2 {
		t.Errorf("history has %d versions, want 2", n)
	}
	// Resurrection is a new version.
	r := e.do("PUT", "/fhir/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":"%s"}`, id))
	if r.status != http.StatusCreated || r.header.Get("ETag") != `W/"3"` {
		t.Errorf("update after delete: %d %s", r.status, r.header.Get("ETag"))
	}
}

func TestConditionalRead(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "c1"))
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name, header, value string
		want                int
	}{
		{"etag matches", "If-None-Match", `W/"1"`, http.StatusNotModified},
		{"strong etag matches", "If-None-Match", `"1"`, http.StatusNotModified},
		{"etag differs", "If-None-Match", `W/"7"`, http.StatusOK},
		{"not modified since", "If-Modified-Since", future, http.StatusNotModified},
		{"modified since", "If-Modified-Since", past, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get("/fhir/Patient/"+id, tc.header, tc.value)
			if r.status != tc.want {
				t.Errorf("status %d, want %d", r.status, tc.want)
			}
			if tc.want == http.StatusNotModified && len(r.body) != 0 {
				t.Errorf("304 with a body: %s", r.body)
			}
		})
	}
}

func TestIfMatch(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "m1"))
	body := fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":false}`, id)
	if r := e.do("PUT", "/fhir/Patient/"+id, body, "If-Match", `W/"2"`); r.status != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d", r.status)
	}
	if r := e.do("PUT", "/fhir/Patient/"+id, body, "If-Match", `W/"1"`); r.status != http.StatusOK {
		t.Errorf("current If-Match: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/fhir/Patient/"+id, "", "If-Match", `W/"1"`); r.status != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match on delete: %d", r.status)
	}
	if r := e.do("PUT", "/fhir/Patient/"+id, body, "If-Match", `soon`); r.status != http.StatusBadRequest {
		t.Errorf("malformed If-Match: %d", r.status)
	}
}

// Two updates with the same If-Match race, through two service instances
// (so the in-process lock does not decide): exactly one wins.
func TestIfMatchRace(t *testing.T) {
	e := newEnv(t)
	other, _ := e.second()
	for round := 0; round < 10; round++ {
		id := e.create("Patient", fmt.Sprintf(patient, fmt.Sprint("r", round)))
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, base := range []string{e.srv.URL, other.URL} {
			wg.Add(1)
			go func(i int, base string) {
				defer wg.Done()
				body := fmt.Sprintf(`{"resourceType":"Patient","id":"%s","birthDate":"199%d-01-01"}`, id, i)
				statuses[i] = do(t, base, "PUT", "/fhir/Patient/"+id, body, "If-Match", `W/"1"`).status
			}(i, base)
		}
		wg.Wait()
		ok, failed := 0, 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				ok++
			case http.StatusPreconditionFailed:
				failed++
			}
		}
		if ok != 1 || failed != 1 {
			t.Fatalf("round %d: statuses %v, want one 200 and one 412", round, statuses)
		}
	}
}

// 200 concurrent updates of one resource, half through a second instance:
// versions 1..201 without a gap, and every update's content in history.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	e := newEnv(t)
	other, _ := e.second()
	id := e.create("Observation", `{"resourceType":"Observation","status":"final","code":{"text":"counter"}}`)
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			base := e.srv.URL
			if i%2 == 1 {
				base = other.URL
			}
			body := fmt.Sprintf(`{"resourceType":"Observation","id":"%s","status":"final","code":{"text":"counter"},"valueInteger":%d}`, id, i)
			if r := do(t, base, "PUT", "/fhir/Observation/"+id, body); r.status != http.StatusOK {
				t.Errorf("update %d: %d %s", i, r.status, r.body)
			}
		}(i)
	}
	wg.Wait()
	versions := map[string]bool{}
	values := map[string]bool{}
	next := "/fhir/Observation/" + id + "/_history?_count=37"
	for next != "" {
		h := e.get(next)
		if h.status != http.StatusOK {
			t.Fatalf("history: %d %s", h.status, h.body)
		}
		b := h.json(t)
		for _, en := range b["entry"].([]any) {
			res := en.(map[string]any)["resource"].(map[string]any)
			versions[res["meta"].(map[string]any)["versionId"].(string)] = true
			if v, ok := res["valueInteger"]; ok {
				values[string(v.(json.Number))] = true
			}
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = strings.TrimPrefix(l.(map[string]any)["url"].(string), e.srv.URL)
			}
		}
	}
	for v := 1; v <= n+1; v++ {
		if !versions[fmt.Sprint(v)] {
			t.Errorf("version %d missing", v)
		}
	}
	if len(versions) != n+1 || len(values) != n {
		t.Errorf("%d versions, %d distinct values; want %d and %d", len(versions), len(values), n+1, n)
	}
	if r := e.get("/fhir/Observation/" + id); r.header.Get("ETag") != fmt.Sprintf(`W/"%d"`, n+1) {
		t.Errorf("current ETag %s, want version %d", r.header.Get("ETag"), n+1)
	}
}

func TestConditionalCreate(t *testing.T) {
	e := newEnv(t)
	first := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cc1"), "If-None-Exist", "identifier=urn:oid:1.2.3|cc1")
	if first.status != http.StatusCreated {
		t.Fatalf("first conditional create: %d %s", first.status, first.body)
	}
	second := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cc1"), "If-None-Exist", "identifier=urn:oid:1.2.3|cc1")
	if second.status != http.StatusOK || second.json(t)["id"] != first.json(t)["id"] {
		t.Errorf("second conditional create: %d %s", second.status, second.body)
	}
	e.create("Patient", fmt.Sprintf(patient, "cc1"))
	if r := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cc1"), "If-None-Exist", "identifier=cc1"); r.status != http.StatusPreconditionFailed {
		t.Errorf("conditional create with two matches: %d", r.status)
	}
	if r := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "x"), "If-None-Exist", "nickname=x"); r.status != http.StatusBadRequest {
		t.Errorf("unsupported criteria: %d", r.status)
	}
}

// Concurrent conditional creates with one identifier, through two
// instances, make exactly one resource.
func TestConcurrentConditionalCreates(t *testing.T) {
	e := newEnv(t)
	other, _ := e.second()
	const n = 20
	var wg sync.WaitGroup
	ids := make([]string, n)
	created := make([]bool, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			base := e.srv.URL
			if i%2 == 1 {
				base = other.URL
			}
			r := do(t, base, "POST", "/fhir/Patient", fmt.Sprintf(patient, "race"), "If-None-Exist", "identifier=urn:oid:1.2.3|race")
			if r.status != http.StatusCreated && r.status != http.StatusOK {
				t.Errorf("conditional create %d: %d %s", i, r.status, r.body)
				return
			}
			created[i] = r.status == http.StatusCreated
			ids[i] = r.json(t)["id"].(string)
		}(i)
	}
	wg.Wait()
	n201 := 0
	for i := range ids {
		if created[i] {
			n201++
		}
		if ids[i] != ids[0] {
			t.Errorf("request %d got %s, request 0 got %s", i, ids[i], ids[0])
		}
	}
	if n201 != 1 {
		t.Errorf("%d requests created, want 1", n201)
	}
	h := e.get("/fhir/Patient/_history")
	if got := len(h.json(t)["entry"].([]any)); got != 1 {
		t.Errorf("%d Patient versions exist, want 1", got)
	}
}

func TestConditionalUpdateAndDelete(t *testing.T) {
	e := newEnv(t)
	q := "?identifier=urn:oid:1.2.3|cu1"
	r := e.do("PUT", "/fhir/Patient"+q, fmt.Sprintf(patient, "cu1"))
	if r.status != http.StatusCreated {
		t.Fatalf("conditional update with no match: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	r = e.do("PUT", "/fhir/Patient"+q, `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"cu1"}],"active":true}`)
	if r.status != http.StatusOK || r.json(t)["id"] != id || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("conditional update with one match: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/fhir/Patient"+q, ""); r.status != http.StatusNoContent {
		t.Errorf("conditional delete: %d", r.status)
	}
	if r := e.get("/fhir/Patient/" + id); r.status != http.StatusGone {
		t.Errorf("read after conditional delete: %d", r.status)
	}
	if r := e.do("DELETE", "/fhir/Patient", ""); r.status != http.StatusBadRequest {
		t.Errorf("conditional delete without criteria: %d", r.status)
	}
}

func TestPrefer(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		prefer string
		check  func(*response) string
	}{
		{"return=minimal", func(r *response) string {
			if len(r.body) != 0 {
				return "minimal has a body"
			}
			return ""
		}},
		{"return=representation", func(r *response) string {
			if r.json(t)["resourceType"] != "Patient" {
				return "representation is not the resource"
			}
			return ""
		}},
		{"return=OperationOutcome", func(r *response) string {
			if r.json(t)["resourceType"] != "OperationOutcome" {
				return "not an OperationOutcome"
			}
			return ""
		}},
	} {
		r := e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "p"), "Prefer", tc.prefer)
		if r.status != http.StatusCreated || r.header.Get("Location") == "" {
			t.Errorf("%s: %d, Location %q", tc.prefer, r.status, r.header.Get("Location"))
		}
		if msg := tc.check(r); msg != "" {
			t.Errorf("%s: %s: %s", tc.prefer, msg, r.body)
		}
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "e1"))
	big := `{"resourceType":"Patient","text":{"status":"generated","div":"<div>` + strings.Repeat("x", 3<<20) + `</div>"}}`
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		want                     int
		expression               string
	}{
		{"malformed JSON", "POST", "/fhir/Patient", `{"resourceType":`, nil, 400, ""},
		{"type mismatch", "POST", "/fhir/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resourceType"},
		{"unknown element", "POST", "/fhir/Patient", `{"resourceType":"Patient","nickname":"x"}`, nil, 400, "Patient.nickname"},
		{"bad date", "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"2021-02-30"}`, nil, 400, "Patient.birthDate"},
		{"decimal as string", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}}`, nil, 400, "Observation.valueQuantity.value"},
		{"missing status", "POST", "/fhir/Observation", `{"resourceType":"Observation","code":{"text":"x"}}`, nil, 422, "Observation.status"},
		{"two choice types", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}`, nil, 422, "Observation.valueBoolean"},
		{"bad reference", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Nope/1"}}`, nil, 422, "Observation.subject.reference"},
		{"unknown type", "GET", "/fhir/Nope/1", "", nil, 404, ""},
		{"unknown id", "GET", "/fhir/Patient/nope", "", nil, 404, ""},
		{"invalid id", "GET", "/fhir/Patient/a_b", "", nil, 400, ""},
		{"unknown version", "GET", "/fhir/Patient/" + id + "/_history/9", "", nil, 404, ""},
		{"method not allowed", "PATCH", "/fhir/Patient/" + id + "/_history", "", nil, 405, ""},
		{"url and body ids differ", "PUT", "/fhir/Patient/" + id, `{"resourceType":"Patient","id":"other"}`, nil, 400, "Patient.id"},
		{"update without id", "PUT", "/fhir/Patient/" + id, `{"resourceType":"Patient"}`, nil, 400, "Patient.id"},
		{"xml accept", "GET", "/fhir/Patient/" + id, "", []string{"Accept", "application/fhir+xml"}, 406, ""},
		{"xml _format", "GET", "/fhir/Patient/" + id + "?_format=xml", "", nil, 406, ""},
		{"wrong content type", "POST", "/fhir/Patient", `{"resourceType":"Patient"}`, []string{"Content-Type", "text/plain"}, 415, ""},
		{"body too large", "POST", "/fhir/Patient", big, nil, 413, ""},
		{"bad _count", "GET", "/fhir/Patient/_history?_count=x", "", nil, 400, ""},
		{"bad _since", "GET", "/fhir/_history?_since=yesterday", "", nil, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body, tc.headers...)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			oo := r.json(t)
			if oo["resourceType"] != "OperationOutcome" {
				t.Fatalf("not an OperationOutcome: %s", r.body)
			}
			if got := r.expression(t); got != tc.expression {
				t.Errorf("expression %q, want %q", got, tc.expression)
			}
		})
	}
}

func TestPretty(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "pr"))
	r := e.get("/fhir/Patient/" + id + "?_pretty=true&_format=json")
	if !strings.Contains(string(r.body), "\n  \"resourceType\": \"Patient\"") || !strings.Contains(string(r.body), `"valueDecimal": 1.50`) {
		t.Errorf("pretty output: %s", r.body)
	}
}

func TestHistory(t *testing.T) {
	e := newEnv(t)
	a := e.create("Patient", fmt.Sprintf(patient, "h1"))
	e.do("PUT", "/fhir/Patient/"+a, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":true}`, a))
	time.Sleep(5 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	b := e.create("Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)
	e.do("DELETE", "/fhir/Patient/"+a, "")

	ids := func(path string) []string {
		r := e.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		bundle := r.json(t)
		if bundle["type"] != "history" {
			t.Fatalf("%s: bundle type %v", path, bundle["type"])
		}
		var out []string
		entries, _ := bundle["entry"].([]any)
		for _, en := range entries {
			en := en.(map[string]any)
			req := en["request"].(map[string]any)
			etag := en["response"].(map[string]any)["etag"].(string)
			full := en["fullUrl"].(string)
			out = append(out, req["method"].(string)+" "+full[strings.LastIndex(full, "/")+1:]+" "+etag)
		}
		return out
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/fhir/_history", []string{"DELETE " + a + ` W/"3"`, "POST " + b + ` W/"1"`, "PUT " + a + ` W/"2"`, "POST " + a + ` W/"1"`}},
		{"/fhir/Patient/_history", []string{"DELETE " + a + ` W/"3"`, "PUT " + a + ` W/"2"`, "POST " + a + ` W/"1"`}},
		{"/fhir/Patient/" + a + "/_history?_count=2", []string{"DELETE " + a + ` W/"3"`, "PUT " + a + ` W/"2"`}},
		{"/fhir/_history?_since=" + mid.Format(time.RFC3339Nano), []string{"DELETE " + a + ` W/"3"`, "POST " + b + ` W/"1"`}},
	} {
		if diff := cmp.Diff(tc.want, ids(tc.path)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.path, diff)
		}
	}
	if r := e.get("/fhir/Patient/unknown/_history"); r.status != http.StatusNotFound {
		t.Errorf("history of unknown resource: %d", r.status)
	}
}
