package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr"
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
	recipient = "Organization/org-hospital"
	ourSystem = "urn:kapfhir:test-clinic"
	mrnSystem = "urn:oid:1.2.3.4.5"
)

// clock is the engine's injected time: Sleep advances it and records the
// wait, so no test waits for real.
type clock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return ctx.Err()
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	t      *testing.T
	st     *store.Store
	reg    *fhir.Registry
	svc    *resource.Service
	ehr    *fakeEHR
	clock  *clock
	mapper *mappings.Mapper
	ep     ehr.Endpoint
	promet *prometheus.Registry
	m      *metrics.Metrics
}

// observationCaps is an EHR like Epic's (§13): Observation create and
// update, Condition create, DocumentReference create and update, no
// MedicationAdministration, Encounter or Patient writes.
var observationCaps = map[string][]string{
	"Observation":       {"create", "update", "delete"},
	"Condition":         {"create"},
	"DocumentReference": {"create", "update"},
	"Patient":           {},
}

func newHarness(t *testing.T, caps map[string][]string, send ehr.SendPolicy) *harness {
	t.Helper()
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, reg: reg, svc: resource.New(st, reg, time.Now), ehr: newFakeEHR(t, caps),
		clock: &clock{now: time.Now()}, mapper: mp, promet: prometheus.NewRegistry()}
	h.m = metrics.New(h.promet)
	if send.Part2 == "" {
		send.Part2 = ehr.Part2Consent
	}
	h.ep = ehr.Endpoint{Name: endpoint, BaseURL: h.ehr.URL(), Auth: ehr.Auth{Type: ehr.AuthNone}, Send: send}
	// The EHR knows patient c1 by MRN.
	h.ehr.put("Patient", "ehr-c1", map[string]any{"resourceType": "Patient",
		"identifier": []any{map[string]any{"system": mrnSystem, "value": "MRN-1"}}})
	return h
}

