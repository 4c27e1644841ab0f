// Package faultproxy is an HTTP proxy that injects the faults a hospital
// EHR shows (issue 6, acceptance 1): 429 with Retry-After, 503 bursts,
// connections dropped after the EHR applied the request, slow answers, and
// an EHR that is down. Rules script it per request; a seeded random mode
// sprinkles faults reproducibly. It counts and records what it did, for
// assertions. The EHR sync tests put it in front of the stand-in EHR
// (package ehrtest); the load tool can put it in front of anything.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is what the proxy does with one request.
type Kind string

const (
	// Pass forwards the request and returns the answer.
	Pass Kind = "pass"
	// TooManyRequests answers 429 with Retry-After without forwarding.
	TooManyRequests Kind = "429"
	// Unavailable answers 503 without forwarding.
	Unavailable Kind = "503"
	// DropAfterApply forwards the request, receives the answer, then
	// closes the client's connection without answering: the EHR applied
	// the request but the client never hears.
	DropAfterApply Kind = "drop-after-apply"
	// Slow forwards the request and holds the answer for Fault.Delay
	// (or until the client gives up, or the proxy closes).
	Slow Kind = "slow"
	// Down closes the client's connection without forwarding: the EHR is
	// unreachable and nothing was applied.
	Down Kind = "down"
)

// Fault is one fault.
type Fault struct {
	Kind Kind
	// RetryAfter is the Retry-After of a 429 (always sent, so 0 is
	// "Retry-After: 0") and of a 503 (sent when over 0), in seconds.
	RetryAfter int
	// Delay is how long Slow holds the answer.
	Delay time.Duration
}

// Rule applies a fault to the requests it matches.
type Rule struct {
	// Method matches the request method; "" any.
	Method string
	// PathPrefix matches the start of the request path; "" any.
	PathPrefix string
	Fault      Fault
	// Times is how many matching requests the rule takes (a burst of
	// Times); 0: every one, until Clear.
	Times int
}

// Random applies faults at random to the requests it matches that no rule
// took. For one Seed, the same sequence of arriving requests meets the
// same faults.
type Random struct {
	Method     string
	PathPrefix string
	Seed       uint64
	// Rate is the fraction of matching requests that meet a fault.
	Rate float64
	// Faults are chosen from with equal chance.
	Faults []Fault
}

// Event is one request the proxy handled.
type Event struct {
	Method string
	Path   string
	Fault  Kind
	// Upstream is the upstream's status; 0: not forwarded, or it failed.
	Upstream int
	// Status is the status the client got; 0: the connection was closed
	// without an answer.
	Status int
}

// Counts are what the proxy did, per kind of fault.
type Counts struct {
	Requests        int
	Forwarded       int
	Pass            int
	TooManyRequests int
	Unavailable     int
	DropAfterApply  int
	Slow            int
	Down            int
	// UpstreamErrors are forwarded requests the upstream did not answer
	// (the client got 502).
	UpstreamErrors int
}

// maxBody bounds an upstream answer held by the proxy.
const maxBody = 64 << 20

// Proxy is an http.Handler forwarding to one upstream origin, paths
// unchanged. It needs HTTP/1 (httptest.NewServer, http.Server) so that it
// can close a client's connection. Safe for concurrent use.
type Proxy struct {
	upstream  *url.URL
	transport *http.Transport
	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	rules  []Rule
	random *Random
	rng    *rand.Rand
	counts Counts
	events []Event
}

// New returns a proxy to upstream, an origin such as
// http://127.0.0.1:41000 (no path: request paths pass unchanged, and the
// Host header too, so an upstream that builds Location from it names the
// proxy).
func New(upstream string) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("faultproxy: upstream %q is not an http(s) origin", upstream)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // straight to the upstream, whatever HTTPS_PROXY says
	return &Proxy{upstream: u, transport: t, closed: make(chan struct{})}, nil
}

// Add appends rules; the first rule matching a request, in the order
// added, takes it.
func (p *Proxy) Add(rules ...Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, rules...)
}

// SetRandom sets the random mode (nil: off) and restarts its sequence.
func (p *Proxy) SetRandom(r *Random) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.random = r
	p.rng = nil
	if r != nil {
		p.rng = rand.New(rand.NewPCG(r.Seed, r.Seed^0x9e3779b97f4a7c15))
	}
}

// Clear removes the rules and the random mode: every request passes.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
	p.random, p.rng = nil, nil
}

// Counts returns what the proxy did so far.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// Events returns the requests handled so far, in the order they arrived.
func (p *Proxy) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// Close releases the answers Slow holds and the upstream connections.
// Call it before closing the server the proxy runs in.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() { close(p.closed) })
	p.transport.CloseIdleConnections()
}

