package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/bulkexport"
	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/httpapi"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/reindex"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/internal/syncbuf"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// env is one server under test on its own database.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	store    *store.Store
	db       string
	reg      *prometheus.Registry
	commands *metrics.CommandCounter
	logs     *syncbuf.Buffer
	jobs     *reindex.Jobs
	exports  *bulkexport.Runner    // not running: tests step it
	kap      *kap.Service          // the first instance's
	tweak    func(*httpapi.Config) // changes the configuration of each instance
	// authn and auditOn are set by newAuditEnv: the server then
	// authenticates with authn and records AuditEvents into audit.
	authn   auth.Authenticator
	auditOn bool
	audit   *audit.Sink
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvAuth is newEnv with authentication by authn.
func newEnvAuth(t *testing.T, authn auth.Authenticator) *env {
	t.Helper()
	return start(&env{t: t, authn: authn}, nil)
}

// as sends a request with a bearer token.
func (e *env) as(token, method, path, body string, headers ...string) *response {
	e.t.Helper()
	return e.do(method, path, body, append([]string{"Authorization", "Bearer " + token}, headers...)...)
}

// newEnvWith is newEnv with a configuration changed by tweak (limits,
// CORS, rate limit).
func newEnvWith(t *testing.T, tweak func(*httpapi.Config)) *env {
	t.Helper()
	return newEnvWatching(t, tweak, nil)
}

// newEnvWatching is newEnvWith whose store commands are also shown to
// started as they are sent.
func newEnvWatching(t *testing.T, tweak func(*httpapi.Config), started func(*event.CommandStartedEvent)) *env {
	t.Helper()
	return start(&env{t: t, tweak: tweak}, started)
}

// start builds e's server on a fresh database; started (if set) also sees
// each store command as it is sent.
func start(e *env, started func(*event.CommandStartedEvent)) *env {
	t := e.t
	t.Helper()
	e.reg, e.commands, e.logs = prometheus.NewRegistry(), &metrics.CommandCounter{}, &syncbuf.Buffer{}
	m := metrics.New(e.reg)
	mon := e.commands.Monitor()
	if count := mon.Started; started != nil {
		mon.Started = func(ctx context.Context, ev *event.CommandStartedEvent) {
			count(ctx, ev)
			started(ev)
		}
	}
	e.store, e.db = storetest.Open(t, m.CommandMonitor(mon))
	var h http.Handler
	h, e.jobs = e.handler(m, e.store)
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// jobOptions make reindex jobs quick: tests run one instance at a time
// or wait for the jobs, so writes in flight need no settle time.
var jobOptions = reindex.Options{Poll: 50 * time.Millisecond, Settle: time.Millisecond, Batch: 3}

func (e *env) handler(m *metrics.Metrics, st *store.Store) (http.Handler, *reindex.Jobs) {
	reg := fhir.NewRegistry()
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	jobs := reindex.New(st, reg, m, logger, jobOptions)
	e.exports = bulkexport.New(st, logger, exportOptions)
	rules := kap.DefaultRules()
	mapper, err := kap.NewMapper(rules)
	if err != nil {
		e.t.Fatal(err)
	}
	svc := resource.New(st, reg, time.Now).WithKeeper(kap.NewIndexKeeper(mapper))
	cursors := search.NewCursors("test")
	ks := kap.NewService(kap.Deps{Resources: svc, Registry: reg, Mapper: mapper, Rules: rules,
		Overrides: kap.NewOverrideCounter(e.reg), Now: time.Now, Cursors: cursors})
	if e.kap == nil {
		e.kap = ks
	}
	if e.auditOn {
		e.audit = audit.New(svc, e.reg, audit.Options{Logger: logger})
		e.t.Cleanup(func() { _ = e.audit.Close(context.Background()) })
	}
	cfg := httpapi.Config{
		Resources:    svc,
		Importer:     bulkimport.New(svc, reg, bulkimport.Options{}),
		Registry:     reg,
		Reindex:      jobs,
		Exports:      e.exports,
		Ready:        st.Ping,
		Metrics:      m,
		Gatherer:     e.reg,
		Logger:       logger,
		MaxBodyBytes: 3 << 20, // the largest Synthea bundle is 2.2 MB
		Version:      "test",
		Started:      time.Now(),
		Cursors:      cursors,
		Kap:          ks,
		Auth:         e.authn,
		Audit:        e.audit,
	}
	if e.tweak != nil {
		e.tweak(&cfg)
	}
	return httpapi.New(cfg), jobs
}

// runJobs runs the reindex jobs of the instance in the background until
// the test ends (other tests leave them off, so that commands are counted
// exactly).
func (e *env) runJobs(jobs *reindex.Jobs) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		jobs.Run(ctx)
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// second returns another service instance on the same database, with its
// own store client, as a second replica of the service would be, and its
// reindex runner (not running).
func (e *env) second() (*httptest.Server, *reindex.Jobs) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	st := storetest.OpenDatabase(e.t, e.db, nil)
	params := fhir.NewRegistry()
	jobs := reindex.New(st, params, m, slog.New(slog.NewJSONHandler(io.Discard, nil)), jobOptions)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{
		Resources: resource.New(st, params, time.Now), Ready: st.Ping, Metrics: m, Gatherer: reg,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), MaxBodyBytes: 1 << 20, Started: time.Now(),
		Cursors: search.NewCursors("test"), Registry: params, Reindex: jobs,
	}))
	e.t.Cleanup(srv.Close)
	return srv, jobs
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return m
}

