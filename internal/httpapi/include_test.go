package httpapi_test

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// includeFixtures: Observations refer to Patients, an Encounter and
// Practitioner/Organization performers; Patients to an Organization and a
// Practitioner; org1 is part of org2. o4 and o5 refer to resources that do
// not exist.
var includeFixtures = []struct{ path, body string }{
	{"Organization/org2", `{"resourceType":"Organization","id":"org2","name":"Holding"}`},
	{"Organization/org1", `{"resourceType":"Organization","id":"org1","name":"Clinic","partOf":{"reference":"Organization/org2"}}`},
	{"Practitioner/pr1", `{"resourceType":"Practitioner","id":"pr1","name":[{"family":"House"}]}`},
	{"Patient/pa", `{"resourceType":"Patient","id":"pa","name":[{"family":"Müller","given":["Peter"]}],"gender":"male","managingOrganization":{"reference":"Organization/org1"},"generalPractitioner":[{"reference":"Practitioner/pr1"}]}`},
	{"Patient/pb", `{"resourceType":"Patient","id":"pb","name":[{"family":"Schmidt","given":["Anna"]}],"gender":"female","generalPractitioner":[{"reference":"Practitioner/pr1"}]}`},
	{"Patient/pc", `{"resourceType":"Patient","id":"pc","name":[{"family":"Weber","given":["Otto"]}],"gender":"male"}`},
	{"Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/pa"},"participant":[{"individual":{"reference":"Practitioner/pr1"}}],"serviceProvider":{"reference":"Organization/org1"}}`},
	{"Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"subject":{"reference":"Patient/pa"},"encounter":{"reference":"Encounter/e1"},"performer":[{"reference":"Practitioner/pr1"}]}`},
	{"Observation/o2", `{"resourceType":"Observation","id":"o2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/pa"}}`},
	{"Observation/o3", `{"resourceType":"Observation","id":"o3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/pb"},"performer":[{"reference":"Organization/org2"}]}`},
	{"Observation/o4", `{"resourceType":"Observation","id":"o4","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Group/g1"}}`},
	{"Observation/o5", `{"resourceType":"Observation","id":"o5","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"subject":{"reference":"Patient/gone"}}`},
}

func loadIncludeFixtures(e *env) {
	e.t.Helper()
	for _, f := range includeFixtures {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			e.t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
}

// searchEntries returns the ids of the match entries, the Type/id of the
// include entries (both sorted) and the OperationOutcome entries' text.
// It checks that matches come first, then includes, then the outcome, and
// that no resource appears twice.
func searchEntries(t *testing.T, r *response) (matches, includes []string, outcome string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b := r.json(t)
	if b["type"] != "searchset" {
		t.Fatalf("not a searchset: %s", r.body)
	}
	order := map[string]int{"match": 0, "include": 1, "outcome": 2}
	last := 0
	seen := map[string]bool{}
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		en := en.(map[string]any)
		mode := en["search"].(map[string]any)["mode"].(string)
		if order[mode] < last {
			t.Errorf("a %s entry after a later kind: %s", mode, r.body)
		}
		last = order[mode]
		res := en["resource"].(map[string]any)
		id, _ := res["id"].(string)
		key := res["resourceType"].(string) + "/" + id
		if mode != "outcome" && seen[key] {
			t.Errorf("%s appears twice", key)
		}
		seen[key] = true
		switch mode {
		case "match":
			matches = append(matches, id)
		case "include":
			includes = append(includes, key)
		case "outcome":
			for _, is := range res["issue"].([]any) {
				is := is.(map[string]any)
				outcome += is["severity"].(string) + ": " + is["diagnostics"].(string) + "\n"
			}
		}
	}
	sort.Strings(matches)
	sort.Strings(includes)
	return matches, includes, outcome
}

