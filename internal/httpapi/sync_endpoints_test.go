package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/inbound"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/httpapi"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/mappings"
)

// creatingEHR is a minimal EHR for the admin API test: a
// CapabilityStatement taking Observation creates, and creates answered
// with a Location; it records the identifier value of each create and
// the Authorization it came with. Its Patient search answers one
// Patient, for the pull.
type creatingEHR struct {
	srv     *httptest.Server
	mu      sync.Mutex
	created []string // identifier values (Observation/<local id>)
	auth    []string
}

func newCreatingEHR(t *testing.T) *creatingEHR {
	f := &creatingEHR{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		switch {
		case r.Method == "GET" && r.URL.Path == "/fhir/metadata":
			_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[
				{"type":"Observation","interaction":[{"code":"create"},{"code":"update"},{"code":"search-type"}]}]}]}`)
		case r.Method == "GET" && r.URL.Path == "/fhir/Patient":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"search":{"mode":"match"},
				"resource":{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-02T03:04:05Z"},"gender":"unknown"}}]}`)
		case r.Method == "POST" && r.URL.Path == "/fhir/Observation":
			var body struct {
				Identifier []struct{ Value string } `json:"identifier"`
			}
			_ = json.NewDecoder(r.Body).Decode(&body)
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, id := range body.Identifier {
				f.created = append(f.created, id.Value)
			}
			f.auth = append(f.auth, r.Header.Get("Authorization"))
			w.Header().Set("Location", fmt.Sprintf("%s/fhir/Observation/r%d/_history/1", f.srv.URL, len(f.created)))
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"resourceType":"Observation"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// creates counts the creates of Observation/<id>.
func (f *creatingEHR) creates(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.created {
		if v == "Observation/"+id {
			n++
		}
	}
	return n
}

