package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// responseEntries returns status and location of each response entry.
func responseEntries(t *testing.T, r *response) (statuses, locations []string) {
	t.Helper()
	for _, e := range r.json(t)["entry"].([]any) {
		resp := e.(map[string]any)["response"].(map[string]any)
		statuses = append(statuses, resp["status"].(string))
		loc, _ := resp["location"].(string)
		locations = append(locations, loc)
	}
	return statuses, locations
}

func TestTransaction(t *testing.T) {
	e := newEnv(t)
	old := e.create("Patient", `{"resourceType":"Patient","active":true}`)
	gone := e.create("Patient", `{"resourceType":"Patient","active":false}`)
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"request":{"method":"GET","url":"Patient?_id=` + old + `"}},
	 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
	   "subject":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"},
	   "performer":[{"reference":"Organization?identifier=http://org|1"}]},
	  "request":{"method":"POST","url":"Observation"}},
	 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=http://org|1"}},
	  "request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Organization","identifier":[{"system":"http://org","value":"1"}]},
	  "request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=http://org|1"}},
	 {"resource":{"resourceType":"Patient","id":"` + old + `","active":false},"request":{"method":"PUT","url":"Patient/` + old + `","ifMatch":"W/\"1\""}},
	 {"request":{"method":"DELETE","url":"Patient/` + gone + `"}}
	]}`
	r := e.do("POST", "/fhir", body)
	if r.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	if typ := r.json(t)["type"]; typ != "transaction-response" {
		t.Fatalf("type %v", typ)
	}
	statuses, locs := responseEntries(t, r)
	want := []string{"200 OK", "201 Created", "201 Created", "201 Created", "200 OK", "204 No Content"}
	if diff := cmp.Diff(want, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	// The GET ran after the writes: it sees the update.
	if got := string(r.body); !strings.Contains(got, `"active":false`) {
		t.Errorf("the search entry does not see the update: %s", got)
	}
	obs := e.get("/fhir/" + strings.TrimSuffix(locs[1], "/_history/1")).json(t)
	patient := strings.TrimSuffix(locs[2], "/_history/1")
	org := strings.TrimSuffix(locs[3], "/_history/1")
	if got := obs["subject"].(map[string]any)["reference"]; got != patient {
		t.Errorf("subject = %v, want %s", got, patient)
	}
	if got := obs["performer"].([]any)[0].(map[string]any)["reference"]; got != org {
		t.Errorf("performer = %v, want %s (the conditional create of the bundle)", got, org)
	}
	if r := e.get("/fhir/Patient/" + gone); r.status != http.StatusGone {
		t.Errorf("deleted patient: %d", r.status)
	}
	// The same bundle again: the conditional create matches the stored
	// Organization, and the stale If-Match fails the whole transaction.
	r = e.do("POST", "/fhir", body)
	if r.status != http.StatusPreconditionFailed || r.expression(t) != "Bundle.entry[4]" {
		t.Errorf("replay: %d %s, want 412 naming Bundle.entry[4]", r.status, r.body)
	}
}

// A failing entry fails the whole transaction, names the entry, and
// leaves nothing behind: no resource, no version, no change.
func TestTransactionFailingEntryRollsBack(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", `{"resourceType":"Patient"}`)
	good := `{"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:33333333-3333-4333-8333-333333333333"}},"request":{"method":"POST","url":"Observation"}}`
	for _, tc := range []struct {
		name, entry string
		status      int
		expr        string
	}{
		{"invalid resource", `{"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}`,
			400, "Bundle.entry[2].resource.status"},
		{"stale If-Match", `{"resource":{"resourceType":"Patient","id":"` + id + `"},"request":{"method":"PUT","url":"Patient/` + id + `","ifMatch":"W/\"7\""}}`,
			412, "Bundle.entry[2]"},
		{"unresolvable reference", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"}},"request":{"method":"POST","url":"Observation"}}`,
			400, "Bundle.entry[2].resource.subject.reference"},
		{"conditional reference without match", `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=nobody"}},"request":{"method":"POST","url":"Observation"}}`,
			400, "Bundle.entry[2].resource.subject.reference"},
		{"PATCH entry without a patch", `{"request":{"method":"PATCH","url":"Patient/` + id + `"}}`, 400, "Bundle.entry[2].resource"},
		{"resource of another type", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Observation"}}`,
			400, "Bundle.entry[2].resource.resourceType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.get("/fhir/_history").json(t)
			r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+good+`,`+tc.entry+`]}`)
			if r.status != tc.status || r.expression(t) != tc.expr {
				t.Errorf("%d %s, want %d naming %s", r.status, r.body, tc.status, tc.expr)
			}
			after := e.get("/fhir/_history").json(t)
			if diff := cmp.Diff(before["entry"], after["entry"]); diff != "" {
				t.Errorf("the change log changed (-before +after):\n%s", diff)
			}
			if got, _ := e.get("/fhir/Observation").json(t)["entry"].([]any); len(got) != 0 {
				t.Errorf("%d Observations stored", len(got))
			}
		})
	}
}

