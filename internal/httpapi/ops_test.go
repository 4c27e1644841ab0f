package httpapi_test

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kapfhir/kapfhir/internal/storetest"
)

// TestStoreCommandsPerInteraction counts the store commands each
// interaction sends (driver CommandMonitor). These numbers are the design's
// cost model; docs/performance.md quotes them.
func TestStoreCommandsPerInteraction(t *testing.T) {
	e := newEnv(t)
	// On the embedded store a write reads the current version by _id
	// before updating it by _id alone: FerretDB scans the collection for
	// any other filter (store.updateVersion). MongoDB takes {_id, vid}.
	byID := 0
	if _, embedded := storetest.URI(t); embedded {
		byID = 1
	}

	id := e.create("Patient", fmt.Sprintf(patient, "cmd0"))
	e.commands.Take()
	steps := []struct {
		interaction string
		run         func() *response
		want        map[string]int
	}{
		{"read", func() *response { return e.get("/fhir/Patient/" + id) },
			map[string]int{"find": 1}},
		{"vread", func() *response { return e.get("/fhir/Patient/" + id + "/_history/1") },
			map[string]int{"find": 1}},
		{"create", func() *response { return e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cmd1")) },
			map[string]int{"findAndModify": 1, "insert": 2}},
		{"update", func() *response {
			return e.do("PUT", "/fhir/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":true}`, id))
		}, map[string]int{"find": 1 + byID, "findAndModify": 1, "insert": 1, "update": 1}},
		{"update, no change", func() *response {
			return e.do("PUT", "/fhir/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","active":true}`, id))
		}, map[string]int{"find": 1}},
		{"conditional create, match", func() *response {
			return e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cmd1"), "If-None-Exist", "identifier=urn:oid:1.2.3|cmd1")
		}, map[string]int{"find": 1}},
		{"conditional create, no match", func() *response {
			return e.do("POST", "/fhir/Patient", fmt.Sprintf(patient, "cmd2"), "If-None-Exist", "identifier=urn:oid:1.2.3|cmd2")
		}, map[string]int{"find": 1, "insert": 3, "findAndModify": 1}},
		{"history-instance", func() *response { return e.get("/fhir/Patient/" + id + "/_history") },
			map[string]int{"find": 1}},
		{"patch", func() *response {
			return e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/active","value":false}]`, "Content-Type", jsonPatchType)
		}, map[string]int{"find": 2 + byID, "findAndModify": 1, "insert": 1, "update": 1}},
		{"patch, no change", func() *response {
			return e.do("PATCH", "/fhir/Patient/"+id, `[{"op":"test","path":"/active","value":false}]`, "Content-Type", jsonPatchType)
		}, map[string]int{"find": 2}},
		// The patient (404/410), then one query over every compartment
		// type; its references to non-compartment types would add one
		// find per type (this patient has none).
		{"Patient $everything", func() *response { return e.get("/fhir/Patient/" + id + "/$everything") },
			map[string]int{"find": 2}},
		{"$validate", func() *response { return e.do("POST", "/fhir/Patient/$validate", fmt.Sprintf(patient, "cmd3")) },
			map[string]int{}},
		{"delete", func() *response { return e.do("DELETE", "/fhir/Patient/"+id, "") },
			map[string]int{"find": 1 + byID, "findAndModify": 1, "insert": 1, "update": 1}},
	}
	var doc strings.Builder
	doc.WriteString("| interaction | store commands |\n| --- | --- |\n")
	for _, s := range steps {
		if r := s.run(); r.status >= 400 {
			t.Fatalf("%s: %d %s", s.interaction, r.status, r.body)
		}
		got := e.commands.Take()
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: commands (-want +got):\n%s", s.interaction, diff)
		}
		fmt.Fprintf(&doc, "| %s | %s |\n", s.interaction, describe(got))
	}
	t.Logf("store commands per interaction:\n%s", doc.String())
	if path := os.Getenv("KAPFHIR_WRITE_COMMAND_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(doc.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func describe(counts map[string]int) string {
	var names []string
	total := 0
	for n, c := range counts {
		names = append(names, fmt.Sprintf("%s %d", n, c))
		total += c
	}
	sort.Strings(names)
	return fmt.Sprintf("%d (%s)", total, strings.Join(names, ", "))
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	id := e.create("Patient", fmt.Sprintf(patient, "metrics-canary-4711"))
	e.get("/fhir/Patient/" + id)
	e.get("/fhir/Patient/" + id + "?identifier=metrics-canary-4711")
	e.get("/fhir/Nope/1")
	r := e.get("/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	text := string(r.body)
	for _, family := range []string{
		"kapfhir_http_requests_total", "kapfhir_http_request_duration_seconds",
		"kapfhir_store_command_duration_seconds", "go_goroutines", "process_cpu_seconds_total", "go_build_info",
	} {
		if !strings.Contains(text, "\n"+family) && !strings.HasPrefix(text, family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	for _, want := range []string{
		`kapfhir_http_requests_total{code="201",interaction="create",method="POST",type="Patient"} 1`,
		`kapfhir_http_requests_total{code="200",interaction="read",method="GET",type="Patient"} 2`,
		`kapfhir_http_requests_total{code="404",interaction="read",method="GET",type=""} 1`,
		`kapfhir_http_request_duration_seconds_count{interaction="read",route="/fhir/:type/:id"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// No ids, identifiers or other request content in labels or logs.
	for _, secret := range []string{id, "metrics-canary-4711", "Testperson"} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t)
	if r := e.get("/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz: %d", r.status)
	}
	if r := e.get("/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz: %d", r.status)
	}
	if r := e.get("/fhir/metadata"); r.status != http.StatusOK || r.json(t)["resourceType"] != "CapabilityStatement" {
		t.Errorf("metadata: %d %s", r.status, r.body)
	}
	if r := e.get("/healthz"); r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	if r := e.get("/healthz", "X-Request-Id", "abc-123"); r.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("X-Request-Id not echoed: %q", r.header.Get("X-Request-Id"))
	}
}
