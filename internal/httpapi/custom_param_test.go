package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const eyeColourParam = `{"resourceType":"SearchParameter","url":"http://example.org/sp/eye-colour","name":"EyeColour",
 "status":"%s","description":"eye colour","code":"%s","base":["Patient"],"type":"%s",
 "expression":"%s"}`

const eyeExpr = "Patient.extension.where(url='http://example.org/eye-colour').value"

func eyePatient(colour string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","extension":[{"url":"http://example.org/eye-colour","valueCode":%q}]}`, colour)
}

// customSearch returns the sorted ids of the matches of a search on base
// and the text of its OperationOutcome entry.
func customSearch(t *testing.T, base, query string) ([]string, string) {
	t.Helper()
	ids, _, outcome := searchEntries(t, do(t, base, "GET", "/fhir/"+query, ""))
	return ids, outcome
}

// waitJobDone polls GET /fhir/$reindex until the job of the SearchParameter
// version is done, and returns its parts.
func waitJobDone(t *testing.T, base, spVersion string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := do(t, base, "GET", "/fhir/$reindex", "")
		if r.status != http.StatusOK {
			t.Fatalf("$reindex: %d %s", r.status, r.body)
		}
		params, _ := r.json(t)["parameter"].([]any)
		for _, p := range params {
			parts := map[string]any{}
			for _, part := range p.(map[string]any)["part"].([]any) {
				part := part.(map[string]any)
				for k, v := range part {
					if k != "name" {
						parts[part["name"].(string)] = v
					}
				}
			}
			if ref, _ := parts["searchParameter"].(map[string]any); ref["reference"] == spVersion && parts["state"] == "done" {
				return parts
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job of %s did not finish: %s", spVersion, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCustomSearchParameter(t *testing.T) {
	e := newEnv(t)
	want := map[string][]string{}
	for _, colour := range []string{"blue", "brown", "blue", "green", "blue"} {
		want[colour] = append(want[colour], e.create("Patient", eyePatient(colour)))
	}
	e.create("Patient", `{"resourceType":"Patient","gender":"female"}`)
	e.expectRejected(t, "Patient?eye-colour=blue", "eye-colour")

	t.Run("invalid definitions are rejected", func(t *testing.T) {
		for _, tc := range []struct {
			name, status, code, typ, expr string
			wantStatus                    int
			wantExpr                      string
		}{
			{"expression syntax", "active", "eye", "token", "Patient.extension.where(", 422, "SearchParameter.expression"},
			{"unknown element", "active", "eye", "token", "Patient.eyeColour", 422, "SearchParameter.expression"},
			{"built-in code", "active", "birthdate", "token", eyeExpr, 422, "SearchParameter.code"},
			{"code characters", "active", "eye colour", "token", eyeExpr, 422, "SearchParameter.code"},
			{"composite", "active", "eye", "composite", eyeExpr, 422, "SearchParameter.type"},
			{"unknown type", "active", "eye", "colour", eyeExpr, 400, "SearchParameter.type"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do("POST", "/fhir/SearchParameter", fmt.Sprintf(eyeColourParam, tc.status, tc.code, tc.typ, tc.expr))
				if r.status != tc.wantStatus || r.expression(t) != tc.wantExpr {
					t.Errorf("%d at %q, want %d at %s: %s", r.status, r.expression(t), tc.wantStatus, tc.wantExpr, r.body)
				}
			})
		}
		// A draft is stored, but not served.
		e.create("SearchParameter", fmt.Sprintf(eyeColourParam, "draft", "eye-draft", "token", "Patient.eyeColour"))
		e.expectRejected(t, "Patient?eye-draft=blue", "eye-draft")
	})

	spID := e.create("SearchParameter", fmt.Sprintf(eyeColourParam, "active", "eye-colour", "token", eyeExpr))
	job := "SearchParameter/" + spID + "/_history/1"

	t.Run("a search before the reindex warns", func(t *testing.T) {
		_, outcome := customSearch(t, e.srv.URL, "Patient?eye-colour=blue")
		if !strings.Contains(outcome, "eye-colour is being indexed") || !strings.Contains(outcome, job) {
			t.Errorf("no warning about the unfinished reindex: %q", outcome)
		}
	})

	e.runJobs(e.jobs)
	parts := waitJobDone(t, e.srv.URL, job)
	if parts["processed"] != parts["total"] || fmt.Sprint(parts["total"]) != "6" || parts["code"] != "eye-colour" || parts["type"] != "Patient" {
		t.Errorf("job parts %v, want 6 of 6 Patients for eye-colour", parts)
	}

	t.Run("search after the reindex", func(t *testing.T) {
		for colour, ids := range want {
			sort.Strings(ids)
			got, outcome := customSearch(t, e.srv.URL, "Patient?eye-colour="+colour)
			if diff := cmp.Diff(ids, got); diff != "" {
				t.Errorf("eye-colour=%s (-want +got):\n%s", colour, diff)
			}
			if outcome != "" {
				t.Errorf("eye-colour=%s: an outcome after the reindex: %s", colour, outcome)
			}
		}
		got, _ := customSearch(t, e.srv.URL, "Patient?eye-colour:missing=true")
		if len(got) != 1 {
			t.Errorf("eye-colour:missing=true found %v, want the one Patient without it", got)
		}
	})

	t.Run("a new resource is indexed when written", func(t *testing.T) {
		id := e.create("Patient", eyePatient("grey"))
		got, _ := customSearch(t, e.srv.URL, "Patient?eye-colour=grey")
		if diff := cmp.Diff([]string{id}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("the CapabilityStatement lists it", func(t *testing.T) {
		if !strings.Contains(string(e.get("/fhir/metadata").body), `{"name":"eye-colour","definition":"http://example.org/sp/eye-colour","type":"token"}`) {
			t.Error("eye-colour is not in the CapabilityStatement")
		}
	})

	t.Run("another instance loads it", func(t *testing.T) {
		other, jobs := e.second()
		if err := jobs.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, outcome := customSearch(t, other.URL, "Patient?eye-colour=green")
		if diff := cmp.Diff(want["green"], got); diff != "" || outcome != "" {
			t.Errorf("(-want +got):\n%s%s", diff, outcome)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if !strings.Contains(string(e.get("/metrics").body), `kapfhir_reindex_jobs{state="done"} 1`) {
			t.Error("no gauge of the finished job")
		}
	})

	t.Run("deleting it makes the code unknown", func(t *testing.T) {
		if r := e.do("DELETE", "/fhir/SearchParameter/"+spID, ""); r.status != http.StatusNoContent && r.status != http.StatusOK {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		e.expectRejected(t, "Patient?eye-colour=blue", "eye-colour")
		waitJobDone(t, e.srv.URL, "SearchParameter/"+spID+"/_history/2")
		if strings.Contains(string(e.get("/fhir/metadata").body), `"eye-colour"`) {
			t.Error("the CapabilityStatement still lists eye-colour")
		}
	})
}
