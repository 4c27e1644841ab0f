package httpapi_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// part2Tokens may read and write everything; what tells them apart is
// who they name and their purpose of use.
var part2Tokens = tokens{
	"doc":       {ClientID: "ehr-app", FHIRUser: "Practitioner/doc", Scopes: []string{"user/*.cruds"}, PurposeOfUse: []string{"TREAT"}},
	"doc-none":  {ClientID: "ehr-app", FHIRUser: "Practitioner/doc", Scopes: []string{"user/*.cruds"}},
	"doc-mkt":   {ClientID: "ehr-app", FHIRUser: "Practitioner/doc", Scopes: []string{"user/*.cruds"}, PurposeOfUse: []string{"MARKT"}},
	"nurse":     {ClientID: "ehr-app", FHIRUser: "Practitioner/nurse", Scopes: []string{"user/*.cruds"}, PurposeOfUse: []string{"TREAT"}},
	"emergency": {ClientID: "ehr-app", FHIRUser: "Practitioner/nurse", Scopes: []string{"user/*.cruds"}, PurposeOfUse: []string{"ETREAT"}},
}

const (
	part2Labels = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"},` +
		`{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]},`
	treatDoc = `"actor":[{"role":{"text":"recipient"},"reference":{"reference":"Practitioner/doc"}}],` +
		`"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]`
)

// consents by patient: A permits the doctor for treatment; B has none;
// C's has expired; D's names another actor; E's permit has a deny of
// 42CFRPart2 nested in it.
var consentOf = map[string]string{
	"A": `"type":"permit",` + treatDoc,
	"C": `"type":"permit",` + treatDoc + `,"period":{"start":"2020-01-01","end":"2021-01-01"}`,
	"D": `"type":"permit","actor":[{"role":{"text":"recipient"},"reference":{"reference":"Practitioner/other"}}]`,
	"E": `"type":"permit",` + treatDoc + `,"provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}]}]`,
}

var patients = []string{"A", "B", "C", "D", "E"}

// sensitiveEnv stores, per patient X: Patient/pX, Observation/sX (Part 2
// labelled, value "secret-X"), Observation/nX (unlabelled) and the
// patient's Consent; for A also Condition/cA (labelled).
func sensitiveEnv(t *testing.T) *env {
	e := newEnvAuth(t, part2Tokens)
	put := func(path, body string) {
		t.Helper()
		if r := e.do("PUT", path, body, "Authorization", "Bearer doc"); r.status >= 300 {
			t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
		}
	}
	for _, x := range patients {
		put("/fhir/Patient/p"+x, `{"resourceType":"Patient","id":"p`+x+`"}`)
		put("/fhir/Observation/s"+x, `{"resourceType":"Observation","id":"s`+x+`",`+part2Labels+
			`"status":"final","code":{"text":"AUDIT-C"},"subject":{"reference":"Patient/p`+x+`"},"valueString":"secret-`+x+`"}`)
		put("/fhir/Observation/n"+x, `{"resourceType":"Observation","id":"n`+x+`","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p`+x+`"}}`)
		if c, ok := consentOf[x]; ok {
			put("/fhir/Consent/k"+x, `{"resourceType":"Consent","id":"k`+x+`","status":"active","scope":{"text":"privacy"},"category":[{"text":"roi"}],`+
				`"patient":{"reference":"Patient/p`+x+`"},"provision":{`+c+`}}`)
		}
	}
	put("/fhir/Condition/cA", `{"resourceType":"Condition","id":"cA",`+part2Labels+`"code":{"text":"secret-condition"},"subject":{"reference":"Patient/pA"}}`)
	return e
}

