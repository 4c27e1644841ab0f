package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/httpapi"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/mappings"
)

// TestSyncAdmin covers the admin API over a store holding a dead letter:
// the endpoints without secrets, status, list, inspect, replay and the
// errors. The engine does not run: delivery has its own tests
// (internal/ehr/outbound).
func TestSyncAdmin(t *testing.T) {
	st, _ := storetest.Open(t, nil)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	t.Setenv("SYNC_TEST_TOKEN", "s3cret-token")
	cfg, err := ehr.Parse([]byte(`{"endpoints":[{"name":"st-mary","baseUrl":"http://127.0.0.1:1/fhir",
		"auth":{"type":"bearer","token":"env:SYNC_TEST_TOKEN"},"send":{"types":["Observation"],"recipient":"Organization/h"}}]}`),
		ehr.JSON, ehr.DefaultSources())
	if err != nil {
		t.Fatal(err)
	}
	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := outbound.New(st, fhir.NewRegistry(), mp, cfg, m, logger, outbound.Options{Holder: lease.Holder{Owner: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, id := range []string{"o1", "o2", "o3"} {
		if err := st.PutDeadLetter(ctx, &store.DeadLetter{Endpoint: "st-mary", Type: "Observation", LocalID: id, Version: 1, Seq: int64(i + 1),
			Status: 422, Reason: "validation", Outcome: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"required"}]}`,
			Time: when.Add(time.Duration(i) * time.Second), State: store.DeadLetterDead}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Metrics: m, Gatherer: reg, Logger: logger, Sync: eng,
		Ready: st.Ping, MaxBodyBytes: 1 << 20, Version: "test"}))
	t.Cleanup(srv.Close)

	call := func(method, path string, wantStatus int) map[string]any {
		t.Helper()
		out := adminCall(t, srv.URL, method, path, "", wantStatus)
		if out == nil {
			t.Fatalf("%s %s: no JSON body", method, path)
		}
		return out
	}

	eps := call("GET", "/admin/sync/endpoints", 200)["endpoints"].([]any)
	if len(eps) != 1 || eps[0].(map[string]any)["name"] != "st-mary" || eps[0].(map[string]any)["auth"] != "bearer" {
		t.Errorf("endpoints %v", eps)
	}
	status := call("GET", "/admin/sync/endpoints/st-mary", 200)
	if status["deadLettered"] != 3.0 || status["held"] != false {
		t.Errorf("status %v", status)
	}
	page := call("GET", "/admin/sync/endpoints/st-mary/dead-letters?_count=2", 200)
	if ds := page["deadLetters"].([]any); len(ds) != 2 || ds[0].(map[string]any)["id"] != "o1" || page["next"] == nil {
		t.Fatalf("first page %v", page)
	}
	page = call("GET", "/admin/sync/endpoints/st-mary/dead-letters?_count=2&page="+page["next"].(string), 200)
	if ds := page["deadLetters"].([]any); len(ds) != 1 || ds[0].(map[string]any)["id"] != "o3" || page["next"] != nil {
		t.Fatalf("second page %v", page)
	}
	d := call("GET", "/admin/sync/endpoints/st-mary/dead-letters/Observation/o2/1", 200)
	if d["outcome"].(map[string]any)["resourceType"] != "OperationOutcome" || d["status"] != 422.0 || d["state"] != "dead" {
		t.Errorf("dead letter %v", d)
	}
	if d := call("POST", "/admin/sync/endpoints/st-mary/dead-letters/Observation/o2/1/replay", 200); d["state"] != "replay" {
		t.Errorf("after replay %v", d)
	}
	if n := call("GET", "/admin/sync/endpoints/st-mary/dead-letters?state=replay", 200)["deadLetters"].([]any); len(n) != 1 {
		t.Errorf("%d waiting for replay", len(n))
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/admin/sync/endpoints/other", 404},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters/Observation/o9/1", 404},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters/Nope/o1/1", 404},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters/Observation/o1/x", 404},
		{"POST", "/admin/sync/endpoints/st-mary/dead-letters/Observation/o9/1/replay", 404},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters?state=lost", 400},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters?_count=0", 400},
		{"GET", "/admin/sync/endpoints/st-mary/dead-letters?page=bm90LWEtdG9rZW4", 400},
	} {
		if out := call(c.method, c.path, c.status); out["resourceType"] != "OperationOutcome" {
			t.Errorf("%s %s: %v, want an OperationOutcome", c.method, c.path, out)
		}
	}
}

// adminCall sends a request to the admin API at base, checks its status
// and that no secret shows in the answer, and returns the JSON body (nil
// when there is none).
func adminCall(t *testing.T, base, method, path, body string, wantStatus int) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, wantStatus)
	}
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("%s %s shows a secret: %s", method, path, b)
	}
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return out
}
