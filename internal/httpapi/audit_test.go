package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/auth"
)

const issuer = "https://idp.example"

var testTokens = tokens{
	"clinician": {Issuer: issuer, Subject: "u1", ClientID: "chart-app", FHIRUser: "Practitioner/pr1", PurposeOfUse: []string{"TREAT"}, Scopes: []string{"user/*.cruds"}},
	"backend":   {Issuer: issuer, Subject: "svc", ClientID: "backend", PurposeOfUse: []string{"HOPERAT"}, Scopes: []string{"system/*.cruds"}},
	// A token whose scopes grant no deletes.
	"reader": {Issuer: issuer, Subject: "u2", ClientID: "chart-app", Scopes: []string{"user/*.rs"}},
}

func newAuditEnv(t *testing.T, authn auth.Authenticator) *env {
	t.Helper()
	return start(&env{t: t, authn: authn, auditOn: true}, nil)
}

// audits waits for the sink to write what was recorded, then returns the
// AuditEvents a FHIR search with query finds (as the backend client).
func (e *env) audits(query string) []map[string]any {
	e.t.Helper()
	if err := e.audit.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return e.searchAll("AuditEvent?" + query + "&_count=100")
}

func (e *env) searchAll(query string) []map[string]any {
	e.t.Helper()
	headers := []string{}
	if e.authn != nil {
		headers = []string{"Authorization", "Bearer backend"}
	}
	r := e.get("/fhir/"+query, headers...)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", query, r.status, r.body)
	}
	var out []map[string]any
	entries, _ := r.json(e.t)["entry"].([]any)
	for _, en := range entries {
		out = append(out, en.(map[string]any)["resource"].(map[string]any))
	}
	return out
}

// auditSummary is what a test checks of an AuditEvent.
type auditSummary struct {
	Type, Subtype, Action, Outcome string
	Who                            string // reference, identifier value or display of the requestor
	Purpose                        []string
	Entities                       []string // what.reference, name, or "query:<decoded>"
}

func summarize(t *testing.T, ae map[string]any) auditSummary {
	t.Helper()
	s := auditSummary{Action: str(ae, "action"), Outcome: str(ae, "outcome")}
	s.Type = str(ae["type"].(map[string]any), "code")
	if st, ok := ae["subtype"].([]any); ok {
		s.Subtype = str(st[0].(map[string]any), "code")
	}
	for _, p := range list(ae, "purposeOfEvent") {
		s.Purpose = append(s.Purpose, str(list(p, "coding")[0], "code"))
	}
	for _, a := range list(ae, "agent") {
		if a["requestor"] != true {
			continue
		}
		who := a["who"].(map[string]any)
		switch {
		case who["reference"] != nil:
			s.Who = str(who, "reference")
		case who["identifier"] != nil:
			s.Who = str(who["identifier"].(map[string]any), "value")
		default:
			s.Who = str(who, "display")
		}
	}
	for _, en := range list(ae, "entity") {
		switch {
		case en["query"] != nil:
			q, err := base64.StdEncoding.DecodeString(str(en, "query"))
			if err != nil {
				t.Fatal(err)
			}
			s.Entities = append(s.Entities, "query:"+string(q))
		case en["what"] != nil:
			ref := str(en["what"].(map[string]any), "reference")
			if str(en["role"].(map[string]any), "code") == "1" {
				ref = "patient:" + ref
			}
			s.Entities = append(s.Entities, ref)
		default:
			s.Entities = append(s.Entities, str(en, "name"))
		}
	}
	return s
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func list(m map[string]any, k string) []map[string]any {
	var out []map[string]any
	l, _ := m[k].([]any)
	for _, x := range l {
		out = append(out, x.(map[string]any))
	}
	return out
}

// oneAudit finds the single AuditEvent query matches and summarizes it.
func (e *env) oneAudit(query string) auditSummary {
	e.t.Helper()
	found := e.audits(query)
	// A response bigger than the server's write buffer reaches the client
	// before the middleware behind the handler has queued its event: wait
	// for it a little (no timing is asserted).
	for i := 0; len(found) == 0 && i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		found = e.audits(query)
	}
	if len(found) != 1 {
		e.t.Fatalf("AuditEvent?%s: %d events, want 1", query, len(found))
	}
	return summarize(e.t, found[0])
}

