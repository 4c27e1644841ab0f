package inbound_test

import (
	"encoding/json"
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
	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/inbound"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/fault"
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
	mrnSystem = "urn:oid:1.2.3.4.5"
)

// recorder keeps the URLs of the requests an endpoint's client sends.
type recorder struct {
	mu   sync.Mutex
	urls []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.Method+" "+req.URL.String())
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.urls
	r.urls = nil
	return u
}

type harness struct {
	t     *testing.T
	ehr   *ehrtest.StandIn
	st    *store.Store
	reg   *fhir.Registry
	svc   *resource.Service
	m     *metrics.Metrics
	ep    ehr.Endpoint
	calls *recorder
}

func newHarness(t *testing.T, o ehrtest.Options, types ...string) *harness {
	t.Helper()
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	h := &harness{t: t, ehr: ehrtest.Start(t, o), st: st, reg: reg, svc: resource.New(st, reg, time.Now),
		m: metrics.New(prometheus.NewRegistry()), calls: &recorder{}}
	h.ep = ehr.Endpoint{Name: endpoint, BaseURL: h.ehr.URL(), Auth: ehr.Auth{Type: ehr.AuthNone},
		Pull: ehr.PullPolicy{Types: types, Every: time.Minute}}
	return h
}

func (h *harness) puller(owner string) *inbound.Puller {
	h.t.Helper()
	p, err := inbound.New(h.st, h.svc, h.reg, ehr.Config{Endpoints: []ehr.Endpoint{h.ep}}, h.m,
		slog.New(slog.NewTextHandler(io.Discard, nil)), inbound.Options{Install: "test-clinic", Holder: lease.Holder{Owner: owner}, Count: 2,
			Client: func(ehr.Endpoint) (*http.Client, error) { return &http.Client{Transport: h.calls}, nil }})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// ehrWrite creates (id "") or updates a resource on the stand-in and
// returns its id there.
func (h *harness) ehrWrite(typ, id, body string) string {
	h.t.Helper()
	method, u := http.MethodPost, h.ehr.URL()+"/"+typ
	if id != "" {
		method, u = http.MethodPut, u+"/"+id
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || json.Unmarshal(data, &out) != nil {
		h.t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, data)
	}
	return out.ID
}

func (h *harness) local(typ, remote string) (*store.Record, map[string]any) {
	h.t.Helper()
	rec, err := h.st.Current(h.t.Context(), typ, inbound.LocalID(endpoint, typ, remote))
	if err != nil {
		h.t.Fatalf("local copy of %s/%s: %v", typ, remote, err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(rec.Raw), &v); err != nil {
		h.t.Fatal(err)
	}
	return rec, v
}

func (h *harness) localPut(typ, id, body string) *store.Record {
	h.t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.svc.Update(h.t.Context(), typ, id, res, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return out.Record
}

func subjectOf(v map[string]any) any { return v["subject"].(map[string]any)["reference"] }

func TestPull(t *testing.T) {
	h := newHarness(t, ehrtest.Options{}, "Patient", "Condition", "AllergyIntolerance")
	ctx := t.Context()
	// The clinic knows patient 2 already, by the same MRN.
	clinic := h.localPut("Patient", "clinic-2", `{"resourceType":"Patient","id":"clinic-2","identifier":[{"system":"`+mrnSystem+`","value":"MRN-2"}],"name":[{"family":"Local"}]}`)
	p1 := h.ehrWrite("Patient", "", `{"resourceType":"Patient","identifier":[{"system":"`+mrnSystem+`","value":"MRN-1"}],"name":[{"family":"One"}]}`)
	p2 := h.ehrWrite("Patient", "", `{"resourceType":"Patient","identifier":[{"system":"`+mrnSystem+`","value":"MRN-2"}],"name":[{"family":"Two"}]}`)
	p3 := h.ehrWrite("Patient", "", `{"resourceType":"Patient","name":[{"family":"Three"}]}`)
	c1 := h.ehrWrite("Condition", "", `{"resourceType":"Condition","subject":{"reference":"Patient/`+p1+`"},"code":{"text":"asthma"}}`)
	c2 := h.ehrWrite("Condition", "", `{"resourceType":"Condition","subject":{"reference":"Patient/`+p2+`"},"code":{"text":"migraine"}}`)
	// A resource we sent to the EHR comes back in its search: not pulled.
	ours := h.ehrWrite("AllergyIntolerance", "", `{"resourceType":"AllergyIntolerance","identifier":[{"system":"urn:kapfhir:test-clinic","value":"AllergyIntolerance/a1"}],"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"patient":{"reference":"Patient/`+p1+`"}}`)

	p := h.puller("a")
	if err := p.Step(ctx); err != nil {
		t.Fatal(err)
	}
	calls := h.calls.take()
	rec, pat := h.local("Patient", p1)
	if rec.VersionID != 1 || pat["name"].([]any)[0].(map[string]any)["family"] != "One" {
		t.Errorf("patient 1: version %d, %v", rec.VersionID, pat)
	}
	wantMeta := []any{map[string]any{"system": outbound.PulledTagSystem, "code": endpoint}}
	if diff := cmp.Diff(wantMeta, pat["meta"].(map[string]any)["tag"]); diff != "" {
		t.Errorf("patient 1 tag (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{
		map[string]any{"system": mrnSystem, "value": "MRN-1"},
		map[string]any{"system": outbound.PulledSourceSystem(endpoint), "value": "Patient/" + p1},
	}, pat["identifier"]); diff != "" {
		t.Errorf("patient 1 identifiers (-want +got):\n%s", diff)
	}
	h.local("Patient", p3)
	// Patient 2 matched the clinic's patient by MRN: linked, not copied,
	// the clinic's version untouched.
	if _, err := h.st.Current(ctx, "Patient", inbound.LocalID(endpoint, "Patient", p2)); !isNotFound(err) {
		t.Errorf("patient 2 was copied: %v", err)
	}
	if cur, _ := h.st.Current(ctx, "Patient", "clinic-2"); cur.VersionID != clinic.VersionID {
		t.Errorf("the clinic's patient 2 was overwritten: version %d", cur.VersionID)
	}
	// References point to the local patients.
	_, cond1 := h.local("Condition", c1)
	_, cond2 := h.local("Condition", c2)
	if got, want := subjectOf(cond1), "Patient/"+inbound.LocalID(endpoint, "Patient", p1); got != want {
		t.Errorf("condition 1 subject %v, want %s", got, want)
	}
	if got := subjectOf(cond2); got != "Patient/clinic-2" {
		t.Errorf("condition 2 subject %v, want Patient/clinic-2", got)
	}
	if _, err := h.st.Current(ctx, "AllergyIntolerance", inbound.LocalID(endpoint, "AllergyIntolerance", ours)); !isNotFound(err) {
		t.Errorf("our own allergy was pulled back: %v", err)
	}
	// Pages of 2 by _lastUpdated, following next links.
	var searches int
	for _, c := range calls {
		if strings.Contains(c, "/Patient?") {
			searches++
			if !strings.Contains(c, "_sort=_lastUpdated") || !strings.Contains(c, "_count=2") {
				t.Errorf("search %s", c)
			}
		}
	}
	if searches < 2 {
		t.Errorf("%d Patient search pages for 3 patients at _count=2: %v", searches, calls)
	}

	// A second round writes nothing: no duplicates, no new versions.
	head, err := h.st.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := h.st.LastSeq(ctx); again != head {
		t.Errorf("a second round with nothing new wrote %d versions", again-head)
	}
	for _, c := range h.calls.take() {
		if strings.Contains(c, "/Patient?") && !strings.Contains(c, "_lastUpdated=ge") {
			t.Errorf("the second round did not start at the cursor: %s", c)
		}
	}

	// Changed and new resources arrive; a new instance resumes at the
	// cursor once the first released its lease.
	h.ehrWrite("Patient", p1, `{"resourceType":"Patient","id":"`+p1+`","identifier":[{"system":"`+mrnSystem+`","value":"MRN-1"}],"name":[{"family":"Renamed"}]}`)
	a1 := h.ehrWrite("AllergyIntolerance", "", `{"resourceType":"AllergyIntolerance","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},"patient":{"reference":"Patient/`+p1+`"},"code":{"text":"penicillin"}}`)
	if err := h.st.ReleaseWorker(ctx, inbound.WorkerID(endpoint), "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.puller("b").Step(ctx); err != nil {
		t.Fatal(err)
	}
	rec, pat = h.local("Patient", p1)
	if rec.VersionID != 2 || pat["name"].([]any)[0].(map[string]any)["family"] != "Renamed" {
		t.Errorf("patient 1 after the change: version %d, %v", rec.VersionID, pat["name"])
	}
	_, allergy := h.local("AllergyIntolerance", a1)
	if got, want := allergy["patient"].(map[string]any)["reference"], "Patient/"+inbound.LocalID(endpoint, "Patient", p1); got != want {
		t.Errorf("allergy patient %v, want %s", got, want)
	}
	if rec, _ := h.local("Condition", c1); rec.VersionID != 1 {
		t.Errorf("condition 1 rewritten: version %d", rec.VersionID)
	}
	state, err := h.st.Worker(ctx, inbound.WorkerID(endpoint))
	if err != nil || state.Cursor("Patient") == "" || state.Owner != "b" || state.LastError != "" {
		t.Errorf("pull state %+v, %v", state, err)
	}

	// A pulled resource changed here without the marker is the clinic's
	// now: the EHR's next version does not overwrite it.
	h.localPut("Condition", inbound.LocalID(endpoint, "Condition", c2), `{"resourceType":"Condition","id":"`+inbound.LocalID(endpoint, "Condition", c2)+`","subject":{"reference":"Patient/clinic-2"},"code":{"text":"edited here"}}`)
	h.ehrWrite("Condition", c2, `{"resourceType":"Condition","id":"`+c2+`","subject":{"reference":"Patient/`+p2+`"},"code":{"text":"migraine, chronic"}}`)
	if err := h.puller("b").Step(ctx); err != nil {
		t.Fatal(err)
	}
	if _, cond2 = h.local("Condition", c2); cond2["code"].(map[string]any)["text"] != "edited here" {
		t.Errorf("a local edit was overwritten: %v", cond2["code"])
	}
}

// Outbound never sends a pulled resource back to its source, and still
// sends what was recorded here.
func TestPulledNotEchoed(t *testing.T) {
	// Shaped like Epic: it takes Condition and Patient creates.
	h := newHarness(t, ehrtest.Options{Capability: ehrtest.EpicCapability(t)}, "Patient", "Condition")
	ctx := t.Context()
	p1 := h.ehrWrite("Patient", "", `{"resourceType":"Patient","identifier":[{"system":"`+mrnSystem+`","value":"MRN-1"}]}`)
	c1 := h.ehrWrite("Condition", "", `{"resourceType":"Condition","subject":{"reference":"Patient/`+p1+`"},"code":{"text":"asthma"}}`)
	if err := h.puller("a").Step(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := h.ehr.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Recorded here, about the pulled patient.
	local := h.localPut("Condition", "local-1", `{"resourceType":"Condition","id":"local-1","subject":{"reference":"Patient/`+inbound.LocalID(endpoint, "Patient", p1)+`"},"code":{"text":"recorded here"}}`)

	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ep := h.ep
	ep.Send = ehr.SendPolicy{Types: []string{"Patient", "Condition"}, Part2: ehr.Part2Never}
	e, err := outbound.New(h.st, h.reg, mp, ehr.Config{Endpoints: []ehr.Endpoint{ep}}, h.m,
		slog.New(slog.NewTextHandler(io.Discard, nil)), outbound.Options{Install: "test-clinic", Holder: lease.Holder{Owner: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	for more := true; more; {
		if more, err = e.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after, err := h.ehr.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Patient/" + p1, "Condition/" + c1} {
		if len(after[k]) != len(before[k]) {
			t.Errorf("%s: %d versions on the EHR after outbound, %d before: echoed", k, len(after[k]), len(before[k]))
		}
	}
	ref, err := h.st.RemoteRef(ctx, endpoint, "Condition", local.ID)
	if err != nil || ref == nil || ref.RemoteID == "" {
		dl, _ := h.st.DeadLetters(ctx, store.DeadLetterQuery{Endpoint: endpoint, Limit: 10})
		st, _ := h.st.SyncEndpointState(ctx, endpoint)
		t.Logf("dead letters %+v state %+v", dl, st)
		t.Fatalf("the local condition was not delivered: %+v %v", ref, err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("the EHR has %d resources, want the %d before and the local condition", len(after), len(before))
	}
	var sent map[string]any
	if err := json.Unmarshal(after["Condition/"+ref.RemoteID][0], &sent); err != nil {
		t.Fatal(err)
	}
	if got := subjectOf(sent); got != "Patient/"+p1 {
		t.Errorf("the local condition's subject on the EHR is %v, want Patient/%s", got, p1)
	}
}

func isNotFound(err error) bool { return fault.Is(err, fault.NotFound) }