func matches(method, prefix string, r *http.Request) bool {
	return (method == "" || method == r.Method) && strings.HasPrefix(r.URL.Path, prefix)
}

// decide picks the fault for a request as it arrives and records the
// event; it returns the event's index.
func (p *Proxy) decide(r *http.Request) (Fault, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := Fault{Kind: Pass}
	chosen := false
	for i := range p.rules {
		rule := &p.rules[i]
		if !matches(rule.Method, rule.PathPrefix, r) {
			continue
		}
		f, chosen = rule.Fault, true
		if rule.Times > 0 {
			if rule.Times--; rule.Times == 0 {
				p.rules = append(p.rules[:i], p.rules[i+1:]...)
			}
		}
		break
	}
	if !chosen && p.random != nil && len(p.random.Faults) > 0 && matches(p.random.Method, p.random.PathPrefix, r) {
		if p.rng.Float64() < p.random.Rate {
			f = p.random.Faults[p.rng.IntN(len(p.random.Faults))]
		}
	}
	p.counts.Requests++
	switch f.Kind {
	case Pass:
		p.counts.Pass++
	case TooManyRequests:
		p.counts.TooManyRequests++
	case Unavailable:
		p.counts.Unavailable++
	case DropAfterApply:
		p.counts.DropAfterApply++
	case Slow:
		p.counts.Slow++
	case Down:
		p.counts.Down++
	}
	p.events = append(p.events, Event{Method: r.Method, Path: r.URL.Path, Fault: f.Kind})
	return f, len(p.events) - 1
}

// finish records how a request ended.
func (p *Proxy) finish(i, upstream, status int, upstreamErr bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events[i].Upstream, p.events[i].Status = upstream, status
	if upstream != 0 {
		p.counts.Forwarded++
	}
	if upstreamErr {
		p.counts.UpstreamErrors++
	}
}

// ServeHTTP applies the fault chosen for the request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ev := p.decide(r)
	switch f.Kind {
	case TooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		p.answerOutcome(w, ev, http.StatusTooManyRequests, "throttled", "too many requests (fault injected)")
		return
	case Unavailable:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		p.answerOutcome(w, ev, http.StatusServiceUnavailable, "transient", "service unavailable (fault injected)")
		return
	case Down:
		p.finish(ev, 0, 0, false)
		panic(http.ErrAbortHandler)
	case Pass, DropAfterApply, Slow:
	default:
		p.answerOutcome(w, ev, http.StatusInternalServerError, "exception", fmt.Sprintf("unknown fault kind %q", f.Kind))
		return
	}

	resp, body, err := p.forward(r)
	if err != nil && r.Context().Err() != nil {
		// The client gave up: not the upstream's failure.
		p.finish(ev, 0, 0, false)
		return
	}
	if err != nil {
		p.finish(ev, 0, http.StatusBadGateway, true)
		writeOutcome(w, http.StatusBadGateway, "transient", "the upstream did not answer: "+err.Error())
		return
	}
	switch f.Kind {
	case DropAfterApply:
		p.finish(ev, resp.StatusCode, 0, false)
		// The server closes the connection without writing anything: the
		// client sees a network error after the upstream applied it.
		panic(http.ErrAbortHandler)
	case Slow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			p.finish(ev, resp.StatusCode, 0, false)
			return
		case <-p.closed:
		}
	}
	for k, vs := range resp.Header {
		if !hopByHop(k) {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	p.finish(ev, resp.StatusCode, resp.StatusCode, false)
}

// forward sends the request upstream and reads the whole answer (so that a
// dropped or held answer was fully received: the upstream is done).
func (p *Proxy) forward(r *http.Request) (*http.Response, []byte, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	out.Host = r.Host
	for k := range out.Header {
		if hopByHop(k) {
			out.Header.Del(k)
		}
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxBody {
		return nil, nil, errors.New("the answer is over 64 MiB")
	}
	resp.Header.Del("Content-Length")
	return resp, body, nil
}

// hopByHop reports headers that belong to one connection (RFC 9110 §7.6.1).
func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

func (p *Proxy) answerOutcome(w http.ResponseWriter, ev, status int, code, text string) {
	writeOutcome(w, status, code, text)
	p.finish(ev, 0, status, false)
}

// writeOutcome answers with an OperationOutcome, as an EHR does.
func writeOutcome(w http.ResponseWriter, status int, code, text string) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []map[string]any{{"severity": "error", "code": code, "diagnostics": text}},
	})
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