// In a batch each entry stands alone: a failing one gets its outcome.
func TestBatch(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}},
	 {"request":{"method":"GET","url":"Patient/nope"}},
	 {"request":{"method":"GET","url":"Patient?active=true"}}
	]}`)
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	statuses, _ := responseEntries(t, r)
	if diff := cmp.Diff([]string{"201 Created", "400 Bad Request", "404 Not Found", "200 OK"}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	out := r.json(t)["entry"].([]any)[1].(map[string]any)["response"].(map[string]any)["outcome"].(map[string]any)
	expr := out["issue"].([]any)[0].(map[string]any)["expression"].([]any)[0]
	if expr != "Bundle.entry[1].resource.status" {
		t.Errorf("outcome expression %v", expr)
	}
	search := r.json(t)["entry"].([]any)[3].(map[string]any)["resource"].(map[string]any)
	if n := len(search["entry"].([]any)); n != 1 {
		t.Errorf("the search entry found %d patients, want the one the batch created", n)
	}
}

var storedReference = regexp.MustCompile(`"reference":"([^"#][^"]*)"`)

// All Synthea bundles go through as transactions, every reference in the
// stored resources names a stored resource, and $everything returns each
// patient's resources (acceptance 1).
func TestSyntheaTransactions(t *testing.T) {
	t.Parallel() // long, on its own database: uses the second CPU while the rest run
	e := newEnv(t)
	files, err := filepath.Glob("../../testdata/synthea/*.json")
	if err != nil || len(files) != 7 {
		t.Fatalf("want the 7 Synthea bundles, found %d: %v", len(files), err)
	}
	var stored []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := e.do("POST", "/fhir", string(b))
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %.2000s", filepath.Base(f), r.status, r.body)
		}
		statuses, locs := responseEntries(t, r)
		for i, s := range statuses {
			if s != "201 Created" {
				t.Fatalf("%s entry %d: %s", filepath.Base(f), i, s)
			}
			stored = append(stored, strings.TrimSuffix(locs[i], "/_history/1"))
		}
	}
	known := map[string]bool{}
	for _, k := range stored {
		known[k] = true
	}
	refs := 0
	var loaded []map[string]any
	for _, k := range stored {
		raw := e.get("/fhir/" + k)
		if raw.status != http.StatusOK {
			t.Fatalf("GET %s: %d", k, raw.status)
		}
		loaded = append(loaded, raw.json(t))
		for _, m := range storedReference.FindAllStringSubmatch(string(raw.body), -1) {
			refs++
			if !known[m[1]] {
				t.Errorf("%s refers to %s, which the transactions did not store", k, m[1])
			}
		}
	}
	if refs < 4000 {
		t.Errorf("only %d references checked", refs)
	}
	patients := 0
	for _, r := range loaded {
		if r["resourceType"] != "Patient" {
			continue
		}
		patients++
		id := r["id"].(string)
		wantM, wantI := expectedEverything(t, loaded, id)
		w := e.walk(t, "/fhir/Patient/"+id+"/$everything?_count=1000")
		if diff := cmp.Diff(byIDThenType(wantM), w.matches); diff != "" {
			t.Errorf("Patient/%s $everything matches (-want +got):\n%s", id, diff)
		}
		if diff := cmp.Diff(wantI, sortedKeys(w.included)); diff != "" {
			t.Errorf("Patient/%s $everything included (-want +got):\n%s", id, diff)
		}
	}
	if patients != 5 {
		t.Errorf("%d patients, want the 5 of the Synthea bundles", patients)
	}
}