// engine is one service instance over the harness's store.
func (h *harness) engine(owner string, tweak ...func(*Options)) *Engine {
	h.t.Helper()
	o := Options{Install: "test-clinic", Holder: lease.Holder{Owner: owner, Now: h.clock.Now, Sleep: h.clock.Sleep}, Jitter: func() float64 { return 0.5 }, Batch: 50}
	for _, f := range tweak {
		f(&o)
	}
	e, err := New(h.st, h.reg, h.mapper, ehr.Config{Endpoints: []ehr.Endpoint{h.ep}}, h.m,
		slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

// put writes a resource with its id (create or update).
func (h *harness) put(body string) {
	h.t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		h.t.Fatalf("fixture: %v", err)
	}
	if _, err := h.svc.Update(context.Background(), res.Type(), res.ID(), res, nil); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) del(typ, id string) {
	h.t.Helper()
	if _, err := h.svc.Delete(context.Background(), typ, id, nil); err != nil {
		h.t.Fatal(err)
	}
}

// drain steps e until it has read everything.
func (h *harness) drain(e *Engine) {
	h.t.Helper()
	for range 20 {
		more, err := e.Step(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		if !more {
			return
		}
	}
	h.t.Fatal("the engine never caught up")
}

// remote returns the one resource of the EHR carrying our identifier of
// local Type/id (failing when there are several).
func (h *harness) remote(typ, local string) map[string]any {
	h.t.Helper()
	found := h.ehr.find(typ, ourSystem, local)
	if len(found) > 1 {
		h.t.Fatalf("%s %s is in the EHR %d times", typ, local, len(found))
	}
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

func (h *harness) ref(typ, id string) *store.RemoteRef {
	h.t.Helper()
	r, err := h.st.RemoteRef(context.Background(), endpoint, typ, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func observation(id, value string, extra string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,%s"status":"final","code":{"text":"score"},
		"subject":{"reference":"Patient/c1"},"valueString":%q}`, id, extra, value)
}

const patientC1 = `{"resourceType":"Patient","id":"c1","identifier":[{"system":"urn:oid:1.2.3.4.5","value":"MRN-1"}],"name":[{"family":"Doe"}]}`

var sendObservations = ehr.SendPolicy{Types: []string{"Observation", "Condition", "MedicationAdministration"}, Recipient: recipient}

func TestCreateUpdateDelete(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("o1", "first", ""))
	e := h.engine("a")
	h.drain(e)

	got := h.remote("Observation", "Observation/o1")
	if got == nil {
		t.Fatal("the Observation was not created")
	}
	r := h.ref("Observation", "o1")
	if r.RemoteID != got["id"] || r.Version != 1 || r.RemoteVersion != "1" {
		t.Errorf("id map %+v, want the remote id %v, version 1, remote version 1", r, got["id"])
	}
	// The patient is the EHR's own, matched by MRN; the local id is gone.
	if subj := got["subject"].(map[string]any)["reference"]; subj != "Patient/ehr-c1" {
		t.Errorf("subject = %v, want Patient/ehr-c1", subj)
	}
	if p := h.ref("Patient", "c1"); p == nil || !p.Matched || p.RemoteID != "ehr-c1" {
		t.Errorf("patient map %+v, want matched to ehr-c1", p)
	}
	if n := h.ehr.count("POST", "/Patient"); n != 0 {
		t.Errorf("%d Patient creates: a known patient is never created", n)
	}

	h.put(observation("o1", "second", ""))
	h.drain(e)
	got = h.remote("Observation", "Observation/o1")
	if got["valueString"] != "second" || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("after the update the EHR has %v", got)
	}
	if n := h.ehr.count("PUT", "/Observation/"+r.RemoteID); n != 1 {
		t.Errorf("%d PUTs, want 1", n)
	}
	if r := h.ref("Observation", "o1"); r.Version != 2 || r.RemoteVersion != "2" {
		t.Errorf("id map after update %+v", r)
	}

	h.del("Observation", "o1")
	h.drain(e)
	if got := h.ehr.get("Observation", r.RemoteID); got != nil {
		t.Errorf("the Observation is still in the EHR after the delete")
	}
	if n := h.ehr.count("POST", "/Observation"); n != 1 {
		t.Errorf("%d Observation creates, want 1", n)
	}
	if v := h.metric("kapfhir_sync_delivered_total"); v != 3 {
		t.Errorf("delivered metric = %v, want 3", v)
	}
	st, err := e.Status(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.Cursor != st.Head || st.LagSeconds != 0 || st.LastSuccess == nil {
		t.Errorf("status after catching up: %+v", st)
	}
}

// A create the EHR applied but whose answer was lost (the connection
// dropped) is found by our identifier, also by a new instance after the
// first died while waiting to retry.
func TestLostCreateAnswer(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			h := newHarness(t, observationCaps, sendObservations)
			h.put(patientC1)
			h.put(observation("o1", "first", ""))
			dropped := false
			h.ehr.dropAfter = func(r *http.Request) bool {
				if r.Method == http.MethodPost && !dropped {
					dropped = true
					return true
				}
				return false
			}
			var tweak []func(*Options)
			if restart {
				tweak = append(tweak, func(o *Options) {
					o.Sleep = func(context.Context, time.Duration) error { return context.Canceled } // killed
				})
			}
			first := h.engine("a", tweak...)
			_, err := first.Step(context.Background())
			if restart {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("the first instance did not stop: %v", err)
				}
				h.clock.advance(10 * time.Minute) // its lease expires
				h.drain(h.engine("b"))
			} else if err != nil {
				t.Fatal(err)
			}
			if !dropped {
				t.Fatal("no answer was dropped")
			}
			if h.remote("Observation", "Observation/o1") == nil {
				t.Fatal("the Observation is not in the EHR")
			}
			if n := h.ehr.count("POST", "/Observation"); n != 1 {
				t.Errorf("%d creates, want 1 (the lost one, then adopted)", n)
			}
			if r := h.ref("Observation", "o1"); r.RemoteID == "" || r.Version != 1 || r.Attempted != 0 {
				t.Errorf("id map %+v", r)
			}
		})
	}
}

// A PUT whose answer was lost is recognised by the version tag after the
// retry's 412.
func TestLostUpdateAnswer(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("o1", "first", ""))
	e := h.engine("a")
	h.drain(e)
	h.put(observation("o1", "second", ""))
	dropped := false
	h.ehr.dropAfter = func(r *http.Request) bool {
		if r.Method == http.MethodPut && !dropped {
			dropped = true
			return true
		}
		return false
	}
	h.drain(e)
	if got := h.remote("Observation", "Observation/o1"); got["valueString"] != "second" || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("the EHR has %v, want version 2 written once", got)
	}
	if r := h.ref("Observation", "o1"); r.Version != 2 {
		t.Errorf("id map %+v", r)
	}
	if n, err := h.st.CountDeadLetters(context.Background(), endpoint, store.DeadLetterDead); err != nil || n != 0 {
		t.Errorf("%d dead letters (%v), want none", n, err)
	}
}

// 429 with Retry-After and a burst of 503s are retried; the cursor does
// not move past the change meanwhile, and the next change follows.
func TestRetries(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("o1", "first", ""))
	h.put(observation("o2", "second", ""))
	answers := []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusBadGateway}
	var cursors []int64
	h.ehr.fault = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method != http.MethodPost || len(answers) == 0 {
			return false
		}
		if s, err := h.st.SyncEndpointState(context.Background(), endpoint); err == nil {
			cursors = append(cursors, s.Cursor)
		}
		status := answers[0]
		answers = answers[1:]
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "7")
		}
		outcome(w, status, "transient")
		return true
	}
	e := h.engine("a")
	h.drain(e)
	for _, id := range []string{"o1", "o2"} {
		if h.remote("Observation", "Observation/"+id) == nil {
			t.Errorf("%s was not delivered", id)
		}
	}
	// Retry-After 7 s, then full jitter (0.5) over 1 s·2^(n-1).
	want := []time.Duration{7 * time.Second, time.Second, 2 * time.Second, 4 * time.Second}
	if diff := cmp.Diff(want, h.clock.slept[:len(want)]); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	first := cursors[0]
	for _, c := range cursors {
		if c != first {
			t.Errorf("the cursor moved during the retries: %v", cursors)
		}
	}
	if n := h.ehr.count("POST", "/Observation"); n != 6 {
		t.Errorf("%d POSTs, want 4 refused + 2", n)
	}
	if v := h.metric("kapfhir_sync_failed_total"); v != 4 {
		t.Errorf("failed metric = %v, want 4", v)
	}
}

// A 422 goes to the dead letters with the EHR's OperationOutcome, the
// next change is delivered, and a replay (after the mapping or the data
// is fixed) sends it again.
func TestDeadLetterReplay(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("bad", "refused", ""))
	h.put(observation("good", "fine", ""))
	h.ehr.reject = func(_ string, m map[string]any) bool { return m["valueString"] == "refused" }
	e := h.engine("a")
	h.drain(e)
	if h.remote("Observation", "Observation/good") == nil {
		t.Error("the change after the dead letter was not delivered")
	}
	ctx := context.Background()
	ds, err := e.DeadLetters(ctx, store.DeadLetterQuery{Endpoint: endpoint, Limit: 10})
	if err != nil || len(ds) != 1 {
		t.Fatalf("dead letters %+v, %v; want one", ds, err)
	}
	d := ds[0]
	if d.Type != "Observation" || d.LocalID != "bad" || d.Version != 1 || d.Status != 422 || d.Reason != reasonValidation ||
		!strings.Contains(d.Outcome, `"business-rule"`) || d.State != store.DeadLetterDead {
		t.Errorf("dead letter %+v", d)
	}
	st, err := e.Status(ctx, endpoint)
	if err != nil || st.DeadLettered != 1 || st.Pending != 0 {
		t.Errorf("status %+v, %v", st, err)
	}

	h.ehr.reject = nil
	if d, err := e.Replay(ctx, endpoint, "Observation", "bad", 1); err != nil || d.State != store.DeadLetterReplay {
		t.Fatalf("replay: %+v, %v", d, err)
	}
	h.drain(e)
	if h.remote("Observation", "Observation/bad") == nil {
		t.Error("the replay did not deliver it")
	}
	got, err := e.DeadLetter(ctx, endpoint, "Observation", "bad", 1)
	if err != nil || got.State != store.DeadLetterResolved || got.Replays != 1 {
		t.Errorf("after the replay: %+v, %v", got, err)
	}
	if st, _ := e.Status(ctx, endpoint); st.DeadLettered != 0 {
		t.Errorf("status still counts %d dead letters", st.DeadLettered)
	}
}

// Versions written while the EHR was down arrive in order: one create,
// then the later versions as PUTs, the last one last.
func TestVersionsInOrder(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	for _, v := range []string{"v1", "v2", "v3"} {
		h.put(observation("o1", v, ""))
	}
	down := 3
	var bodies []string
	h.ehr.fault = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path == "/fhir/metadata" {
			return false
		}
		if down > 0 {
			down--
			outcome(w, http.StatusServiceUnavailable, "transient")
			return true
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			bodies = append(bodies, r.Method+" "+m["valueString"].(string))
		}
		return false
	}
	h.drain(h.engine("a"))
	if diff := cmp.Diff([]string{"POST v1", "PUT v2", "PUT v3"}, bodies); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if got := h.remote("Observation", "Observation/o1"); got["valueString"] != "v3" {
		t.Errorf("the EHR ends with %v", got["valueString"])
	}
}

// Two instances on one store: one holds the endpoint's lease, each change
// is delivered once; when the holder dies, the other takes over after the
// lease.
func TestTwoInstances(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	for i := range 6 {
		h.put(observation(fmt.Sprintf("o%d", i), "x", ""))
	}
	a, b := h.engine("a"), h.engine("b")
	var wg sync.WaitGroup
	for _, e := range []*Engine{a, b} {
		wg.Go(func() {
			for range 3 {
				if _, err := e.Step(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range 6 {
		if h.remote("Observation", fmt.Sprintf("Observation/o%d", i)) == nil {
			t.Errorf("o%d not delivered", i)
		}
	}
	if n := h.ehr.count("POST", "/Observation"); n != 6 {
		t.Errorf("%d creates for 6 changes", n)
	}
	s, err := h.st.SyncEndpointState(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	holder, other := a, b
	if s.Owner == "b" {
		holder, other = b, a
	}
	// The holder dies (no release). The other waits for the lease.
	h.put(observation("late", "x", ""))
	h.drain(other)
	if h.remote("Observation", "Observation/late") != nil {
		t.Fatal("the other instance delivered while the lease was held")
	}
	h.clock.advance(2 * time.Minute)
	h.drain(other)
	if h.remote("Observation", "Observation/late") == nil {
		t.Fatal("the lease of the dead instance was not taken over")
	}
	// The dead one comes back: it lost the lease and sends nothing.
	h.put(observation("later", "x", ""))
	if _, err := holder.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.remote("Observation", "Observation/later") != nil {
		t.Error("an instance that lost its lease delivered")
	}
	if n := h.ehr.count("POST", "/Observation"); n != 7 {
		t.Errorf("%d creates for 7 changes", n)
	}
}

// A new engine over the same store (a restart) resumes after the cursor
// and sends nothing twice; a clean stop releases the lease at once.
func TestRestartResumes(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("o1", "x", ""))
	h.put(observation("o2", "x", ""))
	ctx, cancel := context.WithCancel(context.Background())
	first := h.engine("a", func(o *Options) {
		o.Sleep = func(ctx context.Context, _ time.Duration) error {
			cancel() // stop after the first round
			return ctx.Err()
		}
	})
	first.Run(ctx)
	if n := h.ehr.count("POST", "/Observation"); n != 2 {
		t.Fatalf("%d creates before the restart", n)
	}
	s, err := h.st.SyncEndpointState(context.Background(), endpoint)
	if err != nil || s.Owner != "" {
		t.Fatalf("after a clean stop the lease is %+v, %v", s, err)
	}
	h.put(observation("o2", "y", ""))
	h.put(observation("o3", "x", ""))
	h.drain(h.engine("b")) // no clock advance: the lease was released
	if n := h.ehr.count("POST", "/Observation"); n != 3 {
		t.Errorf("%d creates, want 3", n)
	}
	if n := h.ehr.count("PUT", "/Observation"); n != 1 {
		t.Errorf("%d updates, want 1", n)
	}
}

// The KAP client index (List, code kap#client-records) is never sent, even
// to an endpoint that takes Lists; another List is.
func TestClientIndexNotSent(t *testing.T) {
	caps := map[string][]string{"List": {"create", "update"}, "Patient": {}}
	h := newHarness(t, caps, ehr.SendPolicy{Types: []string{"List"}})
	h.put(patientC1)
	h.put(`{"resourceType":"List","id":"c1-kap","status":"current","mode":"working",
		"code":{"coding":[{"system":"` + h.mapper.KapSystem() + `","code":"` + mappings.ClientIndexCode + `"}]},"subject":{"reference":"Patient/c1"}}`)
	h.put(`{"resourceType":"List","id":"l2","status":"current","mode":"working","subject":{"reference":"Patient/c1"}}`)
	e := h.engine("a")
	h.drain(e)
	if h.remote("List", "List/c1-kap") != nil {
		t.Error("the KAP client index was sent")
	}
	if h.remote("List", "List/l2") == nil {
		t.Error("another List was not sent")
	}
}

// Part 2 data goes only under a consent naming the recipient for
// treatment; pulled data never goes back; KAPOnly keeps other data home.
func TestPolicy(t *testing.T) {
	part2 := `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}]},`
	pulled := `"meta":{"tag":[{"system":"urn:kapfhir:pulled-from","code":"st-mary"}]},`
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("sud", "v1", part2))
	h.put(observation("pulled", "x", pulled))
	h.put(`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/c1"}}`)
	e := h.engine("a")
	h.drain(e)
	if h.remote("Observation", "Observation/sud") != nil {
		t.Error("Part 2 data was sent without a consent")
	}
	if h.remote("Observation", "Observation/pulled") != nil {
		t.Error("data pulled from the EHR was sent back")
	}
	if n := h.ehr.count("POST", "/Encounter"); n != 0 {
		t.Error("a type not listed was sent")
	}
	st, err := e.Status(context.Background(), endpoint)
	if err != nil {
		t.Fatal(err)
	}
	skips := map[string]int64{}
	for _, s := range st.Skipped {
		skips[s.Reason] = s.Count
	}
	if diff := cmp.Diff(map[string]int64{"type not sent": 2, "pulled from this EHR": 1, "Part 2 data without a consent for this recipient": 1}, skips); diff != "" {
		t.Errorf("skip reasons (-want +got):\n%s", diff)
	}

	h.put(`{"resourceType":"Consent","id":"k1","status":"active","scope":{"text":"privacy"},"category":[{"text":"roi"}],
		"patient":{"reference":"Patient/c1"},"provision":{"type":"permit",
		"actor":[{"role":{"text":"recipient"},"reference":{"reference":"Organization/org-hospital"}}],
		"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}}`)
	h.put(observation("sud", "v2", part2))
	h.drain(e)
	got := h.remote("Observation", "Observation/sud")
	if got == nil || got["valueString"] != "v2" {
		t.Fatalf("with the consent, the EHR has %v", got)
	}
	if sec := got["meta"].(map[string]any)["security"]; sec == nil {
		t.Error("the security labels were not sent")
	}

	// The rule is the API's (package disclosure): a deny of SUD nested in
	// the consent keeps SUD-labelled data home, the rest still goes.
	h.put(`{"resourceType":"Consent","id":"k1","status":"active","scope":{"text":"privacy"},"category":[{"text":"roi"}],
		"patient":{"reference":"Patient/c1"},"provision":{"type":"permit",
		"actor":[{"role":{"text":"recipient"},"reference":{"reference":"Organization/org-hospital"}}],
		"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}],
		"provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]}]}}`)
	h.put(observation("sud", "v3", part2))
	h.put(observation("sud2", "x", `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}]},`))
	h.drain(e)
	if got := h.remote("Observation", "Observation/sud"); got == nil || got["valueString"] != "v3" {
		t.Errorf("under the consent with a deny of SUD, the 42CFRPart2 Observation is %v", got)
	}
	if h.remote("Observation", "Observation/sud2") != nil {
		t.Error("SUD data was sent although the consent denies it")
	}

	// KAPOnly: an Observation of a KAP session goes, another one does not.
	h2 := newHarness(t, observationCaps, ehr.SendPolicy{Types: []string{"Observation"}, KAPOnly: true})
	h2.put(patientC1)
	h2.put(fmt.Sprintf(`{"resourceType":"Encounter","id":"s1","status":"finished","class":{"code":"AMB"},
		"type":[{"coding":[{"system":%q,"code":"dosing"}]}],"subject":{"reference":"Patient/c1"}}`, h2.mapper.KapSystem()))
	h2.put(observation("kap", "x", `"encounter":{"reference":"Encounter/s1"},`))
	h2.put(observation("other", "x", ""))
	h2.drain(h2.engine("a"))
	if h2.remote("Observation", "Observation/kap") == nil {
		t.Error("the KAP session's Observation was not sent")
	}
	if h2.remote("Observation", "Observation/other") != nil {
		t.Error("an Observation outside the KAP program was sent")
	}
	// The session Encounter is not sent (Epic takes none): the reference
	// becomes logical.
	enc := h2.remote("Observation", "Observation/kap")["encounter"].(map[string]any)
	if diff := cmp.Diff(map[string]any{"identifier": map[string]any{"system": ourSystem, "value": "Encounter/s1"}}, enc); diff != "" {
		t.Errorf("encounter reference (-want +got):\n%s", diff)
	}
}

// A dose (MedicationAdministration, which the EHR does not take) is sent
// as its session note DocumentReference; to an EHR without
// DocumentReference it is not sent at all.
func TestPortableForm(t *testing.T) {
	for _, docs := range []bool{true, false} {
		t.Run(fmt.Sprintf("documentReference=%v", docs), func(t *testing.T) {
			caps := map[string][]string{"Observation": {"create"}}
			if docs {
				caps["DocumentReference"] = []string{"create", "update"}
			}
			h := newHarness(t, caps, sendObservations)
			h.put(patientC1)
			var s mappings.Session
			var a mappings.Administration
			readJSON(t, "../../../mappings/testdata/kap/session-dosing.json", &s)
			readJSON(t, "../../../mappings/testdata/kap/administration-im.json", &a)
			rs, err := h.mapper.SessionToFHIR(s, mappings.Labels{})
			if err != nil {
				t.Fatal(err)
			}
			ma, err := h.mapper.AdministrationToFHIR(a, mappings.Labels{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range append(rs, ma...) {
				h.put(string(r.JSON))
			}
			h.drain(h.engine("a"))
			got := h.ehr.find("DocumentReference", ourSystem, "MedicationAdministration/a1")
			if n := h.ehr.count("POST", "/MedicationAdministration"); n != 0 {
				t.Errorf("%d MedicationAdministration creates", n)
			}
			if !docs {
				if len(got) != 0 {
					t.Error("a note was sent to an EHR without DocumentReference")
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d notes for the dose, want 1", len(got))
			}
			doc, _ := json.Marshal(got[0])
			for _, want := range []string{`"Patient/ehr-c1"`, `"78472-8"`, `"application/xhtml+xml"`} {
				if !strings.Contains(string(doc), want) {
					t.Errorf("the note lacks %s: %s", want, doc)
				}
			}
			if r := h.ref("MedicationAdministration", "a1"); r.RemoteType != "DocumentReference" {
				t.Errorf("id map %+v", r)
			}
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// metric is the value of a sync metric of the endpoint.
func (h *harness) metric(name string) float64 {
	h.t.Helper()
	fams, err := h.promet.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == endpoint {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// A reference to something not delivered yet delivers it first; a
// patient the EHR does not know puts the change in the dead letters.
func TestReferences(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("o1", "x", `"focus":[{"reference":"Condition/k1"}],`))
	h.put(`{"resourceType":"Condition","id":"k1","code":{"text":"depression"},"subject":{"reference":"Patient/c1"}}`)
	h.put(`{"resourceType":"Patient","id":"c9","identifier":[{"system":"urn:oid:1.2.3.4.5","value":"MRN-9"}]}`)
	h.put(strings.Replace(observation("o9", "x", ""), "Patient/c1", "Patient/c9", 1))
	e := h.engine("a")
	h.drain(e)
	cond := h.remote("Condition", "Condition/k1")
	if cond == nil {
		t.Fatal("the Condition was not delivered")
	}
	obs := h.remote("Observation", "Observation/o1")
	if focus := obs["focus"].([]any)[0].(map[string]any)["reference"]; focus != "Condition/"+cond["id"].(string) {
		t.Errorf("focus = %v, want the Condition's remote id %v", focus, cond["id"])
	}
	if n := h.ehr.count("POST", "/Condition"); n != 1 {
		t.Errorf("%d Condition creates, want 1 (its own change finds it delivered)", n)
	}
	if h.remote("Observation", "Observation/o9") != nil {
		t.Error("an Observation of a patient the EHR does not know was sent")
	}
	d, err := e.DeadLetter(context.Background(), endpoint, "Observation", "o9", 1)
	if err != nil || d.Reason != reasonUnmatched {
		t.Errorf("dead letter %+v, %v; want %s", d, err, reasonUnmatched)
	}
}

// A change that keeps failing transiently goes to the dead letters after
// GiveUp, and the next change goes on.
func TestGiveUp(t *testing.T) {
	h := newHarness(t, observationCaps, sendObservations)
	h.put(patientC1)
	h.put(observation("stuck", "x", ""))
	h.put(observation("next", "y", ""))
	h.ehr.fault = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method == http.MethodPost && strings.Contains(string(body), `"x"`) {
			outcome(w, http.StatusInternalServerError, "exception")
			return true
		}
		return false
	}
	e := h.engine("a", func(o *Options) { o.GiveUp = time.Minute })
	h.drain(e)
	d, err := e.DeadLetter(context.Background(), endpoint, "Observation", "stuck", 1)
	if err != nil || d.Reason != reasonExhausted || d.Status != 500 {
		t.Fatalf("dead letter %+v, %v", d, err)
	}
	if h.remote("Observation", "Observation/next") == nil {
		t.Error("the next change was not delivered")
	}
	var total time.Duration
	for _, s := range h.clock.slept {
		total += s
	}
	if total < time.Minute {
		t.Errorf("gave up after %v of waits, want at least GiveUp", total)
	}
}