// refused checks a 403 OperationOutcome that tells nothing of the content.
func refused(t *testing.T, r *response) {
	t.Helper()
	if r.status != http.StatusForbidden {
		t.Fatalf("%d, want 403: %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"code":"suppressed"`) || strings.Contains(string(r.body), "secret") {
		t.Errorf("the refusal is not a bare suppressed OperationOutcome: %s", r.body)
	}
}

func TestDisclosureRead(t *testing.T) {
	e := sensitiveEnv(t)
	for _, tc := range []struct {
		token, path string
		ok          bool
	}{
		{"doc", "/fhir/Observation/sA", true},
		{"doc", "/fhir/Condition/cA", true},
		{"doc", "/fhir/Observation/sA/_history/1", true},
		{"doc", "/fhir/Observation/sB", false}, // no consent
		{"doc", "/fhir/Observation/sB/_history/1", false},
		{"doc", "/fhir/Observation/sC", false}, // expired
		{"doc", "/fhir/Observation/sD", false}, // another actor
		{"doc", "/fhir/Observation/sE", false}, // a nested deny
		{"doc-none", "/fhir/Observation/sA", false},
		{"doc-mkt", "/fhir/Observation/sA", false},
		{"nurse", "/fhir/Observation/sA", false},
		{"nurse", "/fhir/Condition/cA", false},
		{"emergency", "/fhir/Observation/sB", true}, // break the glass
		{"doc-none", "/fhir/Observation/nB", true},  // not sensitive
		{"nurse", "/fhir/Patient/pB", true},
	} {
		t.Run(tc.token+tc.path, func(t *testing.T) {
			r := e.as(tc.token, "GET", tc.path, "")
			if !tc.ok {
				refused(t, r)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("%d, want 200: %s", r.status, r.body)
			}
		})
	}
	// A conditional read is refused before it can say "not modified".
	refused(t, e.as("doc", "GET", "/fhir/Observation/sB", "", "If-None-Match", `W/"1"`))
	// An update (here a no-op) of data the principal may not read does
	// not answer with the stored content.
	r := e.as("nurse", "PUT", "/fhir/Observation/sB", `{"resourceType":"Observation","id":"sB",`+part2Labels+
		`"status":"final","code":{"text":"AUDIT-C"},"subject":{"reference":"Patient/pB"},"valueString":"secret-B"}`)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"resourceType":"OperationOutcome"`) || strings.Contains(string(r.body), "secret") {
		t.Errorf("update answered %d %s", r.status, r.body)
	}
}

// entries returns a Bundle's entries' Type/id by search mode (or "entry"
// without one), and the OperationOutcome diagnostics.
func entries(t *testing.T, r *response) (map[string][]string, []string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d: %s", r.status, r.body)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var diags []string
	for _, en := range b.Entry {
		var res struct {
			ResourceType, ID string
			Issue            []struct{ Severity, Code, Diagnostics string }
		}
		if len(en.Resource) == 0 {
			continue
		}
		_ = json.Unmarshal(en.Resource, &res)
		if res.ResourceType == "Provenance" {
			continue // of the fixture's authenticated writes, unlabelled
		}
		if res.ResourceType == "OperationOutcome" {
			for _, is := range res.Issue {
				diags = append(diags, is.Severity+" "+is.Code+": "+is.Diagnostics)
			}
			continue
		}
		mode := en.Search.Mode
		if mode == "" {
			mode = "entry"
		}
		out[mode] = append(out[mode], res.ResourceType+"/"+res.ID)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out, diags
}

// noWithheldContent checks that the value of no sensitive Observation
// left out of the entries is in the body.
func noWithheldContent(t *testing.T, r *response, got map[string][]string) {
	t.Helper()
	for _, x := range patients {
		in := slices.ContainsFunc(slices.Collect(maps.Values(got)), func(refs []string) bool { return slices.Contains(refs, "Observation/s"+x) })
		if !in && strings.Contains(string(r.body), `"valueString":"secret-`+x) {
			t.Errorf("the content of withheld Observation/s%s is in the body: %s", x, r.body)
		}
	}
}

