package httpapi_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var sortFixtures = []struct{ path, body string }{
	{"Patient/s1", `{"resourceType":"Patient","id":"s1","name":[{"family":"Berg","given":["Xavier"]}],"gender":"male","birthDate":"1980","generalPractitioner":[{"reference":"Practitioner/p2"}]}`},
	{"Patient/s2", `{"resourceType":"Patient","id":"s2","name":[{"family":"Ångström","given":["Carl"]}],"gender":"female","birthDate":"1975-03-01","generalPractitioner":[{"reference":"Organization/o1"}]}`},
	{"Patient/s3", `{"resourceType":"Patient","id":"s3","name":[{"family":"Adams","given":["Zed"]}]}`},
	{"Patient/s4", `{"resourceType":"Patient","id":"s4","gender":"other","birthDate":"1990-01-01","generalPractitioner":[{"reference":"Practitioner/p1"}]}`},
	{"Patient/s5", `{"resourceType":"Patient","id":"s5","name":[{"family":"Berg","given":["Dora"]}],"gender":"female","birthDate":"1985"}`},
	{"Observation/v1", `{"resourceType":"Observation","id":"v1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectivePeriod":{"start":"2020-01-01","end":"2023-01-01"},"valueQuantity":{"value":72,"unit":"/min"}}`},
	{"Observation/v2", `{"resourceType":"Observation","id":"v2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"effectiveDateTime":"2021-06-01","valueQuantity":{"value":5.4,"system":"http://unitsofmeasure.org","code":"mg"}}`},
	{"Observation/v3", `{"resourceType":"Observation","id":"v3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2019-12-31","valueQuantity":{"value":100}}`},
	{"Observation/v4", `{"resourceType":"Observation","id":"v4","status":"final","code":{"text":"note"}}`},
	{"RiskAssessment/r1", `{"resourceType":"RiskAssessment","id":"r1","status":"final","subject":{"reference":"Patient/s1"},"prediction":[{"probabilityDecimal":0.2},{"probabilityDecimal":0.6}]}`},
	{"RiskAssessment/r2", `{"resourceType":"RiskAssessment","id":"r2","status":"final","subject":{"reference":"Patient/s2"},"prediction":[{"probabilityDecimal":0.4}]}`},
	{"ValueSet/u1", `{"resourceType":"ValueSet","id":"u1","url":"http://b.example/vs","status":"active"}`},
	{"ValueSet/u2", `{"resourceType":"ValueSet","id":"u2","url":"http://a.example/vs","status":"active"}`},
	{"ValueSet/u3", `{"resourceType":"ValueSet","id":"u3","status":"draft"}`},
	{"RiskAssessment/r3", `{"resourceType":"RiskAssessment","id":"r3","status":"final","subject":{"reference":"Patient/s3"}}`},
}

// orderedIDs returns the ids of a searchset's matches in Bundle order, and
// its links by relation.
func orderedIDs(t *testing.T, r *response) ([]string, map[string]string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b := r.json(t)
	var ids []string
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		en := en.(map[string]any)
		if en["search"].(map[string]any)["mode"] == "match" {
			ids = append(ids, en["resource"].(map[string]any)["id"].(string))
		}
	}
	links := map[string]string{}
	for _, l := range b["link"].([]any) {
		l := l.(map[string]any)
		links[l["relation"].(string)] = l["url"].(string)
	}
	return ids, links
}

