package subscription_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/internal/subscription"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// hook is a receiver: it answers the statuses queued (then 200) and
// keeps what it got.
type hook struct {
	mu       sync.Mutex
	statuses []int
	got      []received
	srv      *httptest.Server
}

type received struct {
	path, secret, contentType, body string
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.got = append(h.got, received{r.URL.Path, r.Header.Get("X-Secret"), r.Header.Get("Content-Type"), string(body)})
		if len(h.statuses) > 0 {
			w.WriteHeader(h.statuses[0])
			h.statuses = h.statuses[1:]
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) take() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.got
	h.got = nil
	return g
}

type harness struct {
	t      *testing.T
	svc    *resource.Service
	n      *subscription.Notifier
	sleeps []time.Duration
}

func newHarness(t *testing.T) *harness {
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	h := &harness{t: t, svc: resource.New(st, reg, time.Now)}
	n, err := subscription.New(st, h.svc, reg, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)),
		subscription.Options{BaseURL: "https://fhir.example/fhir", MaxAttempts: 3, Jitter: func() float64 { return 0.5 },
			Holder: lease.Holder{Owner: "a", Sleep: func(_ context.Context, d time.Duration) error { h.sleeps = append(h.sleeps, d); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	return h
}

func (h *harness) put(typ, id, body string) (*resource.Outcome, error) {
	h.t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		h.t.Fatal(err)
	}
	return h.svc.Update(h.t.Context(), typ, id, res, nil)
}

func (h *harness) mustPut(typ, id, body string) {
	h.t.Helper()
	if _, err := h.put(typ, id, body); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) step() {
	h.t.Helper()
	for more := true; more; {
		var err error
		if more, err = h.n.Step(h.t.Context()); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) sub(id string) map[string]any {
	h.t.Helper()
	rec, err := h.svc.Read(h.t.Context(), "Subscription", id)
	if err != nil {
		h.t.Fatal(err)
	}
	var v map[string]any
	_ = json.Unmarshal([]byte(rec.Raw), &v)
	return v
}

func subscriptionJSON(id, criteria, endpoint, payload, content string) string {
	ch := `"type":"rest-hook","endpoint":"` + endpoint + `","header":["X-Secret: s3cret"]`
	if payload != "" {
		ch += `,"payload":"` + payload + `"`
	}
	if content != "" {
		ch += `,"_payload":{"extension":[{"url":"` + resource.PayloadContentURL + `","valueCode":"` + content + `"}]}`
	}
	return `{"resourceType":"Subscription","id":"` + id + `","status":"requested","reason":"test","criteria":"` + criteria + `","channel":{` + ch + `}}`
}

const obs = `{"resourceType":"Observation","id":"%ID%","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"%CODE%"}]}}`

func observation(id, code string) string {
	return strings.NewReplacer("%ID%", id, "%CODE%", code).Replace(obs)
}

func TestNotify(t *testing.T) {
	h := newHarness(t)
	rcv := newHook(t)
	h.mustPut("Subscription", "full", subscriptionJSON("full", "Observation?code=http://loinc.org|8867-4", rcv.srv.URL+"/full", "application/fhir+json", ""))
	h.mustPut("Subscription", "ids", subscriptionJSON("ids", "Observation?code=http://loinc.org|8867-4", rcv.srv.URL+"/ids", "application/fhir+json", "id-only"))
	h.mustPut("Subscription", "empty", subscriptionJSON("empty", "Observation", rcv.srv.URL+"/empty", "", ""))
	h.step()
	for _, id := range []string{"full", "ids", "empty"} {
		if s := h.sub(id)["status"]; s != "active" {
			t.Errorf("%s: status %v, want active", id, s)
		}
	}
	h.mustPut("Observation", "o1", observation("o1", "8867-4")) // matches all three
	h.mustPut("Observation", "o2", observation("o2", "1234-5")) // only the one without search
	h.step()
	got := rcv.take()
	byPath := map[string][]received{}
	for _, r := range got {
		byPath[r.path] = append(byPath[r.path], r)
		if r.secret != "s3cret" {
			t.Errorf("%s: secret header %q", r.path, r.secret)
		}
	}
	if len(byPath["/full"]) != 1 || len(byPath["/ids"]) != 1 || len(byPath["/empty"]) != 2 {
		t.Fatalf("notifications %+v", byPath)
	}
	var full map[string]any
	if err := json.Unmarshal([]byte(byPath["/full"][0].body), &full); err != nil || full["id"] != "o1" || byPath["/full"][0].contentType != "application/fhir+json" {
		t.Errorf("full payload %q", byPath["/full"][0].body)
	}
	var ids map[string]any
	_ = json.Unmarshal([]byte(byPath["/ids"][0].body), &ids)
	want := map[string]any{"resourceType": "Bundle", "type": "history", "entry": []any{map[string]any{"fullUrl": "https://fhir.example/fhir/Observation/o1/_history/1"}}}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("id-only payload (-want +got):\n%s", diff)
	}
	for _, r := range byPath["/empty"] {
		if r.body != "" || r.contentType != "" {
			t.Errorf("empty payload has a body %q (%s)", r.body, r.contentType)
		}
	}
	// An update that matches notifies again; one that stops matching not.
	h.mustPut("Observation", "o1", strings.Replace(observation("o1", "8867-4"), `"final"`, `"amended"`, 1))
	h.mustPut("Observation", "o2", observation("o2", "9999-9"))
	h.step()
	got = rcv.take()
	paths := map[string]int{}
	for _, r := range got {
		paths[r.path]++
	}
	if diff := cmp.Diff(map[string]int{"/full": 1, "/ids": 1, "/empty": 2}, paths); diff != "" {
		t.Errorf("after updates (-want +got):\n%s", diff)
	}
	// Part 2 data goes id-only even to a full-resource subscriber.
	h.mustPut("Observation", "o3", strings.Replace(observation("o3", "8867-4"), `"status"`,
		`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}]},"status"`, 1))
	h.step()
	var fulls []string
	for _, r := range rcv.take() {
		if r.path == "/full" {
			fulls = append(fulls, r.body)
		}
	}
	if diff := cmp.Diff([]string{`{"entry":[{"fullUrl":"https://fhir.example/fhir/Observation/o3/_history/1"}],"resourceType":"Bundle","type":"history"}`}, fulls); diff != "" {
		t.Errorf("Part 2 notification to the full-resource subscriber (-want +got):\n%s", diff)
	}
}

func TestRetriesAndError(t *testing.T) {
	h := newHarness(t)
	rcv := newHook(t)
	h.mustPut("Subscription", "s", subscriptionJSON("s", "Observation", rcv.srv.URL, "application/fhir+json", ""))
	h.step()
	// Two 503s, then accepted: three attempts, two waits growing.
	rcv.statuses = []int{503, 503}
	h.mustPut("Observation", "o1", observation("o1", "1"))
	h.step()
	if got := len(rcv.take()); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
	if diff := cmp.Diff([]time.Duration{500 * time.Millisecond, time.Second}, h.sleeps); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if s := h.sub("s"); s["status"] != "active" {
		t.Errorf("status %v after a success", s["status"])
	}
	// Failing every attempt: error, with the reason; no more notifications.
	rcv.statuses = []int{500, 500, 500}
	h.mustPut("Observation", "o2", observation("o2", "1"))
	h.step()
	if got := len(rcv.take()); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
	s := h.sub("s")
	if s["status"] != "error" || !strings.Contains(s["error"].(string), "HTTP 500") {
		t.Errorf("after repeated failures: status %v, error %v", s["status"], s["error"])
	}
	h.mustPut("Observation", "o3", observation("o3", "1"))
	h.step()
	if got := rcv.take(); len(got) != 0 {
		t.Errorf("a Subscription in error was notified: %v", got)
	}
}

func TestValidation(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, body, expr string
	}{
		{"criteria type", subscriptionJSON("x", "Nothing?code=1", "https://r.example", "", ""), "Subscription.criteria"},
		{"criteria parameter", subscriptionJSON("x", "Observation?colour=red", "https://r.example", "", ""), "Subscription.criteria"},
		{"channel type", strings.Replace(subscriptionJSON("x", "Observation", "https://r.example", "", ""), "rest-hook", "websocket", 1), "Subscription.channel.type"},
		{"endpoint", subscriptionJSON("x", "Observation", "ftp://r.example/in", "", ""), "Subscription.channel.endpoint"},
		{"payload", subscriptionJSON("x", "Observation", "https://r.example", "text/plain", ""), "Subscription.channel.payload"},
		{"content", subscriptionJSON("x", "Observation", "https://r.example", "application/fhir+json", "everything"), "Subscription.channel.payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.put("Subscription", "x", tc.body)
			f := fault.As(err)
			if err == nil || f.Kind != fault.Unprocessable || len(f.Issues) == 0 || len(f.Issues[0].Expression) == 0 || f.Issues[0].Expression[0] != tc.expr {
				t.Errorf("got %v (%+v), want a 422 at %s", err, f, tc.expr)
			}
		})
	}
}

// AuditEvents are never notified, not even to a Subscription on them: the
// server writes one per request.
func TestAuditEventsNotNotified(t *testing.T) {
	h := newHarness(t)
	rcv := newHook(t)
	h.mustPut("Subscription", "audit", subscriptionJSON("audit", "AuditEvent", rcv.srv.URL+"/audit", "application/fhir+json", ""))
	h.mustPut("Subscription", "obs", subscriptionJSON("obs", "Observation", rcv.srv.URL+"/obs", "application/fhir+json", ""))
	h.step()
	h.mustPut("AuditEvent", "a1", `{"resourceType":"AuditEvent","id":"a1","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"kapfhir"}}}`)
	h.mustPut("Observation", "o1", observation("o1", "8867-4"))
	h.step()
	var paths []string
	for _, r := range rcv.take() {
		paths = append(paths, r.path)
	}
	if diff := cmp.Diff([]string{"/obs"}, paths); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}