func withheld(n int) []string {
	return []string{fmt.Sprintf("warning suppressed: %d resources were withheld by consent policy (42 CFR Part 2 / SUD: purpose of use and patient consent)", n)}
}

func TestDisclosureSearch(t *testing.T) {
	e := sensitiveEnv(t)
	for _, tc := range []struct {
		name, token, path string
		want              map[string][]string
		diags             []string
	}{
		{"type search", "doc", "/fhir/Observation?_count=100",
			map[string][]string{"match": {"Observation/nA", "Observation/nB", "Observation/nC", "Observation/nD", "Observation/nE", "Observation/sA"}}, withheld(4)},
		{"no purpose", "doc-none", "/fhir/Observation?subject=Patient/pA",
			map[string][]string{"match": {"Observation/nA"}}, withheld(1)},
		{"break the glass", "emergency", "/fhir/Observation?subject=Patient/pB",
			map[string][]string{"match": {"Observation/nB", "Observation/sB"}}, nil},
		{"nothing sensitive", "nurse", "/fhir/Patient?_id=pA,pB",
			map[string][]string{"match": {"Patient/pA", "Patient/pB"}}, nil},
		{"revinclude", "doc", "/fhir/Patient?_id=pA,pB&_revinclude=Observation:subject&_revinclude=Condition:subject",
			map[string][]string{"match": {"Patient/pA", "Patient/pB"}, "include": {"Condition/cA", "Observation/nA", "Observation/nB", "Observation/sA"}}, withheld(1)},
		{"include of a withheld match's patient is not made", "nurse", "/fhir/Observation?_id=sB,nC&_include=Observation:subject",
			map[string][]string{"match": {"Observation/nC"}, "include": {"Patient/pC"}}, withheld(1)},
		{"_has on withheld data matches nothing", "doc", "/fhir/Patient?_has:Observation:subject:value-string=secret-B",
			map[string][]string{}, nil},
		{"_has, break the glass", "emergency", "/fhir/Patient?_has:Observation:subject:value-string=secret-B",
			map[string][]string{"match": {"Patient/pB"}}, nil},
		{"_has on consented data", "doc", "/fhir/Patient?_has:Observation:subject:value-string=secret-A",
			map[string][]string{"match": {"Patient/pA"}}, nil},
		{"compartment", "doc", "/fhir/Patient/pE/Observation",
			map[string][]string{"match": {"Observation/nE"}}, withheld(1)},
		{"$everything consented", "doc", "/fhir/Patient/pA/$everything",
			map[string][]string{"match": {"Condition/cA", "Consent/kA", "Observation/nA", "Observation/sA", "Patient/pA"}}, nil},
		{"$everything without consent", "doc", "/fhir/Patient/pB/$everything",
			map[string][]string{"match": {"Observation/nB", "Patient/pB"}}, withheld(1)},
		{"$everything, another actor", "nurse", "/fhir/Patient/pA/$everything",
			map[string][]string{"match": {"Consent/kA", "Observation/nA", "Patient/pA"}}, withheld(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.as(tc.token, "GET", tc.path, "")
			got, diags := entries(t, r)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.diags, diags); diff != "" {
				t.Errorf("OperationOutcome (-want +got):\n%s", diff)
			}
			noWithheldContent(t, r, got)
		})
	}
}