func TestSearchIncludes(t *testing.T) {
	e := newEnv(t)
	loadIncludeFixtures(e)
	for _, tc := range []struct {
		query             string
		matches, includes []string
	}{
		{"Observation?_id=o1&_include=Observation:subject", []string{"o1"}, []string{"Patient/pa"}},
		// Each resource once; references to missing resources include nothing.
		{"Observation?_include=Observation:subject", []string{"o1", "o2", "o3", "o4", "o5"}, []string{"Patient/pa", "Patient/pb"}},
		{"Observation?_id=o1,o2&_include=Observation:subject&_include=Observation:patient", []string{"o1", "o2"}, []string{"Patient/pa"}},
		{"Observation?_id=o1,o3&_include=Observation:performer", []string{"o1", "o3"}, []string{"Organization/org2", "Practitioner/pr1"}},
		{"Observation?_id=o1,o3&_include=Observation:performer:Practitioner", []string{"o1", "o3"}, []string{"Practitioner/pr1"}},
		{"Observation?_id=o2&_include=Observation:performer", []string{"o2"}, nil},
		// A match is not included again.
		{"Organization?_include=Organization:partof", []string{"org1", "org2"}, nil},
		// :iterate applies to what the first round included, one level.
		{"Observation?_id=o1&_include=Observation:encounter&_include:iterate=Encounter:service-provider", []string{"o1"}, []string{"Encounter/e1", "Organization/org1"}},
		{"Observation?_id=o2&_include=Observation:subject&_include:iterate=Patient:organization&_include:iterate=Organization:partof", []string{"o2"}, []string{"Organization/org1", "Patient/pa"}},
		// _revinclude
		{"Patient?_id=pa&_revinclude=Observation:subject", []string{"pa"}, []string{"Observation/o1", "Observation/o2"}},
		{"Patient?_id=pa,pb&_revinclude=Observation:patient", []string{"pa", "pb"}, []string{"Observation/o1", "Observation/o2", "Observation/o3"}},
		{"Patient?_id=pa&_revinclude=Observation:subject:Patient", []string{"pa"}, []string{"Observation/o1", "Observation/o2"}},
		{"Patient?_id=pc&_revinclude=Observation:subject", []string{"pc"}, nil},
		{"Practitioner?_revinclude=Patient:general-practitioner", []string{"pr1"}, []string{"Patient/pa", "Patient/pb"}},
		{"Patient?_id=pa&_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter", []string{"pa"}, []string{"Encounter/e1", "Observation/o1"}},
		{"Patient?_id=pa&_include=Patient:organization&_revinclude=Observation:subject", []string{"pa"}, []string{"Observation/o1", "Observation/o2", "Organization/org1"}},
		// no matches, nothing included
		{"Patient?_id=nobody&_revinclude=Observation:subject", nil, nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			m, inc, _ := searchEntries(t, e.get("/fhir/"+tc.query))
			if diff := cmp.Diff(tc.matches, m); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.includes, inc); diff != "" {
				t.Errorf("includes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSearchChainsAndHas(t *testing.T) {
	e := newEnv(t)
	loadIncludeFixtures(e)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"Observation?subject:Patient.name=peter", []string{"o1", "o2"}},
		{"Observation?patient.name=peter", []string{"o1", "o2"}}, // one target type
		{"Observation?subject:Patient.name=peter,anna", []string{"o1", "o2", "o3"}},
		{"Observation?subject:Patient.gender=female", []string{"o3"}},
		{"Observation?subject:Patient.organization=Organization/org1", []string{"o1", "o2"}},
		{"Observation?subject:Patient._id=pb", []string{"o3"}},
		{"Observation?subject:Patient.name:exact=Peter", []string{"o1", "o2"}},
		{"Observation?subject:Patient.name=nobody", nil},
		{"Observation?subject:Patient.name=peter&subject:Patient.gender=female", nil},
		{"Observation?subject:Patient.name=peter&code=8867-4", []string{"o2"}},
		{"Observation?performer:Practitioner.name=house", []string{"o1"}},
		{"Encounter?service-provider.name=clinic", []string{"e1"}},
		// _has: resources referred to by resources that match
		{"Patient?_has:Observation:patient:code=1234-5", []string{"pa"}},
		{"Patient?_has:Observation:patient:code=8867-4", []string{"pa", "pb"}},
		{"Patient?_has:Observation:subject:code=8867-4&gender=female", []string{"pb"}},
		{"Patient?_has:Observation:patient:code=9999-9", nil},
		{"Patient?_has:Encounter:subject:_id=e1", []string{"pa"}},
		{"Patient?_has:Observation:patient:code=1234-5&_has:Observation:patient:code=8867-4", []string{"pa"}},
		{"Organization?_has:Patient:organization:name=peter", []string{"org1"}},
		{"Practitioner?_has:Observation:performer:code=1234-5", []string{"pr1"}},
		{"Practitioner?_has:Observation:performer:code=8867-4", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := e.get("/fhir/" + tc.query)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if diff := cmp.Diff(tc.want, searchIDs(t, r)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	// With an include on top.
	m, inc, _ := searchEntries(t, e.get("/fhir/Patient?_has:Observation:patient:code=1234-5&_revinclude=Observation:subject"))
	if diff := cmp.Diff([]string{"pa"}, m); diff != "" {
		t.Errorf("_has + _revinclude matches (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Observation/o1", "Observation/o2"}, inc); diff != "" {
		t.Errorf("_has + _revinclude includes (-want +got):\n%s", diff)
	}
}

func TestSearchIncludeRejects(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ query, mention string }{
		{"Observation?_include=Observation:nickname", "nickname"},
		{"Observation?_include=Observation:status", "not a reference parameter"},
		{"Observation?_include=Patient:organization", "_include:iterate"},
		{"Observation?_include=Observation:*", "wildcard"},
		{"Observation?_include=Observation", "Type:parameter"},
		{"Observation?_include=Thing:subject", "Thing"},
		{"Observation?_include=Observation:subject:Medication", "Medication"},
		{"Observation?_include:recurse=Observation:subject", "_include:recurse"},
		{"Patient?_revinclude=Observation:subject:Group", "Group"},
		{"Patient?_revinclude=Observation:encounter", "_revinclude:iterate"},
		{"Observation?subject.name=peter", "subject:Patient.name"},
		{"Observation?subject:Patient.organization.name=x", "one level"},
		{"Observation?subject:Medication.code=x", "Medication"},
		{"Observation?status.x=1", "status"},
		{"Observation?subject:Patient.nickname=x", "nickname"},
		{"Observation?subject:Patient.gender:fuzzy=x", ":fuzzy"},
		{"Patient?_has:Observation:patient=1", "_has:Type"},
		{"Patient?_has=1", "_has:Type"},
		{"Patient?_has:Observation:patient:_has:Observation:patient:code=1", "one level"},
		{"Patient?_has:Observation:encounter:code=1", "encounter"},
		{"Patient?_has:Thing:patient:code=1", "Thing"},
		{"Patient?_has:Observation:code:code=1", "not a reference parameter"},
		{"Patient?_has:Observation:patient:nickname=1", "nickname"},
	} {
		t.Run(tc.query, func(t *testing.T) { e.expectRejected(t, tc.query, tc.mention) })
	}
	// Conditional criteria are search parameters only.
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "If-None-Exist", "_has:Observation:patient:code=1")
	if r.status != http.StatusBadRequest {
		t.Errorf("If-None-Exist with _has: %d %s", r.status, r.body)
	}
}

// Lenient handling skips what it cannot serve and says so in the outcome.
func TestSearchIncludeLenient(t *testing.T) {
	e := newEnv(t)
	loadIncludeFixtures(e)
	q := "/fhir/Observation?_id=o1,o2&_include=Observation:nickname&_include=Observation:subject&subject:Patient.nickname=x&_has:Thing:x:y=1"
	m, inc, outcome := searchEntries(t, e.get(q, "Prefer", "handling=lenient"))
	if diff := cmp.Diff([]string{"o1", "o2"}, m); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Patient/pa"}, inc); diff != "" {
		t.Errorf("includes (-want +got):\n%s", diff)
	}
	for _, want := range []string{"Observation:nickname", "subject:Patient.nickname", "Thing"} {
		if !strings.Contains(outcome, want) {
			t.Errorf("the outcome does not name %q: %s", want, outcome)
		}
	}
}

// Pages of a chained search include per page and keep the chain in the
// cursor: a cursor is refused for another chain value.
func TestSearchChainPaging(t *testing.T) {
	e := newEnv(t)
	loadIncludeFixtures(e)
	next := "/fhir/Observation?subject:Patient.name=peter&_count=1&_include=Observation:subject&_total=accurate"
	var seen []string
	var page string
	for next != "" {
		r := e.get(next)
		m, inc, _ := searchEntries(t, r)
		seen = append(seen, m...)
		if diff := cmp.Diff([]string{"Patient/pa"}, inc); diff != "" {
			t.Errorf("%s includes (-want +got):\n%s", next, diff)
		}
		b := r.json(t)
		if b["total"] == nil || b["total"].(interface{ String() string }).String() != "2" {
			t.Errorf("total = %v, want 2", b["total"])
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = strings.TrimPrefix(l.(map[string]any)["url"].(string), e.srv.URL)
				u, _ := url.Parse(next)
				page = u.Query().Get("_page")
			}
		}
	}
	if diff := cmp.Diff([]string{"o1", "o2"}, seen); diff != "" {
		t.Errorf("paged ids (-want +got):\n%s", diff)
	}
	r := e.get("/fhir/Observation?subject:Patient.name=anna&_count=1&_page=" + url.QueryEscape(page))
	if r.status != http.StatusBadRequest {
		t.Errorf("a cursor reused for another chain: %d %s", r.status, r.body)
	}
}
