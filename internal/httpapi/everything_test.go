package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// patientCompartment lists, for each type in the Synthea data, the
// elements whose reference to a Patient puts the resource in that
// patient's compartment: the R4 CompartmentDefinition "Patient" written
// out as element paths from the spec's pages, so that the expected results
// do not come from the server's generated tables.
var patientCompartment = map[string][][]string{
	"Patient":              {{"link", "other"}},
	"Observation":          {{"subject"}, {"performer"}},
	"Encounter":            {{"subject"}},
	"Condition":            {{"subject"}, {"asserter"}},
	"Claim":                {{"patient"}, {"payee", "party"}},
	"ExplanationOfBenefit": {{"patient"}, {"payee", "party"}},
	"DiagnosticReport":     {{"subject"}},
	"Immunization":         {{"patient"}},
	"MedicationRequest":    {{"subject"}},
	"Procedure":            {{"subject"}, {"performer", "actor"}},
	"CarePlan":             {{"subject"}, {"activity", "detail", "performer"}},
	"Goal":                 {{"subject"}},
}

// outsideCompartments are the Synthea types in no patient's compartment:
// $everything includes them when the patient's resources refer to them.
var outsideCompartments = map[string]bool{"Organization": true, "Practitioner": true}

// refsAt returns the references at path in v (through arrays).
func refsAt(v any, path []string) []string {
	switch v := v.(type) {
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, refsAt(x, path)...)
		}
		return out
	case map[string]any:
		if len(path) == 0 {
			if s, ok := v["reference"].(string); ok {
				return []string{s}
			}
			return nil
		}
		return refsAt(v[path[0]], path[1:])
	}
	return nil
}

// allRefs returns every reference in v outside contained resources.
func allRefs(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			out = append(out, allRefs(x)...)
		}
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "reference" {
				out = append(out, s)
			} else if k != "contained" {
				out = append(out, allRefs(x)...)
			}
		}
	}
	return out
}

func key(r map[string]any) string { return r["resourceType"].(string) + "/" + r["id"].(string) }

// expectedEverything derives, from the loaded resources, what
// Patient/id/$everything returns: the matches (the patient and its
// compartment) and the resources outside every compartment they refer to.
func expectedEverything(t *testing.T, loaded []map[string]any, id string) (matches, included []string) {
	t.Helper()
	exists := map[string]bool{}
	for _, r := range loaded {
		exists[key(r)] = true
	}
	inc := map[string]bool{}
	for _, r := range loaded {
		typ := r["resourceType"].(string)
		paths, ok := patientCompartment[typ]
		if !ok && !outsideCompartments[typ] {
			t.Fatalf("the test does not know whether %s is in the Patient compartment", typ)
		}
		in := key(r) == "Patient/"+id
		for _, p := range paths {
			in = in || slices.Contains(refsAt(r, p), "Patient/"+id)
		}
		if !in {
			continue
		}
		matches = append(matches, key(r))
		for _, ref := range allRefs(r) {
			if typ, _, _ := strings.Cut(ref, "/"); outsideCompartments[typ] && exists[ref] {
				inc[ref] = true
			}
		}
	}
	for k := range inc {
		included = append(included, k)
	}
	slices.Sort(matches)
	slices.Sort(included)
	return matches, included
}

// walked is what paging through a searchset gave.
type walked struct {
	matches  []string // in the order served
	included map[string]bool
	pages    int
}

// walk follows the next links from path, checking each page.
func (e *env) walk(t *testing.T, path string) walked {
	t.Helper()
	w := walked{included: map[string]bool{}}
	for path != "" {
		r := e.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		b := r.json(t)
		if b["type"] != "searchset" {
			t.Fatalf("GET %s: a Bundle of type %v", path, b["type"])
		}
		w.pages++
		entries, _ := b["entry"].([]any)
		for _, en := range entries {
			en := en.(map[string]any)
			res := en["resource"].(map[string]any)
			switch mode := en["search"].(map[string]any)["mode"]; mode {
			case "match":
				w.matches = append(w.matches, key(res))
			case "include":
				w.included[key(res)] = true
			default:
				t.Fatalf("GET %s: an entry of mode %v: %v", path, mode, res)
			}
		}
		path = ""
		for _, l := range b["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				path = strings.TrimPrefix(l["url"].(string), e.srv.URL)
			}
		}
		if w.pages > 500 {
			t.Fatal("more than 500 pages: the next links loop")
		}
	}
	return w
}

