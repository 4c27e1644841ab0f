// Package acceptance runs the outbound EHR sync (internal/ehr/outbound)
// over the real store against the stand-in EHR (ehrtest: medplum's FHIR
// server, not our code) behind the fault proxy, and checks what arrived by
// reading the stand-in back (issue 6, acceptance 1 to 4;
// docs/ehr-sync.md, "Acceptance tests").
package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/faultproxy"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/mappings"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const (
	endpoint  = "st-mary"
	install   = "test-clinic"
	ourSystem = "urn:kapfhir:" + install
	mrnSystem = "urn:oid:1.2.3.4.5"
	// catchUp bounds the wait for the engine to deliver everything: a
	// guard against a hang, not a timing assertion.
	catchUp = 90 * time.Second
)

// env is one store, one stand-in EHR and the fault proxy in front of it.
type env struct {
	t      *testing.T
	st     *store.Store
	reg    *fhir.Registry
	svc    *resource.Service
	mapper *mappings.Mapper
	ehr    *ehrtest.StandIn
	proxy  *faultproxy.Proxy
	ep     ehr.Endpoint
	// patient is the stand-in's own record of our patient c1 (by MRN).
	patient string

	mu    sync.Mutex
	waits []time.Duration // backoff waits the engines asked for
}

// epicWithDelete is the Epic-shaped statement with Observation delete
// added, so that deletes are delivered too.
func epicWithDelete(t *testing.T) []byte {
	var cs map[string]any
	if err := json.Unmarshal(ehrtest.EpicCapability(t), &cs); err != nil {
		t.Fatal(err)
	}
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if r := r.(map[string]any); r["type"] == "Observation" {
			r["interaction"] = append(r["interaction"].([]any), map[string]any{"code": "delete"})
		}
	}
	data, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// setup starts the stand-in (Epic-shaped, with Observation delete) and the
// proxy; the endpoint sends Observations and Conditions through the proxy.
func setup(t *testing.T, opts ehrtest.Options) *env {
	t.Helper()
	if opts.Capability == nil {
		opts.Capability = epicWithDelete(t)
	}
	s := ehrtest.Start(t, opts)
	p, err := faultproxy.New(s.Origin())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, reg: reg, svc: resource.New(st, reg, time.Now), mapper: mp, ehr: s, proxy: p,
		ep: ehr.Endpoint{Name: endpoint, BaseURL: srv.URL + ehrtest.BasePath, Auth: ehr.Auth{Type: ehr.AuthNone},
			Send: ehr.SendPolicy{Types: []string{"Observation", "Condition"}, Part2: ehr.Part2Consent}}}
	e.patient = e.ehrPatient(opts.Token)
	e.put(`{"resourceType":"Patient","id":"c1","identifier":[{"system":"` + mrnSystem + `","value":"MRN-1"}],"name":[{"family":"Doe"}]}`)
	return e
}

// ehrPatient creates the EHR's own record of patient c1, straight on the
// stand-in, and returns its id.
func (e *env) ehrPatient(token string) string {
	e.t.Helper()
	body := `{"resourceType":"Patient","identifier":[{"system":"` + mrnSystem + `","value":"MRN-1"}],"name":[{"family":"Doe"}]}`
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.ehr.URL()+"/Patient", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("creating the EHR's patient: %s, %v", resp.Status, err)
	}
	return p.ID
}

