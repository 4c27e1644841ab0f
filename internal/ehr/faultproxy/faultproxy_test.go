package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/ehr/faultproxy"
)

// upstream is an httptest EHR that counts the requests it applied and
// answers 201 to POST, 200 otherwise.
type upstream struct {
	mu      sync.Mutex
	applied []string
	// arrived, if set, receives each request's path once applied.
	arrived chan string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	u.applied = append(u.applied, r.Method+" "+r.URL.Path)
	u.mu.Unlock()
	if u.arrived != nil {
		u.arrived <- r.URL.Path
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Location", "http://"+r.Host+r.URL.Path+"/1/_history/1")
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusCreated)
	}
	_, _ = io.WriteString(w, `{"resourceType":"Observation","id":"1"}`)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.applied)
}

// start runs a proxy in front of up; both stop when the test ends.
func start(t *testing.T, up http.Handler) (*faultproxy.Proxy, string) {
	t.Helper()
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	p, err := faultproxy.New(upSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close) // first: releases held answers before srv.Close waits
	return p, srv.URL
}

// client opens a connection per request, so that a closed connection
// fails exactly the request it carried (net/http retries some requests
// on a reused connection).
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

type result struct {
	status     int // 0: connection error
	retryAfter string
}

func send(ctx context.Context, t *testing.T, c *http.Client, method, url string) (result, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader(`{"resourceType":"Observation"}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}, nil
}

func TestFaults(t *testing.T) {
	type req struct{ method, path string }
	post := req{"POST", "/fhir/Observation"}
	get := req{"GET", "/fhir/Observation/1"}
	for _, c := range []struct {
		name        string
		rules       []faultproxy.Rule
		requests    []req
		want        []result // status 0: the client saw a connection error
		wantApplied int
		wantCounts  faultproxy.Counts
	}{
		{
			name:        "429 carries Retry-After",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.TooManyRequests, RetryAfter: 7}, Times: 1}},
			requests:    []req{post, post},
			want:        []result{{429, "7"}, {201, ""}},
			wantApplied: 1,
			wantCounts:  faultproxy.Counts{Requests: 2, Forwarded: 1, Pass: 1, TooManyRequests: 1},
		},
		{
			name:        "429 with Retry-After 0",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.TooManyRequests}}},
			requests:    []req{get},
			want:        []result{{429, "0"}},
			wantApplied: 0,
			wantCounts:  faultproxy.Counts{Requests: 1, TooManyRequests: 1},
		},
		{
			name:        "a 503 burst ends after K",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.Unavailable}, Times: 3}},
			requests:    []req{post, get, post, post, get},
			want:        []result{{503, ""}, {503, ""}, {503, ""}, {201, ""}, {200, ""}},
			wantApplied: 2,
			wantCounts:  faultproxy.Counts{Requests: 5, Forwarded: 2, Pass: 2, Unavailable: 3},
		},
		{
			name:        "503 with Retry-After",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.Unavailable, RetryAfter: 2}, Times: 1}},
			requests:    []req{get},
			want:        []result{{503, "2"}},
			wantApplied: 0,
			wantCounts:  faultproxy.Counts{Requests: 1, Unavailable: 1},
		},
		{
			name:        "drop after apply: applied, never answered",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.DropAfterApply}, Times: 1}},
			requests:    []req{post, post},
			want:        []result{{0, ""}, {201, ""}},
			wantApplied: 2,
			wantCounts:  faultproxy.Counts{Requests: 2, Forwarded: 2, Pass: 1, DropAfterApply: 1},
		},
		{
			name:        "down: not applied, never answered",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.Down}, Times: 2}},
			requests:    []req{post, get, post},
			want:        []result{{0, ""}, {0, ""}, {201, ""}},
			wantApplied: 1,
			wantCounts:  faultproxy.Counts{Requests: 3, Forwarded: 1, Pass: 1, Down: 2},
		},
		{
			name:        "slow still answers",
			rules:       []faultproxy.Rule{{Fault: faultproxy.Fault{Kind: faultproxy.Slow, Delay: time.Millisecond}}},
			requests:    []req{post},
			want:        []result{{201, ""}},
			wantApplied: 1,
			wantCounts:  faultproxy.Counts{Requests: 1, Forwarded: 1, Slow: 1},
		},
		{
			name: "rules match method and path prefix, first match wins",
			rules: []faultproxy.Rule{
				{Method: "POST", PathPrefix: "/fhir/Observation", Fault: faultproxy.Fault{Kind: faultproxy.Unavailable}, Times: 1},
				{PathPrefix: "/fhir/Observation", Fault: faultproxy.Fault{Kind: faultproxy.TooManyRequests, RetryAfter: 1}},
			},
			requests:    []req{{"POST", "/fhir/Patient"}, get, post, post, {"GET", "/fhir/metadata"}},
			want:        []result{{201, ""}, {429, "1"}, {503, ""}, {429, "1"}, {200, ""}},
			wantApplied: 2,
			wantCounts:  faultproxy.Counts{Requests: 5, Forwarded: 2, Pass: 2, TooManyRequests: 2, Unavailable: 1},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := &upstream{}
			p, url := start(t, up)
			p.Add(c.rules...)
			var got []result
			for _, r := range c.requests {
				// A connection error leaves the zero result (status 0).
				res, err := send(t.Context(), t, client(), r.method, url+r.path)
				if err != nil {
					t.Logf("%s %s: %v", r.method, r.path, err)
				}
				got = append(got, res)
			}
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if n := up.count(); n != c.wantApplied {
				t.Errorf("upstream applied %d requests, want %d", n, c.wantApplied)
			}
			if diff := cmp.Diff(c.wantCounts, p.Counts()); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEvents checks the record of a dropped answer: the upstream answered,
// the client got nothing.
func TestEvents(t *testing.T) {
	p, url := start(t, &upstream{})
	p.Add(faultproxy.Rule{Method: "POST", Fault: faultproxy.Fault{Kind: faultproxy.DropAfterApply}, Times: 1})
	for _, m := range []string{"POST", "GET"} {
		_, _ = send(t.Context(), t, client(), m, url+"/fhir/Observation")
	}
	want := []faultproxy.Event{
		{Method: "POST", Path: "/fhir/Observation", Fault: faultproxy.DropAfterApply, Upstream: 201, Status: 0},
		{Method: "GET", Path: "/fhir/Observation", Fault: faultproxy.Pass, Upstream: 200, Status: 200},
	}
	if diff := cmp.Diff(want, p.Events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestSlowHoldsTheAnswer: a held answer is overtaken by a later request,
// and is given when the proxy closes; a client that gives up while it is
// held gets nothing although the upstream applied the request.
func TestSlowHoldsTheAnswer(t *testing.T) {
	up := &upstream{arrived: make(chan string, 4)}
	p, url := start(t, up)
	p.Add(faultproxy.Rule{PathPrefix: "/fhir/slow", Fault: faultproxy.Fault{Kind: faultproxy.Slow, Delay: time.Hour}})

	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := send(ctx, t, client(), "POST", url+"/fhir/slow/a")
		gaveUp <- err
	}()
	if path := <-up.arrived; path != "/fhir/slow/a" {
		t.Fatalf("upstream got %s first", path)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("client that gave up: %v, want context.Canceled", err)
	}

	held := make(chan result, 1)
	go func() {
		res, err := send(t.Context(), t, client(), "POST", url+"/fhir/slow/b")
		if err != nil {
			t.Error(err)
		}
		held <- res
	}()
	<-up.arrived
	res, err := send(t.Context(), t, client(), "GET", url+"/fhir/fast")
	<-up.arrived
	if err != nil || res.status != 200 {
		t.Fatalf("fast request behind a held one: %v %v", res, err)
	}
	select {
	case res := <-held:
		t.Fatalf("the slow answer came before the proxy released it: %v", res)
	default:
	}
	p.Close()
	if res := <-held; res.status != 201 {
		t.Errorf("released slow answer: %d, want 201", res.status)
	}
	if got := p.Counts(); got.Slow != 2 || got.Pass != 1 || up.count() != 3 {
		t.Errorf("counts %+v, upstream applied %d; want 2 slow, 1 pass, 3 applied", got, up.count())
	}
}

func TestUpstreamDown(t *testing.T) {
	upSrv := httptest.NewServer(&upstream{})
	p, err := faultproxy.New(upSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	upSrv.Close()
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	res, err := send(t.Context(), t, client(), "GET", srv.URL+"/fhir/metadata")
	if err != nil || res.status != http.StatusBadGateway {
		t.Errorf("upstream down: %v %v, want 502", res, err)
	}
	if diff := cmp.Diff(faultproxy.Counts{Requests: 1, Pass: 1, UpstreamErrors: 1}, p.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// TestRandomIsReproducible: one seed, one sequence of faults.
func TestRandomIsReproducible(t *testing.T) {
	faults := []faultproxy.Fault{
		{Kind: faultproxy.TooManyRequests, RetryAfter: 1},
		{Kind: faultproxy.Unavailable},
		{Kind: faultproxy.DropAfterApply},
	}
	run := func(seed uint64, rate float64) []faultproxy.Kind {
		p, url := start(t, &upstream{})
		// The rule takes metadata, which the random mode never sees.
		p.Add(faultproxy.Rule{PathPrefix: "/fhir/metadata", Fault: faultproxy.Fault{Kind: faultproxy.Pass}})
		p.SetRandom(&faultproxy.Random{Method: "POST", Seed: seed, Rate: rate, Faults: faults})
		for i := range 60 {
			path := "/fhir/Observation"
			if i%3 == 0 {
				path = "/fhir/metadata"
			}
			_, _ = send(t.Context(), t, client(), "POST", url+path)
		}
		var kinds []faultproxy.Kind
		for _, e := range p.Events() {
			if e.Path == "/fhir/metadata" && e.Fault != faultproxy.Pass {
				t.Errorf("a random fault on a request a rule took: %+v", e)
			}
			kinds = append(kinds, e.Fault)
		}
		return kinds
	}
	count := func(kinds []faultproxy.Kind) (n int) {
		for _, k := range kinds {
			if k != faultproxy.Pass {
				n++
			}
		}
		return n
	}

	a, b := run(42, 0.5), run(42, 0.5)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("seed 42 twice (-first +second):\n%s", diff)
	}
	if n := count(a); n == 0 || n == 40 {
		t.Errorf("rate 0.5 gave %d faults in 40 requests", n)
	}
	if c := run(43, 0.5); cmp.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same faults: %v", a)
	}
	if n := count(run(7, 0)); n != 0 {
		t.Errorf("rate 0 gave %d faults", n)
	}
	if n := count(run(7, 1)); n != 40 {
		t.Errorf("rate 1 gave %d faults in 40 requests, want 40", n)
	}
}

func TestNewRefusesNonOrigins(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:80", "ftp://h", "http://h/fhir", "http://h?x=1", "http://"} {
		if _, err := faultproxy.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := faultproxy.New("http://127.0.0.1:8080/"); err != nil {
		t.Errorf("New(origin/): %v", err)
	}
}
