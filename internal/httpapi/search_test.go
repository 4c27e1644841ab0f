package httpapi_test

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var searchFixtures = []struct{ path, body string }{
	{"Patient/pa", `{"resourceType":"Patient","id":"pa","identifier":[{"system":"urn:mrn","value":"1"}],"name":[{"family":"Müller","given":["Zoë"]}],"gender":"female","birthDate":"1980-05-17","active":true}`},
	{"Patient/pb", `{"resourceType":"Patient","id":"pb","identifier":[{"system":"urn:mrn","value":"2"},{"value":"x-2"}],"name":[{"family":"Mullins","given":["Bob"]}],"gender":"male","birthDate":"1975"}`},
	{"Patient/pc", `{"resourceType":"Patient","id":"pc","name":[{"family":"Okafor","given":["Ada"]}],"gender":"female","birthDate":"1990-12-01"}`},
	{"Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/pa"},"effectiveDateTime":"2021-03-04T10:00:00Z","valueQuantity":{"value":72,"unit":"/min"}}`},
	{"Observation/o2", `{"resourceType":"Observation","id":"o2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44249-1","display":"PHQ-9 total score"}],"text":"PHQ-9"},"subject":{"reference":"Patient/pa"},"effectivePeriod":{"start":"2022-01-10","end":"2022-01-11"}}`},
	{"Observation/o3", `{"resourceType":"Observation","id":"o3","status":"preliminary","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/pb"},"effectiveDateTime":"2020-07"}`},
	{"Observation/o4", `{"resourceType":"Observation","id":"o4","status":"final","code":{"text":"note"},"subject":{"identifier":{"system":"urn:mrn","value":"3"}}}`},
}

func loadSearchFixtures(e *env) {
	e.t.Helper()
	for _, f := range searchFixtures {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			e.t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
}

// ids returns the ids of a searchset's match entries, sorted, and the bundle.
func searchIDs(t *testing.T, r *response) []string {
	t.Helper()
	b := r.json(t)
	if b["type"] != "searchset" {
		t.Fatalf("not a searchset: %s", r.body)
	}
	var ids []string
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		en := en.(map[string]any)
		if en["search"].(map[string]any)["mode"] != "match" {
			continue
		}
		ids = append(ids, en["resource"].(map[string]any)["id"].(string))
	}
	sort.Strings(ids)
	return ids
}

func TestSearchParameters(t *testing.T) {
	e := newEnv(t)
	loadSearchFixtures(e)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		// token
		{"Patient?gender=female", []string{"pa", "pc"}},
		{"Patient?gender=female,male", []string{"pa", "pb", "pc"}},
		{"Patient?gender:not=female", []string{"pb"}},
		{"Patient?identifier=urn:mrn|1", []string{"pa"}},
		{"Patient?identifier=urn:mrn|", []string{"pa", "pb"}},
		{"Patient?identifier=|x-2", []string{"pb"}},
		{"Patient?identifier=2", []string{"pb"}},
		{"Patient?identifier:missing=true", []string{"pc"}},
		{"Patient?active=true", []string{"pa"}},
		{"Observation?code=http://loinc.org|8867-4", []string{"o1", "o3"}},
		{"Observation?code=8867-4", []string{"o1", "o3"}},
		{"Observation?code:text=phq", []string{"o2"}},
		{"Observation?code:text=heart", []string{"o1"}},
		{"Observation?status=final&code=8867-4", []string{"o1"}},
		// string: case- and accent-insensitive starts-with
		{"Patient?name=mul", []string{"pa", "pb"}},
		{"Patient?name=MÜLLER", []string{"pa"}},
		{"Patient?name=zoe", []string{"pa"}},
		{"Patient?name:exact=Müller", []string{"pa"}},
		{"Patient?name:exact=müller", nil},
		{"Patient?name:contains=lli", []string{"pb"}},
		{"Patient?family=okafor&given=ada", []string{"pc"}},
		// reference
		{"Observation?subject=Patient/pa", []string{"o1", "o2"}},
		{"Observation?subject=pb", []string{"o3"}},
		{"Observation?subject:Patient=pa", []string{"o1", "o2"}},
		{"Observation?patient=Patient/pb", []string{"o3"}},
		{"Observation?subject:identifier=urn:mrn|3", []string{"o4"}},
		{"Observation?subject:missing=true", nil},
		// date: ranges at the value's precision
		{"Patient?birthdate=1980", []string{"pa"}},
		{"Patient?birthdate=1980-05", []string{"pa"}},
		{"Patient?birthdate=ge1980-01-01", []string{"pa", "pc"}},
		{"Patient?birthdate=lt1980", []string{"pb"}},
		{"Patient?birthdate=le1980-05-17", []string{"pa", "pb"}},
		{"Patient?birthdate=gt1980-05-17", []string{"pc"}},
		{"Patient?birthdate=sa1980", []string{"pc"}},
		{"Patient?birthdate=eb1976", []string{"pb"}},
		{"Patient?birthdate=ne1980", []string{"pb", "pc"}},
		{"Patient?birthdate=1975-06", nil},
		{"Observation?date=2021-03-04", []string{"o1"}},
		{"Observation?date=2020", []string{"o3"}},
		{"Observation?date=ge2022-01-10T12:00:00Z", []string{"o2"}},
		{"Observation?date=2022-01", []string{"o2"}},
		{"Observation?date=lt2021&date=ge2020", []string{"o3"}},
		// _id
		{"Patient?_id=pa,pc", []string{"pa", "pc"}},
		// hostile values are values
		{"Patient?name=" + url.QueryEscape(`{"$gt":""}`), nil},
		{"Patient?name=" + url.QueryEscape(`.*`), nil},
		{"Patient?identifier=" + url.QueryEscape(`$where|1`), nil},
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
}

func TestSearchRejects(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ query, mention string }{
		{"Patient?nickname=x", "nickname"},
		{"Patient?$where=1", "$where"},
		{"Patient?name.family=x", "name.family"},
		{"Patient?gender:fuzzy=x", ":fuzzy"},
		{"Patient?birthdate=yesterday", "birthdate"},
		{"Patient?_sort=nickname", "_sort"},
		{"Patient?_include=Patient:nickname", "_include"},
		{"Observation?value-quantity=five", "value-quantity"},
		{"Observation?subject:Medication=1", "Medication"},
		{"Patient?_page=forged", "_page"},
		{"Patient?_count=many", "_count"},
	} {
		t.Run(tc.query, func(t *testing.T) { e.expectRejected(t, tc.query, tc.mention) })
	}
	// Lenient handling skips what it cannot serve and says so.
	r := e.get("/fhir/Patient?nickname=x&gender=female", "Prefer", "handling=lenient")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"mode":"outcome"`) || !strings.Contains(string(r.body), "nickname") {
		t.Errorf("lenient: %d %s", r.status, r.body)
	}
}

