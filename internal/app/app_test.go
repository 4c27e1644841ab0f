package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/internal/config"
)

func testConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	env["KAPFHIR_HTTP_ADDR"] = "127.0.0.1:0"
	env["KAPFHIR_DATA_DIR"] = t.TempDir()
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testOptions() Options {
	return Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), ErrorLog: io.Discard}
}

// With KAPFHIR_EHR_CONFIG the sync engine starts with the service, its
// endpoints are in the admin API, and it stops with the service.
func TestEHRSyncWiring(t *testing.T) {
	ehrSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[{"type":"Observation","interaction":[{"code":"create"}]}]}]}`)
	}))
	t.Cleanup(ehrSrv.Close)
	path := filepath.Join(t.TempDir(), "ehr.yaml")
	yaml := "endpoints:\n  - name: st-mary\n    baseUrl: " + ehrSrv.URL + "/fhir\n    auth: {type: none}\n    send: {types: [Observation]}\n    pull: {types: [Patient], every: 1m}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Start(context.Background(), testConfig(t, map[string]string{"KAPFHIR_EHR_CONFIG": path}), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if a.pull == nil || a.notifier != nil {
		t.Errorf("pull %v, notifier %v: want the pull and no notifier", a.pull, a.notifier)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	resp, err := http.Get(a.URL() + "/admin/sync/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Endpoints []struct{ Name string } `json:"endpoints"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || len(out.Endpoints) != 1 || out.Endpoints[0].Name != "st-mary" {
		t.Errorf("endpoints %+v, %v", out, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// A bad EHR configuration stops the start.
func TestEHRSyncBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ehr.yaml")
	if err := os.WriteFile(path, []byte("endpoints:\n  - name: x\n    baseUrl: http://example.org/fhir\n    auth: {type: none}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), testConfig(t, map[string]string{"KAPFHIR_EHR_CONFIG": path}), testOptions())
	if err == nil || !strings.Contains(err.Error(), "endpoints[0].baseUrl") {
		t.Errorf("Start: %v, want the baseUrl error", err)
	}
}

// With KAPFHIR_SUBSCRIPTIONS a Subscription created through the API is
// notified of a matching write.
func TestSubscriptionsWiring(t *testing.T) {
	got := make(chan string, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Secret")
	}))
	t.Cleanup(rcv.Close)
	a, err := Start(context.Background(), testConfig(t, map[string]string{"KAPFHIR_SUBSCRIPTIONS": "true"}), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	post := func(typ, body string) int {
		resp, err := http.Post(a.URL()+"/fhir/"+typ, "application/fhir+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sub := `{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"Observation?status=final","channel":{"type":"rest-hook","endpoint":"` + rcv.URL + `","header":["X-Secret: s"]}}`
	if code := post("Subscription", strings.Replace(sub, "status=final", "colour=red", 1)); code != http.StatusUnprocessableEntity {
		t.Errorf("bad criteria: %d, want 422", code)
	}
	if code := post("Subscription", sub); code != http.StatusCreated {
		t.Fatalf("Subscription: %d", code)
	}
	if code := post("Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`); code != http.StatusCreated {
		t.Fatalf("Observation: %d", code)
	}
	select {
	case secret := <-got:
		if secret != "s" {
			t.Errorf("secret header %q", secret)
		}
	case <-time.After(30 * time.Second):
		t.Error("no notification within 30 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// The KAP definitions are stored at start and served; a restart on the
// same data keeps their version.
func TestKapDefinitionsServed(t *testing.T) {
	cfg := testConfig(t, map[string]string{})
	for run := range 2 {
		a, err := Start(context.Background(), cfg, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx) }()
		for _, path := range []string{"/fhir/CodeSystem/kap", "/fhir/OperationDefinition/kap-summary"} {
			resp, err := http.Get(a.URL() + path)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Meta struct{ VersionID string } `json:"meta"`
			}
			err = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || res.Meta.VersionID != "1" {
				t.Errorf("run %d: GET %s: %d, version %q, %v; want 200 at version 1", run, path, resp.StatusCode, res.Meta.VersionID, err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

// Audit is on by default, and a request's AuditEvent survives a stop
// (Close writes what is still queued before the store closes): the
// restarted service finds it.
func TestAuditDrainedOnShutdown(t *testing.T) {
	cfg := testConfig(t, map[string]string{})
	serve := func(f func(base string)) {
		t.Helper()
		a, err := Start(context.Background(), cfg, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		if a.audit == nil {
			t.Fatal("audit is off by default")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx) }()
		f(a.URL())
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	get := func(url string) *http.Response {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	serve(func(base string) {
		get(base + "/fhir/Patient/gone").Body.Close() // a 404, audited with outcome 4
	})
	serve(func(base string) {
		resp := get(base + "/fhir/AuditEvent?entity=Patient/gone&outcome=4")
		defer resp.Body.Close()
		var b struct{ Entry []any }
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || len(b.Entry) != 1 {
			t.Errorf("AuditEvents of the read before the restart: %d, %v; want 1", len(b.Entry), err)
		}
	})
}
