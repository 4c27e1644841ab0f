package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const summaryPatient = `{"resourceType":"Patient",` +
	`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jo Doe</div>"},` +
	`"name":[{"family":"Doe"}],"gender":"female","birthDate":"1980-05-17",` +
	`"_birthDate":{"extension":[{"url":"http://example.org/precision","valueDecimal":7.50}]},` +
	`"deceasedDateTime":"2020-01-01","maritalStatus":{"text":"married"},"multipleBirthInteger":2}`

func summaryObservation(patient string) string {
	return `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"Patient/` + patient + `"},` +
		`"valueQuantity":{"value":1.50,"unit":"mg"},"interpretation":[{"text":"high"}],"note":[{"text":"n"}]}`
}

// members returns the sorted member names of a resource.
func members(res map[string]any) []string {
	var out []string
	for k := range res {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// subsetted reports whether the resource carries the SUBSETTED tag.
func subsetted(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		t := t.(map[string]any)
		if t["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" && t["code"] == "SUBSETTED" {
			return true
		}
	}
	return false
}

func TestSummaryRead(t *testing.T) {
	e := newEnv(t)
	pid := e.create("Patient", summaryPatient)
	oid := e.create("Observation", summaryObservation(pid))
	all := []string{"_birthDate", "birthDate", "deceasedDateTime", "gender", "id", "maritalStatus", "meta", "multipleBirthInteger", "name", "resourceType", "text"}
	tests := []struct {
		path    string
		want    []string
		tagged  bool
		lexemes []string // must appear in the body as stored
	}{
		{"Patient/" + pid + "?_summary=true", []string{"_birthDate", "birthDate", "deceasedDateTime", "gender", "id", "meta", "name", "resourceType"}, true, []string{`"valueDecimal":7.50`}},
		{"Patient/" + pid + "?_summary=text", []string{"id", "meta", "resourceType", "text"}, true, nil},
		{"Patient/" + pid + "?_summary=data", all[:len(all)-1], true, []string{`"valueDecimal":7.50`}},
		{"Patient/" + pid + "?_summary=false", all, false, nil},
		{"Patient/" + pid, all, false, nil},
		{"Patient/" + pid + "/_history/1?_summary=text", []string{"id", "meta", "resourceType", "text"}, true, nil},
		{"Patient/" + pid + "?_elements=deceased,maritalStatus", []string{"deceasedDateTime", "id", "maritalStatus", "meta", "resourceType"}, true, nil},
		{"Patient/" + pid + "?_elements=birthDate&_elements=name", []string{"_birthDate", "birthDate", "id", "meta", "name", "resourceType"}, true, []string{`"valueDecimal":7.50`}},
		// Mandatory elements (status, code) stay.
		{"Observation/" + oid + "?_elements=value", []string{"code", "id", "meta", "resourceType", "status", "valueQuantity"}, true, []string{`"value":1.50`}},
		{"Observation/" + oid + "/_history/1?_summary=true", []string{"code", "id", "meta", "resourceType", "status", "subject", "valueQuantity"}, true, []string{`"value":1.50`}},
		{"Observation/" + oid + "?_summary=false&_elements=status", []string{"code", "id", "meta", "resourceType", "status"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := e.get("/fhir/" + tt.path)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r.header.Get("ETag") != `W/"1"` {
				t.Errorf("ETag %q", r.header.Get("ETag"))
			}
			res := r.json(t)
			if diff := cmp.Diff(tt.want, members(res)); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			if got := subsetted(res); got != tt.tagged {
				t.Errorf("SUBSETTED tag %v, want %v: %s", got, tt.tagged, r.body)
			}
			if res["meta"].(map[string]any)["versionId"] != "1" {
				t.Errorf("meta lost its versionId: %s", r.body)
			}
			for _, l := range tt.lexemes {
				if !strings.Contains(string(r.body), l) {
					t.Errorf("%s not kept as stored: %s", l, r.body)
				}
			}
		})
	}
	// Lenient handling skips unknown element names; a read has no Bundle
	// to report them in.
	r := e.get("/fhir/Patient/"+pid+"?_elements=gender,nickname", "Prefer", "handling=lenient")
	if r.status != http.StatusOK {
		t.Fatalf("lenient: %d %s", r.status, r.body)
	}
	if diff := cmp.Diff([]string{"gender", "id", "meta", "resourceType"}, members(r.json(t))); diff != "" {
		t.Errorf("lenient members (-want +got):\n%s", diff)
	}
}

func TestSummaryRejected(t *testing.T) {
	e := newEnv(t)
	pid := e.create("Patient", summaryPatient)
	for _, tc := range []struct{ path, expression, mention string }{
		{"Patient?_summary=short", "_summary", "short"},
		{"Patient?_elements=name,nickname", "_elements", "nickname"},
		// Choice elements go by their base name.
		{"Observation?_elements=valueQuantity", "_elements", "valueQuantity"},
		{"Patient?_elements=name.family", "_elements", "name.family"},
		{"Patient?_summary=true&_elements=name", "_elements", "_summary"},
		{"Patient?_summary=count&_elements=name", "_elements", "_summary"},
		{"Patient/" + pid + "?_summary=count", "_summary", "count"},
		{"Patient/" + pid + "?_summary=short", "_summary", "short"},
		{"Patient/" + pid + "?_elements=nickname", "_elements", "nickname"},
		{"Patient/" + pid + "/_history/1?_elements=name&_summary=text", "_elements", "_summary"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := e.get("/fhir/" + tc.path)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%d, want 400: %s", r.status, r.body)
			}
			if got := r.expression(t); got != tc.expression {
				t.Errorf("expression %q, want %q: %s", got, tc.expression, r.body)
			}
			if !strings.Contains(string(r.body), tc.mention) {
				t.Errorf("the OperationOutcome does not name %q: %s", tc.mention, r.body)
			}
		})
	}
}