// TestSyncEndpointsAPI defines an endpoint through the admin API while
// the engine runs: delivery starts without a restart, the endpoint is
// listed with its source and secret reference (never the value), inline
// secrets and file endpoints are refused, DELETE stops delivery and a new
// PUT resumes from the cursor; an endpoint with pull types is pulled from
// at once.
func TestSyncEndpointsAPI(t *testing.T) {
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	prom := prometheus.NewRegistry()
	m := metrics.New(prom)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	fake := newCreatingEHR(t)
	t.Setenv("ADMIN_SYNC_TOKEN", "s3cret-admin-token")
	// The file endpoint sends nothing: its cursor shows the engine ran a
	// round over a change.
	cfg, err := ehr.Parse([]byte(`{"endpoints":[{"name":"from-file","baseUrl":"`+fake.srv.URL+`/fhir","auth":{"type":"none"}}]}`),
		ehr.JSON, ehr.DefaultSources())
	if err != nil {
		t.Fatal(err)
	}
	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := outbound.New(st, reg, mp, cfg, m, logger, outbound.Options{Holder: lease.Holder{Owner: "test"}, Poll: 20 * time.Millisecond, Reload: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		eng.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	svc := resource.New(st, reg, time.Now)
	// The puller's periodic reload never comes in the test: the PUT
	// reloads it.
	pull, err := inbound.New(st, svc, reg, cfg, m, logger, inbound.Options{Holder: lease.Holder{Owner: "test"}, Reload: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pulling := make(chan struct{})
	go func() {
		defer close(pulling)
		pull.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-pulling })
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Resources: svc, Registry: reg, Metrics: m, Gatherer: prom, Logger: logger,
		Sync: eng, Pull: pull, Ready: st.Ping, MaxBodyBytes: 1 << 20, Version: "test"}))
	t.Cleanup(srv.Close)

	call := func(method, path, body string, wantStatus int) map[string]any {
		t.Helper()
		return adminCall(t, srv.URL, method, path, body, wantStatus)
	}
	write := func(id string) {
		t.Helper()
		res, err := fhir.ParseResource([]byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Update(context.Background(), "Observation", id, res, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still waiting for %s", what)
			}
		}
	}
	// caughtUp: the file endpoint's worker has read every change.
	caughtUp := func() bool {
		s := call("GET", "/admin/sync/endpoints/from-file", "", 200)
		return s["pending"] == 0.0
	}
	def := `{"baseUrl":"` + fake.srv.URL + `/fhir","auth":{"type":"bearer","token":"env:ADMIN_SYNC_TOKEN"},"send":{"types":["Observation"]}}`

	got := call("PUT", "/admin/sync/endpoints/lab", def, 201)
	if got["source"] != "api" || got["secrets"].(map[string]any)["auth.token"] != "env:ADMIN_SYNC_TOKEN" {
		t.Errorf("PUT answered %v", got)
	}
	write("o1")
	waitFor("o1 at the EHR", func() bool { return fake.creates("o1") == 1 })
	fake.mu.Lock()
	if fake.auth[0] != "Bearer s3cret-admin-token" {
		t.Errorf("the create came with Authorization %q", fake.auth[0])
	}
	fake.mu.Unlock()
	call("PUT", "/admin/sync/endpoints/lab", def, 200) // the same: replaced, nothing changes

	sources := map[string]any{}
	for _, e := range call("GET", "/admin/sync/endpoints", "", 200)["endpoints"].([]any) {
		sources[e.(map[string]any)["name"].(string)] = e.(map[string]any)["source"]
	}
	if sources["lab"] != "api" || sources["from-file"] != "file" {
		t.Errorf("sources %v", sources)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
		expression       string
	}{
		{"inline secret", "/admin/sync/endpoints/lab2", `{"baseUrl":"` + fake.srv.URL + `/fhir","auth":{"type":"bearer","token":"s3cret-inline"}}`, 400, "auth.token"},
		{"bad type", "/admin/sync/endpoints/lab2", `{"baseUrl":"` + fake.srv.URL + `/fhir","auth":{"type":"none"},"send":{"types":["Nope"]}}`, 400, "send.types[0]"},
		{"bad pull type", "/admin/sync/endpoints/lab2", `{"baseUrl":"` + fake.srv.URL + `/fhir","auth":{"type":"none"},"pull":{"types":["Nope"]}}`, 400, "pull.types[0]"},
		{"file endpoint", "/admin/sync/endpoints/from-file", def, 409, "name"},
		{"bad name", "/admin/sync/endpoints/Bad%20Name", def, 400, "name"},
	} {
		out := call("PUT", tc.path, tc.body, tc.status)
		is := out["issue"].([]any)[0].(map[string]any)
		if expr, _ := is["expression"].([]any); len(expr) != 1 || expr[0] != tc.expression {
			t.Errorf("%s: issue %v, want expression %s", tc.name, is, tc.expression)
		}
	}
	call("DELETE", "/admin/sync/endpoints/from-file", "", 409)
	call("GET", "/admin/sync/endpoints/lab2", "", 404)

	// Deleted: the worker stops; a change written now waits.
	call("DELETE", "/admin/sync/endpoints/lab", "", 204)
	call("DELETE", "/admin/sync/endpoints/lab", "", 404)
	call("GET", "/admin/sync/endpoints/lab", "", 404)
	write("o2")
	waitFor("the engine to read o2", caughtUp)
	if n := fake.creates("o2"); n != 0 {
		t.Fatalf("o2 delivered %d times after DELETE", n)
	}
	// Defined again: it resumes from its cursor (o1 is not sent again).
	call("PUT", "/admin/sync/endpoints/lab", def, 201)
	waitFor("o2 at the EHR", func() bool { return fake.creates("o2") == 1 })
	if n := fake.creates("o1"); n != 1 {
		t.Errorf("o1 created %d times", n)
	}

	// Pull defined through the API: pulled without a restart.
	call("PUT", "/admin/sync/endpoints/puller", `{"baseUrl":"`+fake.srv.URL+`/fhir","auth":{"type":"none"},"pull":{"types":["Patient"],"every":"1m"}}`, 201)
	waitFor("the pulled Patient", func() bool {
		_, err := svc.Read(context.Background(), "Patient", inbound.LocalID("puller", "Patient", "p1"))
		return err == nil
	})
}
