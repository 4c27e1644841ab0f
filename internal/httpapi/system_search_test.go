package httpapi_test

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// systemFixtures add to searchFixtures resources of other types whose ids
// repeat those of a Patient or an Observation.
var systemFixtures = []struct{ path, body string }{
	{"Encounter/pa", `{"resourceType":"Encounter","id":"pa","meta":{"tag":[{"system":"urn:t","code":"x"}]},"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pa"}}`},
	{"Condition/o1", `{"resourceType":"Condition","id":"o1","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/pa"}}`},
	{"Patient/pd", `{"resourceType":"Patient","id":"pd","link":[{"other":{"reference":"Patient/pa"},"type":"seealso"}]}`},
	{"Observation/o5", `{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"by"},"subject":{"reference":"Patient/pb"},"performer":[{"reference":"Patient/pa"}]}`},
}

func loadSystemFixtures(e *env) {
	e.t.Helper()
	loadSearchFixtures(e)
	for _, f := range systemFixtures {
		if r := e.do("PUT", "/fhir/"+f.path, f.body); r.status != http.StatusCreated {
			e.t.Fatalf("PUT %s: %d %s", f.path, r.status, r.body)
		}
	}
}

// page is one searchset: its entries as Type/id with their search mode,
// in order, and its next link (relative to the server, "" on the last page).
type page struct {
	matches, includes []string
	next              string
	total             string
}