// PATCH entries: a Binary holding a JSON Patch, a Parameters holding a
// FHIRPath Patch; in a transaction and in a batch.
func TestBundlePatchEntries(t *testing.T) {
	e := newEnv(t)
	a := e.create("Patient", `{"resourceType":"Patient","active":true,"gender":"male"}`)
	b := e.create("Patient", `{"resourceType":"Patient","active":true,"birthDate":"1980-01-01"}`)
	jsonPatch := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/gender","value":"female"}]`))
	binary := `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + jsonPatch + `"}`
	fhirPathPatch := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[
	  {"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.birthDate"},{"name":"value","valueDate":"1990-02-03"}]}]}`
	for _, typ := range []string{"transaction", "batch"} {
		r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"`+typ+`","entry":[
		 {"resource":`+binary+`,"request":{"method":"PATCH","url":"Patient/`+a+`"}},
		 {"resource":`+fhirPathPatch+`,"request":{"method":"PATCH","url":"Patient?_id=`+b+`"}}]}`)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", typ, r.status, r.body)
		}
		// The batch applies the same patches again: no change, still 200.
		statuses, _ := responseEntries(t, r)
		if diff := cmp.Diff([]string{"200 OK", "200 OK"}, statuses); diff != "" {
			t.Errorf("%s statuses (-want +got):\n%s", typ, diff)
		}
	}
	if got := e.get("/fhir/Patient/" + a).json(t); got["gender"] != "female" || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("JSON Patch entry: %v", got)
	}
	if got := e.get("/fhir/Patient/" + b).json(t); got["birthDate"] != "1990-02-03" || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("FHIRPath Patch entry: %v", got)
	}
	// A patch of a missing resource fails the transaction, naming the entry.
	r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":`+binary+`,"request":{"method":"PATCH","url":"Patient/`+a+`"}},
	 {"resource":`+binary+`,"request":{"method":"PATCH","url":"Patient/missing"}}]}`)
	if r.status != http.StatusNotFound || r.expression(t) != "Bundle.entry[1]" {
		t.Errorf("patch of a missing resource: %d at %q: %s", r.status, r.expression(t), r.body)
	}
	// A PATCH entry must carry a patch.
	r = e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient"},"request":{"method":"PATCH","url":"Patient/`+a+`"}}]}`)
	if r.status != http.StatusBadRequest || r.expression(t) != "Bundle.entry[0].resource" {
		t.Errorf("PATCH entry with a Patient: %d at %q: %s", r.status, r.expression(t), r.body)
	}
}

// A bundle is read as a stream: a body over the size limit is refused
// (413) once the limit is passed, members may follow the entries, and a
// bad entry in the middle is named as before.
func TestBundleStreaming(t *testing.T) {
	e := newEnv(t)
	entry := `{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`
	big := `{"resourceType":"Bundle","type":"batch","entry":[` + entry + strings.Repeat(","+entry, (3<<20)/len(entry)) + `]}`
	if r := e.do("POST", "/fhir", big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the limit: %d %.300s", r.status, r.body)
	}
	if got, _ := e.get("/fhir/Patient").json(t)["entry"].([]any); len(got) != 0 {
		t.Errorf("%d patients stored from a refused bundle", len(got))
	}

	r := e.do("POST", "/fhir", `{"entry":[`+entry+`,`+entry+`],"resourceType":"Bundle","type":"transaction"}`)
	if r.status != http.StatusOK || r.json(t)["type"] != "transaction-response" {
		t.Fatalf("type after entry: %d %s", r.status, r.body)
	}
	if statuses, _ := responseEntries(t, r); !cmp.Equal(statuses, []string{"201 Created", "201 Created"}) {
		t.Errorf("statuses %v", statuses)
	}

	bad := `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}},"request":{"method":"POST","url":"Observation"}}`
	r = e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+entry+`,`+bad+`,`+entry+`]}`)
	if r.status != http.StatusBadRequest || r.expression(t) != "Bundle.entry[1].resource.valueQuantity.value" {
		t.Errorf("a bad entry in the middle: %d %s", r.status, r.body)
	}
}