// TestDisclosureTotal: a total counts only what the token may see, so
// that a count does not reveal withheld Part 2 data.
func TestDisclosureTotal(t *testing.T) {
	e := sensitiveEnv(t)
	for _, tc := range []struct {
		name, token, query string
		want               string
	}{
		{"consented", "doc", "Observation?subject=Patient/pA&_total=accurate", "2"},
		{"no consent", "doc", "Observation?subject=Patient/pB&_total=accurate", "1"},
		{"no purpose", "doc-none", "Observation?_summary=count", "5"},
		{"several patients", "doc", "Observation?_summary=count", "6"},
		{"break the glass", "emergency", "Observation?_summary=count", "10"},
		{"labelled types across a system search", "doc", "?_type=Observation,Condition&_summary=count", "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.as(tc.token, "GET", "/fhir/"+tc.query, "")
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := fmt.Sprint(r.json(t)["total"]); got != tc.want {
				t.Errorf("total %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDisclosureHistory(t *testing.T) {
	e := sensitiveEnv(t)
	// A second version of sB; its history has two withheld versions.
	e.as("doc", "PUT", "/fhir/Observation/sB", `{"resourceType":"Observation","id":"sB",`+part2Labels+
		`"status":"amended","code":{"text":"AUDIT-C"},"subject":{"reference":"Patient/pB"},"valueString":"secret-B2"}`)
	for _, tc := range []struct {
		name, token, path string
		want              []string
	}{
		{"instance, withheld", "doc", "/fhir/Observation/sB/_history", nil},
		{"instance, break the glass", "emergency", "/fhir/Observation/sB/_history", []string{"Observation/sB", "Observation/sB"}},
		{"instance, consented", "doc", "/fhir/Observation/sA/_history", []string{"Observation/sA"}},
		{"type", "doc", "/fhir/Observation/_history?_count=100",
			[]string{"Observation/nA", "Observation/nB", "Observation/nC", "Observation/nD", "Observation/nE", "Observation/sA"}},
		{"system", "nurse", "/fhir/_history?_count=100", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.as(tc.token, "GET", tc.path, "")
			got, _ := entries(t, r)
			if tc.name == "system" {
				for _, ref := range got["entry"] {
					if strings.HasPrefix(ref, "Observation/s") || ref == "Condition/cA" {
						t.Errorf("%s in the system history", ref)
					}
				}
				if len(got["entry"]) == 0 {
					t.Error("the system history is empty")
				}
			} else if diff := cmp.Diff(tc.want, got["entry"]); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			noWithheldContent(t, r, got)
		})
	}
}

// The GET entries of a batch are served through the router with the
// bundle's principal: each is judged like a read.
func TestDisclosureBatch(t *testing.T) {
	e := sensitiveEnv(t)
	r := e.as("doc", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation/sA"}},
		{"request":{"method":"GET","url":"Observation/sB"}},
		{"request":{"method":"GET","url":"Observation?subject=Patient/pC"}}]}`)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage
			Response struct{ Status string }
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil || len(b.Entry) != 3 {
		t.Fatalf("%v: %s", err, r.body)
	}
	var statuses []string
	for _, en := range b.Entry {
		statuses = append(statuses, en.Response.Status)
	}
	if diff := cmp.Diff([]string{"200 OK", "403 Forbidden", "200 OK"}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if strings.Contains(string(r.body), "secret-B") || strings.Contains(string(r.body), "secret-C") {
		t.Errorf("withheld content in the batch response: %s", r.body)
	}
	if !strings.Contains(string(b.Entry[2].Resource), "1 resources were withheld") {
		t.Errorf("the search entry does not announce the withheld match: %s", b.Entry[2].Resource)
	}
}

func TestDisclosureExport(t *testing.T) {
	e := sensitiveEnv(t)
	for _, tc := range []struct {
		token    string
		want     []string
		withheld string
	}{
		{"doc", []string{"nA", "nB", "nC", "nD", "nE", "sA"}, "4 Observation resources were withheld"},
		{"emergency", []string{"nA", "nB", "nC", "nD", "nE", "sA", "sB", "sC", "sD", "sE"}, ""},
	} {
		t.Run(tc.token, func(t *testing.T) {
			status := e.kickoff("GET", "/fhir/Patient/$export?_type=Observation,Condition", "", "Authorization", "Bearer "+tc.token)
			e.runExports()
			var m manifest
			if r := e.as(tc.token, "GET", status, ""); r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
				t.Fatalf("manifest: %d %s", r.status, r.body)
			}
			files := map[string]map[string]string{}
			for _, o := range m.Output {
				u, _ := url.Parse(o.URL)
				r := e.as(tc.token, "GET", u.Path, "", "Accept", "application/fhir+ndjson")
				files[o.Type] = map[string]string{}
				for _, l := range strings.Split(strings.TrimSpace(string(r.body)), "\n") {
					var head struct{ ID string }
					_ = json.Unmarshal([]byte(l), &head)
					files[o.Type][head.ID] = l
				}
			}
			if diff := cmp.Diff(tc.want, ids(files)["Observation"]); diff != "" {
				t.Errorf("exported Observations (-want +got):\n%s", diff)
			}
			if tc.withheld == "" {
				if len(m.Error) != 0 {
					t.Errorf("errors %v", m.Error)
				}
				return
			}
			if len(m.Error) != 1 {
				t.Fatalf("manifest errors %v, want the withheld file", m.Error)
			}
			u, _ := url.Parse(m.Error[0].(map[string]any)["url"].(string))
			r := e.as(tc.token, "GET", u.Path, "", "Accept", "application/fhir+ndjson")
			if r.status != http.StatusOK || !strings.Contains(string(r.body), tc.withheld) || strings.Contains(string(r.body), "sB") {
				t.Errorf("withheld file: %d %s", r.status, r.body)
			}
			if _, ok := files["Condition"]["cA"]; !ok {
				t.Error("the consented Condition was not exported")
			}
		})
	}
}

// The KAP API reads programs, sessions, measurements ... through the
// same policy: a substance-use program is labelled 42CFRPart2.
func TestDisclosureKAP(t *testing.T) {
	e := sensitiveEnv(t)
	call := func(token, method, path string, body any, want int) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		if body == nil {
			b = nil
		}
		r := do(t, e.srv.URL, method, "/kap/v1"+path, string(b), "Content-Type", "application/json", "Authorization", "Bearer "+token)
		if r.status != want {
			t.Fatalf("%s %s as %s: %d, want %d: %s", method, path, token, r.status, want, r.body)
		}
		return r.json(t)
	}
	client := call("doc", "POST", "/clients", map[string]any{"name": map[string]any{"family": "Rivera"}, "gender": "female", "birthDate": "1984-07-12",
		"identifiers": []map[string]any{{"system": "https://clinic.example/mrn", "value": "MRN-9", "mrn": true}}}, 201)["id"].(string)
	prog := call("doc", "POST", "/programs", map[string]any{"clientId": client, "status": "active", "start": "2026-03-02",
		"indications": []map[string]any{{"indication": "alcohol-use-disorder", "role": "chief-complaint"}}}, 201)["id"].(string)
	// No consent for this client: the doctor is refused, the emergency
	// reader is not; the list says one was withheld.
	refused(t, do(t, e.srv.URL, "GET", "/kap/v1/programs/"+prog, "", "Authorization", "Bearer doc"))
	call("emergency", "GET", "/programs/"+prog, nil, 200)
	page := call("doc", "GET", "/programs?clientId="+client, nil, 200)
	if items := page["items"].([]any); len(items) != 0 || page["withheld"] != json.Number("1") {
		t.Errorf("program list: %v", page)
	}
	call("doc", "GET", "/clients/"+client, nil, 200) // the client record is not Part 2 data
	// A consent for the doctor opens it.
	e.as("doc", "PUT", "/fhir/Consent/kk", `{"resourceType":"Consent","id":"kk","status":"active","scope":{"text":"privacy"},"category":[{"text":"roi"}],`+
		`"patient":{"reference":"Patient/`+client+`"},"provision":{"type":"permit",`+treatDoc+`}}`)
	call("doc", "GET", "/programs/"+prog, nil, 200)
	page = call("doc", "GET", "/programs?clientId="+client, nil, 200)
	if items := page["items"].([]any); len(items) != 1 || page["withheld"] != nil {
		t.Errorf("program list with the consent: %v", page)
	}
}