// expression returns the first issue's first expression of an OperationOutcome.
func (r *response) expression(t *testing.T) string {
	t.Helper()
	issues, _ := r.json(t)["issue"].([]any)
	if len(issues) == 0 {
		return ""
	}
	exprs, _ := issues[0].(map[string]any)["expression"].([]any)
	if len(exprs) == 0 {
		return ""
	}
	return exprs[0].(string)
}

var validator = func() *jsonformat.Unmarshaller {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		panic(err)
	}
	return u
}()

// do sends a request to base and checks what every response must be: no
// 5xx, and any FHIR body valid by an independent R4 implementation.
func do(t *testing.T, base, method, path, body string, headers ...string) *response {
	t.Helper()
	if body != "" { // first: the caller's headers may replace it
		headers = append([]string{"Content-Type", "application/fhir+json"}, headers...)
	}
	res, text := raw(t, method, base+path, body, headers...)
	b := []byte(text)
	r := &response{status: res.StatusCode, header: res.Header, body: b}
	if r.status >= 500 {
		t.Errorf("%s %s: status %d: %s", method, path, r.status, b)
	}
	if len(b) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/fhir+json") {
		if _, err := validator.Unmarshal(b); err != nil {
			t.Errorf("%s %s returned a resource google/fhir rejects: %v\n%s", method, path, err, b)
		}
	}
	return r
}

// raw sends a request without do's checks (a 503 is what some tests
// expect) and returns the response with its body read.
func raw(t *testing.T, method, u, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func (e *env) do(method, path, body string, headers ...string) *response {
	e.t.Helper()
	return do(e.t, e.srv.URL, method, path, body, headers...)
}

// create posts body and returns the new id.
func (e *env) create(typ, body string) string {
	e.t.Helper()
	r := e.do("POST", "/fhir/"+typ, body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: %d %s", typ, r.status, r.body)
	}
	return r.json(e.t)["id"].(string)
}

func (e *env) get(path string, headers ...string) *response {
	e.t.Helper()
	return do(e.t, e.srv.URL, "GET", path, "", headers...)
}

// expectRejected checks that GET /fhir/query is a 400 whose
// OperationOutcome names mention.
func (e *env) expectRejected(t *testing.T, query, mention string) {
	t.Helper()
	r := do(t, e.srv.URL, "GET", "/fhir/"+query, "")
	if r.status != http.StatusBadRequest {
		t.Fatalf("%d, want 400: %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), mention) {
		t.Errorf("the OperationOutcome does not name %q: %s", mention, r.body)
	}
}