// A batch commits its plain writes together, but each entry still stands
// alone: one that fails (stale If-Match, mismatched id) gets its outcome
// and the others are written, with the response entries the single
// interactions give.
func TestBatchGroupWithFailingEntry(t *testing.T) {
	e := newEnv(t)
	p1 := e.create("Patient", `{"resourceType":"Patient","active":true}`)
	p2 := e.create("Patient", `{"resourceType":"Patient","active":true}`)
	p3 := e.create("Patient", `{"resourceType":"Patient","active":true}`)
	r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"`+p1+`","active":false},"request":{"method":"PUT","url":"Patient/`+p1+`","ifMatch":"W/\"7\""}},
	 {"resource":{"resourceType":"Patient","id":"other","active":false},"request":{"method":"PUT","url":"Patient/`+p2+`"}},
	 {"resource":{"resourceType":"Patient","id":"`+p2+`","active":false},"request":{"method":"PUT","url":"Patient/`+p2+`","ifMatch":"W/\"1\""}},
	 {"request":{"method":"DELETE","url":"Patient/`+p3+`"}},
	 {"request":{"method":"DELETE","url":"Patient/missing"}}
	]}`)
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	statuses, locs := responseEntries(t, r)
	want := []string{"201 Created", "412 Precondition Failed", "400 Bad Request", "200 OK", "204 No Content", "204 No Content"}
	if diff := cmp.Diff(want, statuses); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	entries := r.json(t)["entry"].([]any)
	for i, mention := range map[int]string{1: "If-Match names version 7", 2: "does not match the URL id"} {
		out, _ := entries[i].(map[string]any)["response"].(map[string]any)["outcome"].(map[string]any)
		if b, _ := json.Marshal(out); out == nil || !strings.Contains(string(b), mention) {
			t.Errorf("entry %d: no outcome saying %q: %v", i, mention, entries[i])
		}
	}
	// The created patient: as a single create answers (resource, location,
	// version headers).
	created := entries[0].(map[string]any)
	resp := created["response"].(map[string]any)
	res, _ := created["resource"].(map[string]any)
	if res == nil || res["gender"] != "male" || resp["etag"] != `W/"1"` || resp["lastModified"] == nil ||
		locs[0] != "Patient/"+res["id"].(string)+"/_history/1" {
		t.Errorf("create entry: %v", created)
	}
	if got := e.get("/fhir/" + strings.TrimSuffix(locs[0], "/_history/1")); got.status != http.StatusOK {
		t.Errorf("created patient: %d", got.status)
	}
	if got := e.get("/fhir/Patient/" + p1).json(t); got["active"] != true {
		t.Errorf("the stale update was written: %v", got)
	}
	if got := e.get("/fhir/Patient/" + p2).json(t); got["active"] != false || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("the update was not written: %v", got)
	}
	if got := e.get("/fhir/Patient/" + p3); got.status != http.StatusGone {
		t.Errorf("deleted patient: %d", got.status)
	}
	// Prefer: return=minimal leaves the resource out, as for a single create.
	r = e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, "Prefer", "return=minimal")
	if first := r.json(t)["entry"].([]any)[0].(map[string]any); first["resource"] != nil || first["response"].(map[string]any)["status"] != "201 Created" {
		t.Errorf("minimal: %v", first)
	}
}