// sortedKeys and byIDThenType are the expected orders.
func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func byIDThenType(keys []string) []string {
	out := slices.Clone(keys)
	slices.SortFunc(out, func(a, b string) int {
		at, aid, _ := strings.Cut(a, "/")
		bt, bid, _ := strings.Cut(b, "/")
		if c := strings.Compare(aid, bid); c != 0 {
			return c
		}
		return strings.Compare(at, bt)
	})
	return out
}

func TestPatientEverything(t *testing.T) {
	t.Parallel() // long, on its own database: uses the second CPU while the rest run
	e := newEnv(t)
	loaded, _ := loadSynthea(t, e.srv.URL)
	var patients []string
	for _, r := range loaded {
		if r["resourceType"] == "Patient" {
			patients = append(patients, r["id"].(string))
		}
	}
	if len(patients) < 3 {
		t.Fatalf("%d patients loaded, want the Synthea ones", len(patients))
	}

	t.Run("each patient's resources", func(t *testing.T) {
		for _, id := range patients {
			wantM, wantI := expectedEverything(t, loaded, id)
			w := e.walk(t, "/fhir/Patient/"+id+"/$everything?_count=1000")
			if diff := cmp.Diff(byIDThenType(wantM), w.matches); diff != "" {
				t.Errorf("Patient/%s matches, in order (-want +got):\n%s", id, diff)
			}
			if diff := cmp.Diff(wantI, sortedKeys(w.included)); diff != "" {
				t.Errorf("Patient/%s included (-want +got):\n%s", id, diff)
			}
			t.Logf("Patient/%s: %d resources, %d included", id, len(w.matches), len(w.included))
		}
	})

	id := patients[0]
	wantM, wantI := expectedEverything(t, loaded, id)

	t.Run("small pages walk everything once", func(t *testing.T) {
		w := e.walk(t, "/fhir/Patient/"+id+"/$everything?_count=7")
		if diff := cmp.Diff(byIDThenType(wantM), w.matches); diff != "" {
			t.Errorf("matches over pages (-want +got):\n%s", diff)
		}
		if want := (len(wantM) + 6) / 7; w.pages != want {
			t.Errorf("%d pages, want %d", w.pages, want)
		}
		// Includes are per page: every page's references, so over all
		// pages the same set as in one page.
		if diff := cmp.Diff(wantI, sortedKeys(w.included)); diff != "" {
			t.Errorf("included over pages (-want +got):\n%s", diff)
		}
	})

	t.Run("_type", func(t *testing.T) {
		w := e.walk(t, "/fhir/Patient/"+id+"/$everything?_type=Observation,Practitioner&_count=100")
		var want []string
		for _, k := range wantM {
			if strings.HasPrefix(k, "Observation/") {
				want = append(want, k)
			}
		}
		if len(want) == 0 {
			t.Fatal("the patient has no Observation")
		}
		if diff := cmp.Diff(byIDThenType(want), w.matches); diff != "" {
			t.Errorf("_type=Observation,Practitioner matches (-want +got):\n%s", diff)
		}
		for k := range w.included {
			if !strings.HasPrefix(k, "Practitioner/") {
				t.Errorf("_type=Observation,Practitioner includes %s", k)
			}
		}
	})

	t.Run("_since", func(t *testing.T) {
		time.Sleep(2 * time.Millisecond) // lastUpdated has milliseconds: start a new one
		since := time.Now().UTC().Truncate(time.Millisecond)
		time.Sleep(2 * time.Millisecond)
		var changed []string
		for _, r := range loaded {
			if len(changed) == 2 {
				break
			}
			if r["resourceType"] == "Condition" && slices.Contains(wantM, key(r)) {
				r["clinicalStatus"] = map[string]any{"text": "changed"}
				b, _ := json.Marshal(r)
				if res := e.do("PUT", "/fhir/"+key(r), string(b)); res.status != http.StatusOK {
					t.Fatalf("PUT %s: %d %s", key(r), res.status, res.body)
				}
				changed = append(changed, key(r))
			}
		}
		w := e.walk(t, "/fhir/Patient/"+id+"/$everything?_since="+url.QueryEscape(since.Format(time.RFC3339Nano)))
		if diff := cmp.Diff(byIDThenType(changed), w.matches); diff != "" {
			t.Errorf("_since matches (-want +got):\n%s", diff)
		}
		// A partial date: its first instant.
		w = e.walk(t, "/fhir/Patient/"+id+"/$everything?_count=1000&_since="+since.Add(24*time.Hour).Format("2006-01-02"))
		if len(w.matches) != 0 {
			t.Errorf("_since tomorrow: %d matches", len(w.matches))
		}
	})

	t.Run("POST with Parameters", func(t *testing.T) {
		body := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueCode":"Encounter"},{"name":"_type","valueCode":"Goal"},{"name":"_count","valueInteger":1000}]}`
		r := e.do("POST", "/fhir/Patient/"+id+"/$everything", body)
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var got, want []string
		for _, en := range r.json(t)["entry"].([]any) {
			got = append(got, key(en.(map[string]any)["resource"].(map[string]any)))
		}
		for _, k := range wantM {
			if strings.HasPrefix(k, "Encounter/") || strings.HasPrefix(k, "Goal/") {
				want = append(want, k)
			}
		}
		// Encounter and Goal matches only: what they refer to is not of _type.
		if diff := cmp.Diff(byIDThenType(want), got); diff != "" {
			t.Errorf("POST _type=Encounter,Goal (-want +got):\n%s", diff)
		}
	})

	t.Run("errors", func(t *testing.T) {
		gone := e.create("Patient", `{"resourceType":"Patient","active":true}`)
		if r := e.do("DELETE", "/fhir/Patient/"+gone, ""); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d", r.status)
		}
		for _, c := range []struct {
			path       string
			status     int
			expression string
		}{
			{"/fhir/Patient/no-such-patient/$everything", http.StatusNotFound, ""},
			{"/fhir/Patient/" + gone + "/$everything", http.StatusGone, ""},
			{"/fhir/Observation/" + id + "/$everything", http.StatusNotFound, ""},
			{"/fhir/Patient/" + id + "/$everything?_since=yesterday", http.StatusBadRequest, "_since"},
			{"/fhir/Patient/" + id + "/$everything?_type=Nothing", http.StatusBadRequest, "_type"},
			{"/fhir/Patient/" + id + "/$everything?_count=-1", http.StatusBadRequest, "_count"},
			{"/fhir/Patient/" + id + "/$everything?start=2020", http.StatusBadRequest, "start"},
			{"/fhir/Patient/" + id + "/$everything?_page=forged", http.StatusBadRequest, ""},
		} {
			r := e.get(c.path)
			if r.status != c.status {
				t.Errorf("GET %s: %d, want %d: %s", c.path, r.status, c.status, r.body)
				continue
			}
			if got := r.expression(t); got != c.expression {
				t.Errorf("GET %s: expression %q, want %q", c.path, got, c.expression)
			}
		}
		// A cursor of another patient's $everything is not one of this one.
		first := e.get("/fhir/Patient/" + patients[1] + "/$everything?_count=1").json(t)
		links, ok := first["link"].([]any)
		if !ok {
			t.Fatalf("no links: %v", first)
		}
		for _, l := range links {
			if l := l.(map[string]any); l["relation"] == "next" {
				u, _ := url.Parse(l["url"].(string))
				path := fmt.Sprintf("/fhir/Patient/%s/$everything?_count=1&_page=%s", id, url.QueryEscape(u.Query().Get("_page")))
				if r := e.get(path); r.status != http.StatusBadRequest {
					t.Errorf("another patient's cursor: %d, want 400", r.status)
				}
			}
		}
		// Lenient handling skips an unknown parameter and says so.
		r := e.get("/fhir/Patient/"+id+"/$everything?start=2020&_count=1", "Prefer", "handling=lenient")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"start"`) {
			t.Errorf("lenient: %d %s", r.status, r.body)
		}
	})
}

// TestOperationsInCapabilityStatement checks that $everything (Patient)
// and $validate (every type) are declared with their definitions.
func TestOperationsInCapabilityStatement(t *testing.T) {
	e := newEnv(t)
	cs := e.get("/fhir/metadata").json(t)
	ops := map[string][]string{}
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		r := r.(map[string]any)
		list, _ := r["operation"].([]any)
		for _, o := range list {
			o := o.(map[string]any)
			ops[r["type"].(string)] = append(ops[r["type"].(string)], o["name"].(string)+" "+o["definition"].(string))
		}
	}
	validate := "validate http://hl7.org/fhir/OperationDefinition/Resource-validate"
	want := map[string][]string{
		"Patient": {"export http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export", validate,
			"everything http://hl7.org/fhir/OperationDefinition/Patient-everything"},
		"Observation":   {validate},
		"EpisodeOfCare": {validate, "kap-summary https://kapfhir.org/fhir/OperationDefinition/kap-summary"},
	}
	for typ, w := range want {
		if diff := cmp.Diff(w, ops[typ]); diff != "" {
			t.Errorf("%s operations (-want +got):\n%s", typ, diff)
		}
	}
	if len(ops) < 140 {
		t.Errorf("%d types have operations, want every type ($validate)", len(ops))
	}
}
