package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// transactionOf wraps entries in a transaction Bundle.
func transactionOf(entries ...string) string {
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
}

const npi = "http://example.org/npi"

// practitionerEntry is a conditional create (POST with ifNoneExist) or a
// conditional update without id (PUT with criteria) of the Practitioner
// with identifier npi|value.
func practitionerEntry(method, value string) string {
	req := `{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=` + npi + `|` + value + `"}`
	if method == "PUT" {
		req = `{"method":"PUT","url":"Practitioner?identifier=` + npi + `|` + value + `"}`
	}
	return `{"fullUrl":"urn:uuid:aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","resource":{"resourceType":"Practitioner",
	  "identifier":[{"system":"` + npi + `","value":"` + value + `"}]},"request":` + req + `}`
}

// observationEntry creates an Observation whose performer is the
// Practitioner of practitionerEntry.
const observationEntry = `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
  "performer":[{"reference":"urn:uuid:aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}]},"request":{"method":"POST","url":"Observation"}}`

// guardHolder returns the target of the guard held for typ?criteria, ""
// when none is: it probes with a claim, which succeeds only on a free key.
func (e *env) guardHolder(t *testing.T, typ, criteria string) string {
	t.Helper()
	c, err := search.ParseCriteria(fhir.NewRegistry(), typ, criteria)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	probe := store.Guard{Key: c.Canonical, Target: "Probe/1", Since: time.Now().UTC()}
	held, claimed, err := e.store.ClaimGuard(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	if claimed {
		if err := e.store.ReleaseGuard(ctx, probe); err != nil {
			t.Fatal(err)
		}
		return ""
	}
	return held.Target
}

// Concurrent transactions conditionally creating the same Practitioner,
// through two instances, create it once, and every transaction's
// reference points to that one.
func TestTransactionConditionalCreateRace(t *testing.T) {
	e := newEnv(t)
	other, _ := e.second()
	const n = 8
	for _, tc := range []struct {
		name    string
		methods []string // entry i uses methods[i%len]
	}{
		{"POST ifNoneExist", []string{"POST"}},
		{"conditional PUT without id", []string{"PUT"}},
		{"both", []string{"POST", "PUT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			value := strings.ReplaceAll(tc.name, " ", "-")
			results := make([]*response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					base := e.srv.URL
					if i%2 == 1 {
						base = other.URL
					}
					results[i] = do(t, base, "POST", "/fhir", transactionOf(practitionerEntry(tc.methods[i%len(tc.methods)], value), observationEntry))
				}()
			}
			wg.Wait()
			ids, _, _ := searchEntries(t, e.get("/fhir/Practitioner?identifier="+npi+"|"+value))
			if len(ids) != 1 {
				t.Fatalf("%d Practitioners match, want 1: %v", len(ids), ids)
			}
			want := "Practitioner/" + ids[0]
			if got := len(e.get("/fhir/" + want + "/_history").json(t)["entry"].([]any)); got != 1 {
				t.Errorf("%s has %d versions, want 1", want, got)
			}
			created, succeeded := 0, 0
			for i, r := range results {
				if r.status == http.StatusConflict && strings.Contains(string(r.body), "try again") {
					continue // a clear answer to retry: allowed, never a second Practitioner
				}
				if r.status != http.StatusOK {
					t.Errorf("transaction %d: %d %s", i, r.status, r.body)
					continue
				}
				succeeded++
				statuses, locs := responseEntries(t, r)
				if statuses[0] == "201 Created" {
					created++
				}
				if !strings.HasPrefix(locs[0], want+"/_history/") {
					t.Errorf("transaction %d: the Practitioner entry is %s, want %s", i, locs[0], want)
				}
				obs := e.get("/fhir/" + strings.TrimSuffix(locs[1], "/_history/1")).json(t)
				if got := obs["performer"].([]any)[0].(map[string]any)["reference"]; got != want {
					t.Errorf("transaction %d: performer %v, want %s", i, got, want)
				}
			}
			if succeeded == 0 || created != 1 {
				t.Errorf("%d transactions succeeded, %d created the Practitioner; want some, and 1", succeeded, created)
			}
			if got := e.guardHolder(t, "Practitioner", "identifier="+npi+"|"+value); got != want {
				t.Errorf("the guard names %q, want the created %s", got, want)
			}
		})
	}
}