// searchResources returns the resources of a searchset by search mode.
func searchResources(t *testing.T, r *response) map[string][]map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	out := map[string][]map[string]any{}
	entries, _ := r.json(t)["entry"].([]any)
	for _, en := range entries {
		en := en.(map[string]any)
		mode := en["search"].(map[string]any)["mode"].(string)
		out[mode] = append(out[mode], en["resource"].(map[string]any))
	}
	return out
}

func TestSummarySearch(t *testing.T) {
	e := newEnv(t)
	pid := e.create("Patient", summaryPatient)
	for range 3 {
		e.create("Observation", summaryObservation(pid))
	}
	tests := []struct {
		query            string
		match, include   []string // members of every match / included resource
		matchTagged      bool
		lexeme           string
		lenientMentioned string // an outcome entry must name it
	}{
		{"Observation?_summary=true&_include=Observation:subject",
			[]string{"code", "id", "meta", "resourceType", "status", "subject", "valueQuantity"},
			[]string{"_birthDate", "birthDate", "deceasedDateTime", "gender", "id", "meta", "name", "resourceType"}, true, `"value":1.50`, ""},
		{"Observation?_summary=text&_include=Observation:subject",
			[]string{"code", "id", "meta", "resourceType", "status"},
			[]string{"id", "meta", "resourceType", "text"}, true, "", ""},
		{"Observation?_summary=data",
			[]string{"code", "id", "interpretation", "meta", "note", "resourceType", "status", "subject", "valueQuantity"}, nil, false, `"value":1.50`, ""},
		// Names the included type does not have select nothing of it.
		{"Observation?_elements=value,note&_include=Observation:subject",
			[]string{"code", "id", "meta", "note", "resourceType", "status", "valueQuantity"},
			[]string{"id", "meta", "resourceType"}, true, `"value":1.50`, ""},
		{"Observation?_elements=value,bogus",
			[]string{"code", "id", "meta", "resourceType", "status", "valueQuantity"}, nil, true, "", "bogus"},
		{"Observation?_elements=note&_summary=data",
			[]string{"code", "id", "interpretation", "meta", "note", "resourceType", "status", "subject", "valueQuantity"}, nil, false, "", "_summary"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := e.get("/fhir/"+tt.query, "Prefer", "handling=lenient")
			got := searchResources(t, r)
			if len(got["match"]) != 3 {
				t.Fatalf("%d matches: %s", len(got["match"]), r.body)
			}
			for _, res := range got["match"] {
				if diff := cmp.Diff(tt.match, members(res)); diff != "" {
					t.Errorf("match members (-want +got):\n%s", diff)
				}
				if subsetted(res) != tt.matchTagged {
					t.Errorf("match tagged %v, want %v", subsetted(res), tt.matchTagged)
				}
			}
			wantIncluded := 0
			if tt.include != nil {
				wantIncluded = 1 // the one Patient
			}
			if len(got["include"]) != wantIncluded {
				t.Fatalf("%d included: %s", len(got["include"]), r.body)
			}
			for _, res := range got["include"] {
				if diff := cmp.Diff(tt.include, members(res)); diff != "" {
					t.Errorf("include members (-want +got):\n%s", diff)
				}
				if !subsetted(res) {
					t.Errorf("included resource not tagged: %v", res)
				}
			}
			if !strings.Contains(string(r.body), tt.lexeme) {
				t.Errorf("%s not kept as stored: %s", tt.lexeme, r.body)
			}
			if outcome := got["outcome"]; (tt.lenientMentioned != "") != (len(outcome) == 1) ||
				tt.lenientMentioned != "" && !strings.Contains(string(r.body), tt.lenientMentioned) {
				t.Errorf("outcome %v, want one naming %q", outcome, tt.lenientMentioned)
			}
		})
	}
}

// The next link keeps _summary and _elements (they shape every page), and
// _summary=count still gives the total only.
func TestSummarySearchPagingAndCount(t *testing.T) {
	e := newEnv(t)
	pid := e.create("Patient", summaryPatient)
	for range 3 {
		e.create("Observation", summaryObservation(pid))
	}
	for _, q := range []string{"_summary=text", "_elements=note"} {
		next := "/fhir/Observation?_count=2&" + q
		pages := 0
		for next != "" {
			r := e.get(next)
			b := r.json(t)
			for _, res := range searchResources(t, r)["match"] {
				if !subsetted(res) || res["subject"] != nil {
					t.Errorf("%s page %d: not subsetted: %v", q, pages, res)
				}
			}
			pages++
			next = ""
			for _, l := range b["link"].([]any) {
				if l := l.(map[string]any); l["relation"] == "next" {
					u, err := url.Parse(l["url"].(string))
					if err != nil {
						t.Fatal(err)
					}
					k, v, _ := strings.Cut(q, "=")
					if u.Query().Get(k) != v {
						t.Errorf("next link lost %s: %s", q, u)
					}
					next = u.RequestURI()
				}
			}
		}
		if pages != 2 {
			t.Errorf("%s: %d pages, want 2", q, pages)
		}
	}
	b := e.get("/fhir/Observation?_summary=count").json(t)
	if fmt.Sprint(b["total"]) != "3" || b["entry"] != nil {
		t.Errorf("_summary=count: %v", b)
	}
}