// engine is one service instance. Its waits are recorded and cut to a
// millisecond (no test waits for a real backoff); now shifts its clock (an
// instance started after a dead one's lease expired).
func (e *env) engine(owner string, now time.Duration, tweak ...func(*outbound.Options)) *outbound.Engine {
	e.t.Helper()
	o := outbound.Options{Install: install, Poll: 20 * time.Millisecond,
		Jitter: func() float64 { return 0.5 },
		Holder: lease.Holder{Owner: owner, Lease: time.Minute,
			Now: func() time.Time { return time.Now().Add(now) },
			Sleep: func(ctx context.Context, d time.Duration) error {
				e.mu.Lock()
				e.waits = append(e.waits, d)
				e.mu.Unlock()
				return lease.Sleep(ctx, min(d, time.Millisecond))
			}}}
	for _, f := range tweak {
		f(&o)
	}
	eng, err := outbound.New(e.st, e.reg, e.mapper, ehr.Config{Endpoints: []ehr.Endpoint{e.ep}},
		metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	if err != nil {
		e.t.Fatal(err)
	}
	return eng
}

// run runs eng until the returned stop is called (a clean stop: the lease
// is released) or the test ends.
func run(t *testing.T, eng *outbound.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		eng.Run(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// kill steps eng until killed: the returned kill stops it mid-request,
// with no clean-up (no lease release, no saves after it), as a SIGKILL
// would.
func kill(t *testing.T, eng *outbound.Engine) (kill func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			more, err := eng.Step(ctx)
			if err != nil && ctx.Err() == nil {
				t.Errorf("step: %v", err)
				return
			}
			if !more {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	kill = func() { cancel(); <-done }
	t.Cleanup(kill)
	return kill
}

func (e *env) put(body string) {
	e.t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		e.t.Fatalf("fixture: %v", err)
	}
	if _, err := e.svc.Update(context.Background(), res.Type(), res.ID(), res, nil); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) del(typ, id string) {
	e.t.Helper()
	if _, err := e.svc.Delete(context.Background(), typ, id, nil); err != nil {
		e.t.Fatal(err)
	}
}

func observation(id string, n int, status string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":%q,"code":{"text":"craving score"},`+
		`"subject":{"reference":"Patient/c1"},"valueQuantity":{"value":%d.50,"unit":"score"}}`, id, status, n)
}

func condition(id, status string) string {
	return fmt.Sprintf(`{"resourceType":"Condition","id":%q,"clinicalStatus":{"coding":[{"system":`+
		`"http://terminology.hl7.org/CodeSystem/condition-clinical","code":%q}]},"code":{"text":"opioid use disorder"},`+
		`"subject":{"reference":"Patient/c1"}}`, id, status)
}

// stretch writes a stretch of changes named by prefix: n Observations
// created, a third of them amended twice, every fourth deleted, and a
// Condition created and updated (Epic takes no Condition update).
func (e *env) stretch(prefix string, n int) {
	e.t.Helper()
	id := func(i int) string { return fmt.Sprintf("%s-o%d", prefix, i) }
	for i := range n {
		e.put(observation(id(i), i, "preliminary"))
	}
	e.put(condition(prefix+"-k1", "active"))
	for i := range n {
		if i%3 == 0 {
			e.put(observation(id(i), i+10, "final"))
			e.put(observation(id(i), i+20, "amended"))
		}
		if i%4 == 1 {
			e.del("Observation", id(i))
		}
	}
	e.put(condition(prefix+"-k1", "remission"))
}

// waitCaughtUp waits until eng's endpoint has no change left to deliver.
func (e *env) waitCaughtUp(eng *outbound.Engine) *outbound.Status {
	e.t.Helper()
	deadline := time.Now().Add(catchUp)
	for {
		s, err := eng.Status(context.Background(), endpoint)
		if err != nil {
			e.t.Fatal(err)
		}
		if s.Pending == 0 && s.InFlight == 0 && s.Head > 0 {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the engine did not catch up within %v: %+v", catchUp, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(catchUp)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// all reads the stand-in.
func (e *env) all() map[string][]json.RawMessage {
	e.t.Helper()
	all, err := e.ehr.All(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return all
}

// check reads the stand-in back and compares it with the change log: every
// resource sent is there once (the id map names it, nothing else is
// there), with one version per local version the EHR takes, in order,
// each with our content (as JSON values: medplum writes 4.50 as 4.5), our
// identifier, its version tag and the subject rewritten to the EHR's
// patient; a delete as null. The EHR's patient was never written.
func (e *env) check() {
	e.t.Helper()
	ctx := context.Background()
	recs, _, err := e.st.Changes(ctx, 0, 100000, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[string][]any{"Patient/" + e.patient: {nil}}
	for _, rec := range recs {
		if rec.Type != "Observation" && rec.Type != "Condition" {
			continue
		}
		ref, err := e.st.RemoteRef(ctx, endpoint, rec.Type, rec.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		if ref == nil || ref.RemoteID == "" {
			e.t.Errorf("%s/%s v%d: not in the id map", rec.Type, rec.ID, rec.VersionID)
			continue
		}
		key := ref.RemoteType + "/" + ref.RemoteID
		switch {
		case rec.Deleted:
			want[key] = append(want[key], "deleted")
		case rec.Type == "Condition" && rec.VersionID > 1:
			// Epic takes no Condition update: skipped.
		default:
			want[key] = append(want[key], e.expected(rec))
		}
	}
	got := map[string][]any{}
	for key, versions := range e.all() {
		for _, v := range versions {
			got[key] = append(got[key], normalise(e.t, key, v))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		e.t.Errorf("the stand-in EHR holds (-want +got):\n%s", diff)
	}
}

// expected is what the stand-in should hold for one of our versions.
func (e *env) expected(rec *store.Record) any {
	var m map[string]any
	if err := json.Unmarshal([]byte(rec.Raw), &m); err != nil {
		e.t.Fatal(err)
	}
	delete(m, "id")
	delete(m, "meta")
	m["identifier"] = []any{map[string]any{"system": ourSystem, "value": rec.Type + "/" + rec.ID}}
	m["subject"] = map[string]any{"reference": "Patient/" + e.patient}
	m["version"] = strconv.FormatInt(rec.VersionID, 10)
	return m
}

// normalise is one stand-in version for the comparison: its content
// without id and meta, our version tag as "version"; a delete as
// "deleted"; the EHR's patient (never written by us) as nil.
func normalise(t *testing.T, key string, v json.RawMessage) any {
	if string(v) == "null" {
		return "deleted"
	}
	if strings.HasPrefix(key, "Patient/") {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Tag []struct{ System, Code string }
	}
	raw, _ := json.Marshal(m["meta"])
	_ = json.Unmarshal(raw, &meta)
	for _, tag := range meta.Tag {
		if tag.System == "urn:kapfhir:version" {
			m["version"] = tag.Code
		}
	}
	delete(m, "id")
	delete(m, "meta")
	return m
}