// A conditional create that fails after claiming its guard gives the
// guard back, so a competing creator need not wait for it to be judged
// abandoned; one that commits keeps it.
func TestConditionalCreateFailureReleasesGuard(t *testing.T) {
	e := newEnv(t)
	pat := e.create("Patient", `{"resourceType":"Patient"}`)
	for range 2 {
		e.create("Task", `{"resourceType":"Task","status":"draft","intent":"order","identifier":[{"value":"dup"}]}`)
	}
	staleIfMatch := `{"resource":{"resourceType":"Patient","id":"` + pat + `"},"request":{"method":"PUT","url":"Patient/` + pat + `","ifMatch":"W/\"7\""}}`
	badSP := `{"resourceType":"SearchParameter","url":"http://example.org/sp/bad","name":"Bad","status":"active","description":"x",
	  "code":"bad","base":["Patient"],"type":"token","expression":"Patient.nothingHere"}`
	for _, tc := range []struct {
		name       string
		path, body string
		header     []string
		status     int
		expr       string
		typ, crit  string // the criteria of the guard
		kept       bool
	}{
		{name: "committed transaction keeps it", path: "/fhir", body: transactionOf(practitionerEntry("POST", "kept")),
			status: 200, typ: "Practitioner", crit: "identifier=" + npi + "|kept", kept: true},
		{name: "stale If-Match of a later entry", path: "/fhir", body: transactionOf(practitionerEntry("POST", "412"), staleIfMatch),
			status: 412, expr: "Bundle.entry[1]", typ: "Practitioner", crit: "identifier=" + npi + "|412"},
		{name: "conditional PUT, then a stale If-Match", path: "/fhir", body: transactionOf(practitionerEntry("PUT", "put412"), staleIfMatch),
			status: 412, expr: "Bundle.entry[1]", typ: "Practitioner", crit: "identifier=" + npi + "|put412"},
		{name: "unresolvable reference", path: "/fhir", body: transactionOf(practitionerEntry("POST", "ref"),
			`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:44444444-4444-4444-8444-444444444444"}},"request":{"method":"POST","url":"Observation"}}`),
			status: 400, expr: "Bundle.entry[1].resource.subject.reference", typ: "Practitioner", crit: "identifier=" + npi + "|ref"},
		{name: "a later conditional create matches several", path: "/fhir", body: transactionOf(practitionerEntry("POST", "several"),
			`{"resource":{"resourceType":"Task","status":"draft","intent":"order"},"request":{"method":"POST","url":"Task","ifNoneExist":"identifier=dup"}}`),
			status: 412, expr: "Bundle.entry[1]", typ: "Practitioner", crit: "identifier=" + npi + "|several"},
		{name: "two entries create under the same criteria", path: "/fhir",
			body:   transactionOf(practitionerEntry("POST", "twice"), strings.Replace(practitionerEntry("POST", "twice"), "aaaaaaaa-aaaa", "bbbbbbbb-aaaa", 1)),
			status: 400, expr: "Bundle.entry[1]", typ: "Practitioner", crit: "identifier=" + npi + "|twice"},
		{name: "single conditional create of an invalid SearchParameter", path: "/fhir/SearchParameter", body: badSP,
			header: []string{"If-None-Exist", "url=http://example.org/sp/bad"},
			status: 422, expr: "SearchParameter.expression", typ: "SearchParameter", crit: "url=http://example.org/sp/bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", tc.path, tc.body, tc.header...)
			if r.status != tc.status || (tc.expr != "" && r.expression(t) != tc.expr) {
				t.Fatalf("%d %s, want %d naming %q", r.status, r.body, tc.status, tc.expr)
			}
			holder := e.guardHolder(t, tc.typ, tc.crit)
			if !tc.kept {
				if holder != "" {
					t.Errorf("the guard is still held for %s", holder)
				}
				return
			}
			_, locs := responseEntries(t, r)
			if want := strings.Split(locs[0], "/_history/")[0]; holder != want {
				t.Errorf("the guard names %q, want the created %s", holder, want)
			}
		})
	}
	// After the failures, each criteria matches nothing: no partial write.
	for _, v := range []string{"412", "put412", "ref", "several", "twice"} {
		if ids, _, _ := searchEntries(t, e.get("/fhir/Practitioner?identifier="+npi+"|"+v)); len(ids) != 0 {
			t.Errorf("%s: %d Practitioners stored", v, len(ids))
		}
	}
}