// Paging by signed keyset cursors: every match once, in order, with a
// total when asked; a cursor from another search is refused.
func TestSearchPaging(t *testing.T) {
	e := newEnv(t)
	loadSearchFixtures(e)
	next := "/fhir/Observation?_sort=-_lastUpdated&_count=2&_total=accurate"
	var seen []string
	var otherPage string
	for next != "" {
		r := e.get(next)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", next, r.status, r.body)
		}
		b := r.json(t)
		if b["total"] == nil || b["total"].(interface{ String() string }).String() != "4" {
			t.Errorf("total = %v, want 4", b["total"])
		}
		entries, _ := b["entry"].([]any)
		for _, en := range entries {
			seen = append(seen, en.(map[string]any)["resource"].(map[string]any)["id"].(string))
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = strings.TrimPrefix(l.(map[string]any)["url"].(string), e.srv.URL)
			}
		}
		if next != "" {
			u, _ := url.Parse(next)
			otherPage = u.Query().Get("_page")
		}
	}
	// PUT order was o1..o4, so newest first is o4..o1.
	if diff := cmp.Diff([]string{"o4", "o3", "o2", "o1"}, seen); diff != "" {
		t.Errorf("paged ids (-want +got):\n%s", diff)
	}
	r := e.get("/fhir/Observation?_count=2&_page=" + url.QueryEscape(otherPage))
	if r.status != http.StatusBadRequest {
		t.Errorf("a cursor reused for another search: %d", r.status)
	}
	// _summary=count: the total only.
	count := e.get("/fhir/Observation?status=final&_summary=count").json(t)
	if count["total"] == nil || count["total"].(interface{ String() string }).String() != "3" || count["entry"] != nil {
		t.Errorf("_summary=count: %v", count)
	}
	// POST _search finds the same.
	post := e.do("POST", "/fhir/Patient/_search", "gender=female", "Content-Type", "application/x-www-form-urlencoded")
	if diff := cmp.Diff([]string{"pa", "pc"}, searchIDs(t, post)); diff != "" {
		t.Errorf("POST _search (-want +got):\n%s", diff)
	}
}

// The CapabilityStatement lists each searchable parameter with its type.
func TestCapabilityListsSearchParams(t *testing.T) {
	e := newEnv(t)
	cs := e.get("/fhir/metadata").json(t)
	var patient map[string]any
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if r.(map[string]any)["type"] == "Patient" {
			patient = r.(map[string]any)
		}
	}
	got := map[string]string{}
	for _, p := range patient["searchParam"].([]any) {
		p := p.(map[string]any)
		got[p["name"].(string)] = p["type"].(string)
	}
	for name, typ := range map[string]string{"name": "string", "birthdate": "date", "identifier": "token", "general-practitioner": "reference", "_id": "token", "_lastUpdated": "date"} {
		if got[name] != typ {
			t.Errorf("Patient search parameter %s: %q, want %q", name, got[name], typ)
		}
	}
	has := func(field, want string) bool {
		list, _ := patient[field].([]any)
		for _, v := range list {
			if v == want {
				return true
			}
		}
		return false
	}
	if !has("searchInclude", "Patient:general-practitioner") || !has("searchRevInclude", "Observation:subject") {
		t.Errorf("searchInclude/searchRevInclude incomplete: %v / %v", patient["searchInclude"], patient["searchRevInclude"])
	}
	interactions := map[string]bool{}
	for _, i := range patient["interaction"].([]any) {
		interactions[i.(map[string]any)["code"].(string)] = true
	}
	if !interactions["search-type"] {
		t.Error("search-type is not declared")
	}
}
