package ehrtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
)

const token = "stand-in-test-token"

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// call sends one request to the stand-in with the bearer token (unless
// tok is empty) and decodes the JSON answer.
func call(t *testing.T, method, url, tok, body string, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(data, &a.body); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %v: %.300s", method, url, resp.StatusCode, err, data)
	}
	return a
}

func wantStatus(t *testing.T, what string, a answer, want int) {
	t.Helper()
	if a.status != want {
		t.Fatalf("%s: status %d, want %d: %v", what, a.status, want, a.body)
	}
}

// TestStandIn drives one stand-in shaped like Epic through create, read,
// search, update with If-Match, the refusals and /_all.
func TestStandIn(t *testing.T) {
	s := ehrtest.Start(t, ehrtest.Options{Capability: ehrtest.EpicCapability(t), Token: token})
	base := s.URL()

	// metadata is open and is the statement given.
	got, err := ehr.Discover(t.Context(), http.DefaultClient, base)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ehr.ParseCapabilityStatement(ehrtest.EpicCapability(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("discovered profile (-want +got):\n%s", diff)
	}

	obs := `{"resourceType":"Observation","id":"ours","status":"final","code":{"text":"mood"},` +
		`"identifier":[{"system":"urn:kapfhir:test","value":"obs-1"}],"valueQuantity":{"value":4.50}}`
	wantStatus(t, "create without token", call(t, "POST", base+"/Observation", "", obs, nil), http.StatusUnauthorized)
	wantStatus(t, "create with a wrong token", call(t, "POST", base+"/Observation", "other", obs, nil), http.StatusUnauthorized)

	created := call(t, "POST", base+"/Observation", token, obs, nil)
	wantStatus(t, "create", created, http.StatusCreated)
	loc := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `/Observation/([^/]+)/_history/([^/]+)$`).
		FindStringSubmatch(created.header.Get("Location"))
	if loc == nil {
		t.Fatalf("Location %q is not %s/Observation/id/_history/vid", created.header.Get("Location"), base)
	}
	id, v1 := loc[1], loc[2]
	if id == "ours" || created.body["id"] != id {
		t.Errorf("created id %v, Location id %s: the server assigns ids", created.body["id"], id)
	}
	if etag := created.header.Get("ETag"); etag != `W/"`+v1+`"` {
		t.Errorf("ETag %q, want W/%q", etag, v1)
	}

	read := call(t, "GET", base+"/Observation/"+id, token, "", nil)
	wantStatus(t, "read", read, http.StatusOK)
	if read.body["status"] != "final" || read.header.Get("ETag") != `W/"`+v1+`"` {
		t.Errorf("read: %v, ETag %q", read.body, read.header.Get("ETag"))
	}
	wantStatus(t, "read unknown", call(t, "GET", base+"/Observation/nope", token, "", nil), http.StatusNotFound)

	for _, c := range []struct {
		query string
		ids   []string
	}{
		{"identifier=urn:kapfhir:test|obs-1", []string{id}},
		{"identifier=urn:kapfhir:test|obs-2", nil},
		{"identifier=obs-1", []string{id}},
	} {
		found := call(t, "GET", base+"/Observation?"+c.query, token, "", nil)
		wantStatus(t, "search "+c.query, found, http.StatusOK)
		if diff := cmp.Diff(c.ids, entryIDs(found)); diff != "" {
			t.Errorf("search %s (-want +got):\n%s", c.query, diff)
		}
	}

	amended := strings.Replace(strings.Replace(obs, `"id":"ours"`, `"id":"`+id+`"`, 1), `"final"`, `"amended"`, 1)
	wantStatus(t, "update with a stale If-Match",
		call(t, "PUT", base+"/Observation/"+id, token, amended, map[string]string{"If-Match": `W/"stale"`}),
		http.StatusPreconditionFailed)
	updated := call(t, "PUT", base+"/Observation/"+id, token, amended, map[string]string{"If-Match": `W/"` + v1 + `"`})
	wantStatus(t, "update", updated, http.StatusOK)
	v2 := updated.body["meta"].(map[string]any)["versionId"]
	if v2 == v1 || updated.header.Get("ETag") != `W/"`+v2.(string)+`"` {
		t.Errorf("update: version %v (was %s), ETag %q", v2, v1, updated.header.Get("ETag"))
	}
	wantStatus(t, "update with the first version's If-Match",
		call(t, "PUT", base+"/Observation/"+id, token, amended, map[string]string{"If-Match": `W/"` + v1 + `"`}),
		http.StatusPreconditionFailed)

	unknown := strings.Replace(amended, `"id":"`+id+`"`, `"id":"not-there"`, 1)
	wantStatus(t, "update as create", call(t, "PUT", base+"/Observation/not-there", token, unknown, nil), http.StatusMethodNotAllowed)
	wantStatus(t, "conditional update", call(t, "PUT", base+"/Observation?identifier=urn:kapfhir:test|obs-1", token, amended, nil), http.StatusMethodNotAllowed)
	enc := `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"}}`
	wantStatus(t, "create a read-only type", call(t, "POST", base+"/Encounter", token, enc, nil), http.StatusMethodNotAllowed)
	invalid := call(t, "POST", base+"/Observation", token, `{"resourceType":"Observation","status":"final"}`, nil)
	wantStatus(t, "create an invalid resource", invalid, http.StatusBadRequest)
	if invalid.body["resourceType"] != "OperationOutcome" || !strings.Contains(toJSON(t, invalid.body), `"Observation.code"`) {
		t.Errorf("invalid resource: %v, want an OperationOutcome naming Observation.code", invalid.body)
	}

	// Paging with _count follows the next links to every match once.
	var patients []string
	patientVersion := map[string]string{}
	for i := range 3 {
		p := call(t, "POST", base+"/Patient", token, fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"%d"}]}`, i), nil)
		wantStatus(t, "create Patient", p, http.StatusCreated)
		patients = append(patients, p.body["id"].(string))
		patientVersion[p.body["id"].(string)] = p.body["meta"].(map[string]any)["versionId"].(string)
	}
	var paged []string
	pages := 0
	for next := base + "/Patient?_count=2"; next != ""; pages++ {
		page := call(t, "GET", next, token, "", nil)
		wantStatus(t, "search page", page, http.StatusOK)
		paged = append(paged, entryIDs(page)...)
		next = ""
		links, _ := page.body["link"].([]any)
		for _, l := range links {
			if l := l.(map[string]any); l["relation"] == "next" {
				next = l["url"].(string)
			}
		}
	}
	if diff := cmp.Diff(patients, paged); diff != "" || pages != 2 {
		t.Errorf("paged search in %d pages (-want +got):\n%s", pages, diff)
	}

	all, err := s.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var stored = map[string][]string{}
	for key, versions := range all {
		for _, v := range versions {
			var r struct {
				Status string
				Meta   struct{ VersionID string }
			}
			if err := json.Unmarshal(v, &r); err != nil {
				t.Fatal(err)
			}
			stored[key] = append(stored[key], r.Status+"@"+r.Meta.VersionID)
		}
	}
	wantStored := map[string][]string{"Observation/" + id: {"final@" + v1, "amended@" + v2.(string)}}
	for _, p := range patients {
		wantStored["Patient/"+p] = []string{"@" + patientVersion[p]}
	}
	if diff := cmp.Diff(wantStored, stored); diff != "" {
		t.Errorf("/_all (-want +got):\n%s", diff)
	}
	// A second read gives the same order (medplum's history read reverses
	// its store in place; /_all must not depend on it).
	if again, err := s.All(context.Background()); err != nil || !cmp.Equal(all, again) {
		t.Errorf("/_all read again: %v; differs: %v", err, !cmp.Equal(all, again))
	}

	// Epic lists no conditional create: If-None-Exist is ignored, a match
	// or not (the sync engine must search first itself).
	again := call(t, "POST", base+"/Observation", token, obs, map[string]string{"If-None-Exist": "identifier=urn:kapfhir:test|obs-1"})
	wantStatus(t, "create with If-None-Exist", again, http.StatusCreated)
	if again.body["id"] == id {
		t.Errorf("If-None-Exist was honoured although the statement lists no conditionalCreate")
	}
}

// entryIDs lists the ids of a searchset's resources.
func entryIDs(a answer) []string {
	var ids []string
	entries, _ := a.body["entry"].([]any)
	for _, e := range entries {
		ids = append(ids, e.(map[string]any)["resource"].(map[string]any)["id"].(string))
	}
	return ids
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