func readPage(t *testing.T, e *env, r *response) page {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b := r.json(t)
	var p page
	if tot, ok := b["total"].(interface{ String() string }); ok {
		p.total = tot.String()
	}
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		en := en.(map[string]any)
		full, _ := en["fullUrl"].(string)
		key := strings.TrimPrefix(full, e.srv.URL+"/fhir/")
		switch en["search"].(map[string]any)["mode"] {
		case "match":
			p.matches = append(p.matches, key)
		case "include":
			p.includes = append(p.includes, key)
		}
	}
	for _, l := range b["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			p.next = strings.TrimPrefix(l.(map[string]any)["url"].(string), e.srv.URL)
		}
	}
	return p
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestSystemSearch(t *testing.T) {
	e := newEnv(t)
	loadSystemFixtures(e)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"_type=Patient,Observation&_id=pa,o1", []string{"Observation/o1", "Patient/pa"}},
		{"_type=Observation,Patient", []string{"Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Observation/o5", "Patient/pa", "Patient/pb", "Patient/pc", "Patient/pd"}},
		// parameters the types share with the same type
		{"_type=Observation,Condition&code=8867-4", []string{"Condition/o1", "Observation/o1", "Observation/o3"}},
		{"_type=Observation,Condition,Encounter&patient=Patient/pa", []string{"Condition/o1", "Encounter/pa", "Observation/o1", "Observation/o2"}},
		// without _type: every type, Resource-level parameters
		{"_id=pa", []string{"Encounter/pa", "Patient/pa"}},
		{"_tag=urn:t|x", []string{"Encounter/pa"}},
		{"_id=o1&_lastUpdated=gt2000", []string{"Condition/o1", "Observation/o1"}},
		{"_type=Encounter", []string{"Encounter/pa"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			p := readPage(t, e, e.get("/fhir?"+tc.query))
			if diff := cmp.Diff(tc.want, sorted(p.matches)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("include", func(t *testing.T) {
		p := readPage(t, e, e.get("/fhir?_type=Observation,Patient&_id=o3,pa&_include=Observation:subject&_revinclude=Condition:subject"))
		if diff := cmp.Diff([]string{"Observation/o3", "Patient/pa"}, sorted(p.matches)); diff != "" {
			t.Errorf("matches (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"Condition/o1", "Patient/pb"}, sorted(p.includes)); diff != "" {
			t.Errorf("includes (-want +got):\n%s", diff)
		}
	})
	t.Run("POST _search", func(t *testing.T) {
		r := e.do("POST", "/fhir/_search", "_type=Patient,Encounter&_id=pa", "Content-Type", "application/x-www-form-urlencoded")
		if diff := cmp.Diff([]string{"Encounter/pa", "Patient/pa"}, sorted(readPage(t, e, r).matches)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("_summary=count", func(t *testing.T) {
		p := readPage(t, e, e.get("/fhir?_type=Patient,Observation,Encounter&_summary=count"))
		if p.total != "10" || p.matches != nil {
			t.Errorf("total %s, matches %v; want 10 and none", p.total, p.matches)
		}
	})

	for _, tc := range []struct{ query, mention string }{
		{"?_type=Patient,Observation&gender=female", "gender"},
		{"?gender=female", "gender"},
		{"?_type=Patient,Nope", "Nope"},
		{"?_type=AdverseEvent,BodyStructure&location=x", "location"}, // a reference and a token
		{"?_type=Patient&_type=Observation", "_type"},
		{"?_type=Patient,Observation&subject.name=x", "subject.name"},
		{"?_type=Patient,Observation&_has:Observation:patient:code=1", "_has"},
		{"?_type=Patient,Encounter&_include=Observation:subject", "_include"},
	} {
		t.Run(tc.query, func(t *testing.T) { e.expectRejected(t, tc.query, tc.mention) })
	}
	t.Run("lenient", func(t *testing.T) {
		r := e.get("/fhir?_type=Patient,Observation&_id=pa&gender=female", "Prefer", "handling=lenient")
		if !strings.Contains(string(r.body), `"mode":"outcome"`) || !strings.Contains(string(r.body), "gender") {
			t.Errorf("lenient: %d %s", r.status, r.body)
		}
		if diff := cmp.Diff([]string{"Patient/pa"}, readPage(t, e, r).matches); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// Paging a search over several types one resource at a time walks every
// match exactly once, though ids repeat across types (Patient/pa and
// Encounter/pa, Observation/o1 and Condition/o1).
func TestSystemSearchPaging(t *testing.T) {
	e := newEnv(t)
	loadSystemFixtures(e)
	for _, query := range []string{
		"/fhir?_type=Patient,Observation,Encounter,Condition&_count=1",
		"/fhir?_type=Patient,Observation,Encounter,Condition&_count=1&_sort=-_lastUpdated",
		"/fhir?_count=1&_total=accurate",
	} {
		t.Run(query, func(t *testing.T) {
			all := readPage(t, e, e.get(strings.Replace(query, "_count=1", "_count=100", 1))).matches
			if len(all) != 11 {
				t.Fatalf("%d matches in one page, want the 11 fixtures: %v", len(all), all)
			}
			var walked []string
			for next := query; next != ""; {
				p := readPage(t, e, e.get(next))
				if len(p.matches) > 1 {
					t.Fatalf("%s: %d matches, want at most 1", next, len(p.matches))
				}
				walked = append(walked, p.matches...)
				next = p.next
				if len(walked) > len(all) {
					t.Fatalf("more pages than matches: %v", walked)
				}
			}
			if diff := cmp.Diff(all, walked); diff != "" {
				t.Errorf("paged one by one vs one page (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompartmentSearch(t *testing.T) {
	e := newEnv(t)
	loadSystemFixtures(e)
	for _, tc := range []struct {
		path string
		want []string
	}{
		// Observation: subject or performer
		{"Patient/pa/Observation", []string{"Observation/o1", "Observation/o2", "Observation/o5"}},
		{"Patient/pa/Observation?code=8867-4", []string{"Observation/o1"}},
		{"Patient/pb/Observation", []string{"Observation/o3", "Observation/o5"}},
		{"Patient/pa/Encounter", []string{"Encounter/pa"}},
		{"Patient/pa/Condition", []string{"Condition/o1"}},
		{"Patient/pc/Observation", nil},
		// the patient itself and the patients linking to it
		{"Patient/pa/Patient", []string{"Patient/pa", "Patient/pd"}},
		{"Patient/pa/Patient?_id=pd", []string{"Patient/pd"}},
		// another compartment
		{"Encounter/pa/Encounter", []string{"Encounter/pa"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := readPage(t, e, e.get("/fhir/"+tc.path))
			if diff := cmp.Diff(tc.want, sorted(p.matches)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("paging", func(t *testing.T) {
		var walked []string
		for next := "/fhir/Patient/pa/Observation?_count=1"; next != ""; {
			p := readPage(t, e, e.get(next))
			walked = append(walked, p.matches...)
			if p.next != "" && !strings.HasPrefix(p.next, "/fhir/Patient/pa/Observation?") {
				t.Fatalf("next link %s leaves the compartment", p.next)
			}
			next = p.next
		}
		if diff := cmp.Diff([]string{"Observation/o1", "Observation/o2", "Observation/o5"}, walked); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		// A page of one compartment is not a page of another.
		first := readPage(t, e, e.get("/fhir/Patient/pa/Observation?_count=1"))
		u, _ := url.Parse(first.next)
		r := e.get("/fhir/Patient/pb/Observation?_count=1&_page=" + url.QueryEscape(u.Query().Get("_page")))
		if r.status != http.StatusBadRequest {
			t.Errorf("a cursor of Patient/pa used for Patient/pb: %d %s", r.status, r.body)
		}
	})
	t.Run("POST _search", func(t *testing.T) {
		r := e.do("POST", "/fhir/Patient/pa/Observation/_search", "status=final", "Content-Type", "application/x-www-form-urlencoded")
		if diff := cmp.Diff([]string{"Observation/o1", "Observation/o2", "Observation/o5"}, sorted(readPage(t, e, r).matches)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("the history route still wins", func(t *testing.T) {
		r := e.get("/fhir/Patient/pa/_history")
		if r.status != http.StatusOK || r.json(t)["type"] != "history" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	e.expectRejected(t, "Patient/pa/Organization", "Organization")
	for _, path := range []string{"/fhir/Patient/pa/Nope", "/fhir/Observation/o1/Patient"} {
		if r := e.get(path); r.status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404: %s", path, r.status, r.body)
		}
	}
}

// The CapabilityStatement announces system search and the compartments.
func TestCapabilitySystemSearch(t *testing.T) {
	e := newEnv(t)
	rest := e.get("/fhir/metadata").json(t)["rest"].([]any)[0].(map[string]any)
	var system []string
	for _, in := range rest["interaction"].([]any) {
		system = append(system, in.(map[string]any)["code"].(string))
	}
	if diff := cmp.Diff([]string{"transaction", "batch", "search-system", "history-system"}, system); diff != "" {
		t.Errorf("system interactions (-want +got):\n%s", diff)
	}
	var comps []string
	for _, c := range rest["compartment"].([]any) {
		comps = append(comps, c.(string))
	}
	var want []string
	for _, c := range []string{"device", "encounter", "patient", "practitioner", "relatedPerson"} {
		want = append(want, "http://hl7.org/fhir/CompartmentDefinition/"+c)
	}
	if diff := cmp.Diff(want, comps); diff != "" {
		t.Errorf("compartments (-want +got):\n%s", diff)
	}
}

func TestTokenOfType(t *testing.T) {
	e := newEnv(t)
	const v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	for id, body := range map[string]string{
		"mr": `{"resourceType":"Patient","id":"mr","identifier":[{"type":{"coding":[{"system":"` + v2 + `","code":"MR"}]},"system":"urn:h","value":"12345"}]}`,
		"dl": `{"resourceType":"Patient","id":"dl","identifier":[{"type":{"coding":[{"system":"` + v2 + `","code":"DL"}]},"value":"12345"},{"type":{"coding":[{"system":"` + v2 + `","code":"MR"}]},"value":"999"}]}`,
		"nt": `{"resourceType":"Patient","id":"nt","identifier":[{"system":"urn:h","value":"12345"}]}`,
	} {
		if r := e.do("PUT", "/fhir/Patient/"+id, body); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", id, r.status, r.body)
		}
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"identifier:of-type=" + v2 + "|MR|12345", []string{"mr"}},
		// type and value pair within one identifier
		{"identifier:of-type=" + v2 + "|MR|999", []string{"dl"}},
		{"identifier:of-type=" + v2 + "|DL|999", nil},
		{"identifier:of-type=" + v2 + "|DL|12345," + v2 + "|MR|12345", []string{"dl", "mr"}},
		{"identifier:of-type=urn:other|MR|12345", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := e.get("/fhir/Patient?" + strings.ReplaceAll(tc.query, "|", "%7C"))
			if diff := cmp.Diff(tc.want, searchIDs(t, r)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct{ query, mention string }{
		{"Patient?identifier:of-type=" + v2 + "|MR", "system|code|value"},
		{"Patient?identifier:of-type=|MR|12345", "system|code|value"},
		{"Patient?gender:of-type=a|b|c", "gender"},
	} {
		t.Run(tc.query, func(t *testing.T) { e.expectRejected(t, tc.query, tc.mention) })
	}
}