// Missing values sort before every value: first ascending, last
// descending. Multi-valued elements sort by their lowest value ascending
// and by their highest descending.
func TestSortBySearchParameters(t *testing.T) {
	e := newEnv(t)
	for _, f := range sortFixtures {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		// string, accents folded; lowest part (family or given) ascending, highest descending
		{"Patient?_sort=name", []string{"s4", "s3", "s2", "s1", "s5"}},
		{"Patient?_sort=-name", []string{"s3", "s1", "s5", "s2", "s4"}},
		{"Patient?_sort=family", []string{"s4", "s3", "s2", "s1", "s5"}},
		// date
		{"Patient?_sort=birthdate", []string{"s3", "s2", "s1", "s5", "s4"}},
		{"Patient?_sort=-birthdate", []string{"s4", "s5", "s1", "s2", "s3"}},
		// a period sorts by its start ascending, by its end descending
		{"Observation?_sort=date", []string{"v4", "v3", "v1", "v2"}},
		{"Observation?_sort=-date", []string{"v1", "v2", "v3", "v4"}},
		// token
		{"Patient?_sort=gender", []string{"s3", "s2", "s5", "s1", "s4"}},
		{"Patient?_sort=-gender", []string{"s4", "s1", "s2", "s5", "s3"}},
		{"Observation?_sort=code", []string{"v4", "v2", "v1", "v3"}},
		// reference
		{"Patient?_sort=general-practitioner", []string{"s3", "s5", "s2", "s4", "s1"}},
		// uri
		{"ValueSet?_sort=url", []string{"u3", "u2", "u1"}},
		{"ValueSet?_sort=-url", []string{"u1", "u2", "u3"}},
		// quantity (no unit conversion) and number, multi-valued
		{"Observation?_sort=value-quantity", []string{"v4", "v2", "v1", "v3"}},
		{"Observation?_sort=-value-quantity", []string{"v3", "v1", "v2", "v4"}},
		{"RiskAssessment?_sort=probability", []string{"r3", "r1", "r2"}},
		{"RiskAssessment?_sort=-probability", []string{"r1", "r2", "r3"}},
		// several keys; _id and _lastUpdated mix with parameters
		{"Patient?_sort=gender,-birthdate", []string{"s3", "s5", "s2", "s1", "s4"}},
		{"Patient?_sort=family,-_id", []string{"s4", "s3", "s2", "s5", "s1"}},
		{"Patient?_sort=-_id", []string{"s5", "s4", "s3", "s2", "s1"}},
		// with a filter
		{"Observation?code=8867-4&_sort=-value-quantity", []string{"v3", "v1"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got, _ := orderedIDs(t, e.get("/fhir/"+tc.query))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// Pages of one and two, forwards then backwards, give the same order.
			for _, count := range []string{"1", "2"} {
				fwd, back := walk(t, e, "/fhir/"+tc.query+"&_count="+count)
				if diff := cmp.Diff(tc.want, fwd); diff != "" {
					t.Errorf("forward pages of %s (-want +got):\n%s", count, diff)
				}
				if diff := cmp.Diff(tc.want, back); diff != "" {
					t.Errorf("backward pages of %s (-want +got):\n%s", count, diff)
				}
			}
		})
	}
	for _, tc := range []struct{ query, mention string }{
		{"Patient?_sort=foo", "foo"},
		{"Patient?_sort=", "_sort"},
		{"Patient?_sort=name,,gender", "_sort"},
		{"Observation?_sort=combo-code-value-quantity", "combo-code-value-quantity"},
		{"Location?_sort=near", "near"},
		{"Patient?_sort=name&_sort=gender", "_sort"},
	} {
		t.Run(tc.query, func(t *testing.T) { e.expectRejected(t, tc.query, tc.mention) })
	}
	// Lenient handling ignores an unsupported key and says so.
	r := e.get("/fhir/Observation?_sort=combo-code-value-quantity", "Prefer", "handling=lenient")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"mode":"outcome"`) || !strings.Contains(string(r.body), "combo-code-value-quantity") {
		t.Errorf("lenient: %d %s", r.status, r.body)
	}
}

// walk follows next links from query to the end, then previous links back
// to the start, and checks that each page read backwards is exactly the
// page read forwards; it returns the ids of both walks in sort order.
func walk(t *testing.T, e *env, query string) (fwd, back []string) {
	t.Helper()
	var pages [][]string
	next := query
	for next != "" {
		ids, links := orderedIDs(t, e.get(strings.TrimPrefix(next, e.srv.URL)))
		if len(pages) == 0 && links["previous"] != "" {
			t.Errorf("the first page has a previous link")
		}
		if len(pages) > 0 && links["previous"] == "" {
			t.Errorf("page %d has no previous link", len(pages)+1)
		}
		if first := strings.TrimPrefix(links["first"], e.srv.URL); first == "" || strings.Contains(first, "_page") {
			t.Errorf("first link %q", links["first"])
		}
		pages = append(pages, ids)
		fwd = append(fwd, ids...)
		next = links["next"]
		if len(pages) > 20 {
			t.Fatal("more than 20 pages")
		}
	}
	// Back from the last page.
	_, links := orderedIDs(t, e.get(strings.TrimPrefix(lastPage(t, e, query), e.srv.URL)))
	prev := links["previous"]
	back = pages[len(pages)-1]
	for i := len(pages) - 2; i >= 0; i-- {
		if prev == "" {
			t.Fatalf("no previous link before page %d", i+2)
		}
		ids, links := orderedIDs(t, e.get(strings.TrimPrefix(prev, e.srv.URL)))
		if diff := cmp.Diff(pages[i], ids); diff != "" {
			t.Errorf("page %d read backwards (-want +got):\n%s", i+1, diff)
		}
		if links["next"] == "" {
			t.Errorf("page %d read backwards has no next link", i+1)
		}
		back = append(slices.Clone(ids), back...)
		prev = links["previous"]
	}
	if prev != "" {
		t.Errorf("the first page read backwards has a previous link")
	}
	return fwd, back
}

// lastPage is the URL of the last page of query, following next links.
func lastPage(t *testing.T, e *env, query string) string {
	t.Helper()
	cur := query
	for {
		_, links := orderedIDs(t, e.get(strings.TrimPrefix(cur, e.srv.URL)))
		if links["next"] == "" {
			return cur
		}
		cur = links["next"]
	}
}

// Cursors are signed over the search and its sort: altered, or used with
// another sort, they are refused.
func TestSortCursorTampering(t *testing.T) {
	e := newEnv(t)
	for _, f := range sortFixtures[:5] {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
	_, links := orderedIDs(t, e.get("/fhir/Patient?_sort=name&_count=2"))
	u, err := url.Parse(links["next"])
	if err != nil || u.Query().Get("_page") == "" {
		t.Fatalf("next link %q", links["next"])
	}
	page := u.Query().Get("_page")
	payload, sig, _ := strings.Cut(page, ".")
	flipped := []byte(payload)
	flipped[0] ^= 1
	for name, query := range map[string]string{
		"altered payload": "Patient?_sort=name&_count=2&_page=" + url.QueryEscape(string(flipped)+"."+sig),
		"no signature":    "Patient?_sort=name&_count=2&_page=" + url.QueryEscape(payload),
		"other direction": "Patient?_sort=-name&_count=2&_page=" + url.QueryEscape(page),
		"other key":       "Patient?_sort=family&_count=2&_page=" + url.QueryEscape(page),
	} {
		t.Run(name, func(t *testing.T) { e.expectRejected(t, query, "_page") })
	}
}