const (
	rest   = "rest"
	export = "110106"
)

var clinician = []string{"TREAT"}

// TestAuditInteractions: each kind of interaction leaves one AuditEvent
// saying who (the token's fhirUser), what (the resource and version, the
// patient, the query), the outcome and the purpose of use, found through
// the FHIR search API.
func TestAuditInteractions(t *testing.T) {
	e := newAuditEnv(t, testTokens)
	ok := func(r *response, status int) *response {
		e.t.Helper() // e.t: the subtest running
		if r.status != status {
			e.t.Fatalf("%d, want %d: %s", r.status, status, r.body)
		}
		return r
	}
	ok(e.as("clinician", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"female"}`), 201)
	obs := ok(e.as("clinician", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"}}`), 201).json(t)["id"].(string)

	cases := []struct {
		name  string
		do    func()
		query string
		want  auditSummary
	}{
		{"create", func() {}, "subtype=create&entity=Observation/" + obs + "/_history/1",
			auditSummary{rest, "create", "C", "0", "Practitioner/pr1", clinician, []string{"Observation/" + obs + "/_history/1"}}},
		{"update", func() {}, "subtype=update&patient=Patient/p1",
			auditSummary{rest, "update", "U", "0", "Practitioner/pr1", clinician, []string{"Patient/p1/_history/1", "patient:Patient/p1"}}},
		{"read", func() { ok(e.as("clinician", "GET", "/fhir/Patient/p1", ""), 200) }, "subtype=read&patient=Patient/p1",
			auditSummary{rest, "read", "R", "0", "Practitioner/pr1", clinician, []string{"Patient/p1/_history/1", "patient:Patient/p1"}}},
		{"vread", func() { ok(e.as("clinician", "GET", "/fhir/Patient/p1/_history/1", ""), 200) }, "subtype=vread&patient=Patient/p1",
			auditSummary{rest, "vread", "R", "0", "Practitioner/pr1", clinician, []string{"Patient/p1/_history/1", "patient:Patient/p1"}}},
		{"search", func() { ok(e.as("clinician", "GET", "/fhir/Observation?subject=Patient/p1&code=weight", ""), 200) }, "subtype=search-type&agent=Practitioner/pr1",
			auditSummary{rest, "search-type", "E", "0", "Practitioner/pr1", clinician, []string{"query:code=weight&subject=Patient%2Fp1"}}},
		{"patch", func() {
			ok(e.as("clinician", "PATCH", "/fhir/Patient/p1", `[{"op":"replace","path":"/gender","value":"other"}]`, "Content-Type", "application/json-patch+json"), 200)
		}, "subtype=patch&patient=Patient/p1",
			auditSummary{rest, "patch", "U", "0", "Practitioner/pr1", clinician, []string{"Patient/p1/_history/2", "patient:Patient/p1"}}},
		{"history", func() { ok(e.as("clinician", "GET", "/fhir/Patient/p1/_history", ""), 200) }, "subtype=history-instance&patient=Patient/p1",
			auditSummary{rest, "history-instance", "R", "0", "Practitioner/pr1", clinician, []string{"Patient/p1", "patient:Patient/p1"}}},
		{"operation", func() { ok(e.as("backend", "GET", "/fhir/Patient/p1/$everything", ""), 200) }, "subtype=operation&patient=Patient/p1",
			auditSummary{rest, "operation", "E", "0", "backend", []string{"HOPERAT"}, []string{"Patient/p1", "patient:Patient/p1"}}},
		{"delete", func() { ok(e.as("clinician", "DELETE", "/fhir/Observation/"+obs, ""), 204) }, "subtype=delete&entity=Observation/" + obs + "/_history/2",
			auditSummary{rest, "delete", "D", "0", "Practitioner/pr1", clinician, []string{"Observation/" + obs + "/_history/2"}}},
		{"KAP request", func() { ok(e.as("clinician", "GET", "/kap/v1/clients/p1/consents?limit=5", ""), 200) }, "entity-name=/kap/v1/clients/p1/consents",
			auditSummary{rest, "", "R", "0", "Practitioner/pr1", clinician, []string{"/kap/v1/clients/p1/consents", "query:limit=5", "patient:Patient/p1"}}},

		{"unauthenticated", func() { ok(e.do("GET", "/fhir/Patient/p1", ""), 401) }, "outcome=4&subtype=read",
			auditSummary{rest, "read", "R", "4", "unauthenticated", nil, []string{"Patient/p1", "patient:Patient/p1"}}},
		{"forbidden", func() { ok(e.as("reader", "DELETE", "/fhir/Patient/p1", ""), 403) }, "outcome=4&subtype=delete",
			auditSummary{rest, "delete", "D", "4", "chart-app", nil, []string{"Patient/p1", "patient:Patient/p1"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			c.do()
			if diff := cmp.Diff(c.want, e.oneAudit(c.query)); diff != "" {
				t.Errorf("AuditEvent?%s (-want +got):\n%s", c.query, diff)
			}
		})
	}
	// A KAP write names the FHIR resources it wrote: the client's Patient
	// and its KAP record index.
	t.Run("KAP write", func(t *testing.T) {
		e.t = t
		r := e.as("clinician", "POST", "/kap/v1/clients", `{"name":{"family":"Moss"},"gender":"male","identifiers":[{"system":"https://clinic.example/mrn","value":"MRN-9"}]}`, "Content-Type", "application/json")
		if r.status != http.StatusCreated {
			t.Fatalf("%d, want 201: %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		want := auditSummary{rest, "", "C", "0", "Practitioner/pr1", clinician,
			[]string{"/kap/v1/clients", "Patient/" + id + "/_history/1", "patient:Patient/" + id, "List/" + id + "-kap/_history/1"}}
		if diff := cmp.Diff(want, e.oneAudit("entity-name=/kap/v1/clients&action=C")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestAuditBundles: a transaction is one event for the bundle and one per
// entry (committed together or dispatched), a batch likewise.
func TestAuditBundles(t *testing.T) {
	e := newAuditEnv(t, testTokens)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0c3b7b1e-1a8c-4d5e-9f6a-1b2c3d4e5f60","resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"t2","gender":"female"},"request":{"method":"PUT","url":"Patient/t2"}},
	 {"request":{"method":"GET","url":"Patient/t2"}}]}`
	if r := e.as("clinician", "POST", "/fhir", tx); r.status != 200 {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	b := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","id":"t3"},"request":{"method":"PUT","url":"Patient/t3"}},
	 {"request":{"method":"GET","url":"Patient/nope"}}]}`
	if r := e.as("clinician", "POST", "/fhir", b); r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	got := map[string]int{}
	for _, ae := range e.audits("agent=Practitioner/pr1") {
		s := summarize(t, ae)
		got[s.Subtype+" "+s.Outcome+" "+strings.Join(s.Entities, ",")]++
	}
	id := "" // the id the transaction's POST got
	for k := range got {
		if strings.HasPrefix(k, "create 0 Patient/") {
			id = strings.Split(strings.Fields(k)[2], "/")[1]
		}
	}
	want := map[string]int{
		"transaction 0 ": 1, "batch 0 ": 1,
		"create 0 Patient/" + id + "/_history/1,patient:Patient/" + id: 1,
		"update 0 Patient/t2/_history/1,patient:Patient/t2":            1,
		"read 0 Patient/t2/_history/1,patient:Patient/t2":              1,
		"update 0 Patient/t3/_history/1,patient:Patient/t3":            1,
		"read 4 Patient/nope,patient:Patient/nope":                     1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AuditEvents of the bundles (-want +got):\n%s", diff)
	}
}

// TestAuditExport: the kick-off is an operation event with its query, the
// download of each file an Export event.
func TestAuditExport(t *testing.T) {
	e := newAuditEnv(t, testTokens)
	for _, d := range exportData[2:4] { // two patients
		if r := e.as("backend", "PUT", "/fhir/"+d.typ+"/"+d.id, d.body); r.status != http.StatusCreated {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
	}
	r := e.as("backend", "GET", "/fhir/$export?_type=Patient", "", "Prefer", async)
	if r.status != http.StatusAccepted {
		t.Fatalf("kick-off: %d %s", r.status, r.body)
	}
	u, _ := url.Parse(r.header.Get("Content-Location"))
	e.runExports()
	m := e.as("backend", "GET", u.Path, "")
	if m.status != http.StatusOK {
		t.Fatalf("manifest: %d %s", m.status, m.body)
	}
	var mf manifest
	if err := json.Unmarshal(m.body, &mf); err != nil || len(mf.Output) != 1 {
		t.Fatalf("manifest: %v %s", err, m.body)
	}
	fu, _ := url.Parse(mf.Output[0].URL)
	file := fu.Path
	if f := e.as("backend", "GET", file, "", "Accept", "application/fhir+ndjson"); f.status != http.StatusOK {
		t.Fatalf("file: %d %s", f.status, f.body)
	}
	var kickoffs, files []auditSummary
	for _, ae := range e.audits("agent:identifier=" + url.QueryEscape(issuer+"|backend")) {
		s := summarize(t, ae)
		switch {
		case s.Type == export:
			files = append(files, s)
		case slices.Contains(s.Entities, "query:_type=Patient"):
			kickoffs = append(kickoffs, s)
		}
	}
	want := []auditSummary{{rest, "operation", "E", "0", "backend", []string{"HOPERAT"}, []string{"query:_type=Patient"}}}
	if diff := cmp.Diff(want, kickoffs); diff != "" {
		t.Errorf("kick-off (-want +got):\n%s", diff)
	}
	want = []auditSummary{{export, "", "R", "0", "backend", []string{"HOPERAT"}, []string{strings.TrimPrefix(file, "/fhir/")}}}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("file download (-want +got):\n%s", diff)
	}
}

// TestProvenanceOfAuthenticatedWrites: a write by an authenticated
// principal commits a Provenance naming it; the anonymous operator's
// writes (authentication off) get none.
func TestProvenanceOfAuthenticatedWrites(t *testing.T) {
	e := newEnvAuth(t, testTokens)
	r := e.as("clinician", "POST", "/fhir/Patient", `{"resourceType":"Patient"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	provs := e.searchAll("Provenance?target=Patient/" + id + "/_history/1")
	if len(provs) != 1 {
		t.Fatalf("%d Provenances of the create, want 1", len(provs))
	}
	p := provs[0]
	got := map[string]any{"target": p["target"], "activity": p["activity"], "agent": p["agent"]}
	want := map[string]any{
		"target":   []any{map[string]any{"reference": "Patient/" + id + "/_history/1"}},
		"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}}},
		"agent": []any{
			map[string]any{"type": participant("author"), "who": map[string]any{"reference": "Practitioner/pr1"}},
			map[string]any{"type": participant("performer"), "who": map[string]any{"identifier": map[string]any{"system": issuer, "value": "chart-app"}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Provenance (-want +got):\n%s", diff)
	}

	// A transaction: one Provenance per activity, targeting its versions.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","id":"x1"},"request":{"method":"PUT","url":"Patient/x1"}},
	 {"resource":{"resourceType":"Patient","id":"` + id + `","gender":"male"},"request":{"method":"PUT","url":"Patient/` + id + `"}}]}`
	if r := e.as("backend", "POST", "/fhir", tx); r.status != 200 {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	for target, activity := range map[string]string{"Patient/x1/_history/1": "CREATE", "Patient/" + id + "/_history/2": "UPDATE"} {
		// A reference search ignores the version: the create's is found too.
		var provs []map[string]any
		for _, p := range e.searchAll("Provenance?target=" + target) {
			if slices.ContainsFunc(list(p, "target"), func(t map[string]any) bool { return t["reference"] == target }) {
				provs = append(provs, p)
			}
		}
		if len(provs) != 1 {
			t.Fatalf("%s: %d Provenances, want 1", target, len(provs))
		}
		s := summarizeProvenance(provs[0])
		if s != activity+" backend" {
			t.Errorf("%s: Provenance %q, want %q", target, s, activity+" backend")
		}
	}

	// Authentication off: the anonymous operator.
	anon := newEnv(t)
	anon.create("Patient", `{"resourceType":"Patient"}`)
	if provs := anon.searchAll("Provenance"); len(provs) != 0 {
		t.Errorf("%d Provenances of an anonymous write, want none", len(provs))
	}
}

func participant(code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": code}}}
}

// summarizeProvenance is "<activity> <agent identifier value>".
func summarizeProvenance(p map[string]any) string {
	act := str(list(p["activity"].(map[string]any), "coding")[0], "code")
	who := list(p, "agent")[0]["who"].(map[string]any)
	return act + " " + str(who["identifier"].(map[string]any), "value")
}
