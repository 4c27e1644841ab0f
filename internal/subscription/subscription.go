// Package subscription notifies R4 rest-hook Subscriptions of the changes
// that match their criteria (docs/fhir-behaviour.md, "Subscriptions").
//
// The notifier reads the change log after its cursor (store.WorkerState
// "subscriptions", held by one instance at a time with a lease), activates
// requested Subscriptions, and evaluates each change against the active
// ones: a change matches when a search of the criteria restricted to the
// changed resource's _id finds it (the search code decides, so a match is
// exactly what a client's search would return). A match is POSTed to
// channel.endpoint with the channel's headers, retried with exponential
// backoff and full jitter; after MaxAttempts failures the Subscription's
// status becomes error with Subscription.error saying why.
package subscription

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// WorkerID is the store.WorkerState id of the notifier.
const WorkerID = "subscriptions"

// Options tune the notifier; zero values take the defaults (but Owner).
type Options struct {
	// BaseURL is the FHIR base of this server, for the fullUrl of id-only
	// notifications.
	BaseURL      string
	lease.Holder               // the notifier's lease; Sleep also waits out the backoff
	Poll         time.Duration // how often an idle notifier reads the change log (2 s)
	Batch        int           // changes read at once (100)
	// MaxAttempts is how many times one notification is tried before the
	// Subscription is put in error (5); the waits between them are full
	// jitter over BackoffBase·2^(n-1) (1 s), capped at BackoffMax (1 min).
	MaxAttempts             int
	BackoffBase, BackoffMax time.Duration
	// Jitter (in [0, 1)) is injectable for tests.
	Jitter func() float64
	// HTTP sends the notifications (default: a client with a 10 s timeout
	// that follows no redirects).
	HTTP *http.Client
}

// Notifier delivers the notifications.
type Notifier struct {
	st      *store.Store
	svc     *resource.Service
	reg     *fhir.Registry
	metrics *metrics.Metrics
	log     *slog.Logger
	o       Options
	state   *store.WorkerState // as held; nil when not held
}

// New returns the notifier over st; Subscription status changes go
// through svc.
func New(st *store.Store, svc *resource.Service, reg *fhir.Registry, m *metrics.Metrics, log *slog.Logger, o Options) (*Notifier, error) {
	var err error
	if o.Holder, err = o.Holder.WithDefaults(); err != nil {
		return nil, err
	}
	if o.Poll == 0 {
		o.Poll = 2 * time.Second
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = time.Minute
	}
	if o.Jitter == nil {
		o.Jitter = mathrand.Float64
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Notifier{st: st, svc: svc, reg: reg, metrics: m, log: log, o: o}, nil
}

// Run steps until ctx ends, then releases the lease.
func (n *Notifier) Run(ctx context.Context) {
	for ctx.Err() == nil {
		more, err := n.Step(ctx)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errLostLease) {
			n.log.Error("subscriptions", "error", err.Error())
		}
		if more && err == nil {
			continue
		}
		if n.o.Sleep(ctx, n.o.Poll) != nil {
			break
		}
	}
	if n.state != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.st.ReleaseWorker(ctx, WorkerID, n.o.Owner)
		n.state = nil
	}
}

var errLostLease = errors.New("the notifier's lease was taken over")

// sub is an active Subscription.
type sub struct {
	id   string
	spec *resource.SubscriptionSpec
}

// Step takes the lease and evaluates one batch of changes; more reports a
// full batch. Not safe for concurrent use (Run or a test drives it).
func (n *Notifier) Step(ctx context.Context) (bool, error) {
	now := n.o.Now()
	held, err := n.st.ClaimWorker(ctx, WorkerID, n.o.Owner, now, now.Add(n.o.Lease))
	n.state = held
	if err != nil || held == nil {
		return false, err
	}
	recs, next, err := n.st.Changes(ctx, n.state.Seq, n.o.Batch, n.o.Now())
	if err != nil {
		return false, err
	}
	var subs []sub
	loaded := false
	for _, rec := range recs {
		if rec.Type == "Subscription" || !loaded {
			// Reloaded when one changes, so it applies from its own change on.
			if subs, err = n.active(ctx); err != nil {
				return false, err
			}
			loaded = true
		}
		// AuditEvents, one per request, are nobody's notification: each
		// would otherwise be a search of its own.
		if !rec.Deleted && rec.Type != "Subscription" && rec.Type != audit.ResourceType {
			if err := n.evaluate(ctx, rec, subs); err != nil {
				return false, err
			}
		}
		n.state.Seq = rec.Seq
		if err := n.save(ctx); err != nil {
			return false, err
		}
	}
	n.state.Seq = next
	n.state.LastSuccess = n.o.Now()
	return len(recs) == n.o.Batch, n.save(ctx)
}

func (n *Notifier) save(ctx context.Context) error {
	n.state.Lease = n.o.Now().Add(n.o.Lease)
	ok, err := n.st.SaveWorker(ctx, n.state)
	if err == nil && !ok {
		n.state = nil
		return errLostLease
	}
	return err
}

// active reads the active Subscriptions, activating the requested ones
// (they were checked when written). On the embedded store the search is
// a scan, once per batch.
func (n *Notifier) active(ctx context.Context) ([]sub, error) {
	c, err := search.ParseCriteria(n.reg, "Subscription", "status=active,requested")
	if err != nil {
		return nil, err
	}
	var out []sub
	q := &store.Query{Type: "Subscription", And: c.Conds, Sort: []store.Sort{{Field: "rid"}}, Limit: 200}
	for {
		recs, more, err := n.st.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			spec, err := resource.ParseSubscription(n.reg, []byte(rec.Raw))
			if err != nil {
				continue // written before the rules it breaks
			}
			if spec.Status == "requested" {
				if err := n.setStatus(ctx, rec, "active", ""); err != nil {
					return nil, err
				}
			}
			out = append(out, sub{id: rec.ID, spec: spec})
		}
		if !more || len(recs) == 0 {
			return out, nil
		}
		q.After = []any{recs[len(recs)-1].ID}
	}
}

// setStatus patches a Subscription's status (and error), conditioned on
// the version read: a client's change in between wins.
func (n *Notifier) setStatus(ctx context.Context, rec *store.Record, status, reason string) error {
	ops := []map[string]any{{"op": "replace", "path": "/status", "value": status}}
	if reason != "" {
		ops = append(ops, map[string]any{"op": "add", "path": "/error", "value": reason})
	}
	body, _ := json.Marshal(ops)
	p, err := fhir.ParseJSONPatch(body)
	if err != nil {
		return err
	}
	_, err = n.svc.Patch(ctx, "Subscription", rec.ID, p, &rec.VersionID)
	if fault.Is(err, fault.PreconditionFailed) || fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone) {
		return nil
	}
	return err
}

// evaluate notifies each Subscription whose criteria match the changed
// resource.
func (n *Notifier) evaluate(ctx context.Context, rec *store.Record, subs []sub) error {
	for _, s := range subs {
		if s.spec.Criteria.Type != rec.Type {
			continue
		}
		ok, err := n.matches(ctx, s.spec, rec)
		if err != nil {
			return err
		}
		if ok {
			if err := n.notify(ctx, s, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// matches runs the criteria restricted to the resource's _id: the current
// version is what is matched (a later version of the same resource is
// matched again on its own change).
func (n *Notifier) matches(ctx context.Context, spec *resource.SubscriptionSpec, rec *store.Record) (bool, error) {
	q := url.Values{"_id": {rec.ID}}.Encode()
	if spec.Query != "" {
		q = spec.Query + "&" + q
	}
	c, err := search.ParseCriteria(n.reg, rec.Type, q)
	if err != nil {
		return false, nil // checked on write; a custom parameter since removed
	}
	m, err := n.svc.Match(ctx, c)
	return len(m) > 0, err
}

// notify POSTs one notification, retrying; after MaxAttempts failures
// the Subscription is put in error.
func (n *Notifier) notify(ctx context.Context, s sub, rec *store.Record) error {
	body, err := n.payload(s.spec, rec)
	if err != nil {
		return err
	}
	var last string
	for attempt := 1; attempt <= n.o.MaxAttempts; attempt++ {
		status, err := n.post(ctx, s.spec, body)
		if err == nil && status/100 == 2 {
			n.metrics.Notification("sent")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = "network error"
		if err == nil {
			last = "HTTP " + strconv.Itoa(status)
		}
		if attempt == n.o.MaxAttempts {
			break
		}
		n.metrics.Notification("retried")
		wait := n.backoff(attempt)
		// The lease must outlast the wait.
		n.state.Lease = n.o.Now().Add(n.o.Lease + wait)
		if ok, err := n.st.SaveWorker(ctx, n.state); err != nil || !ok {
			if err == nil {
				err = errLostLease
			}
			return err
		}
		if err := n.o.Sleep(ctx, wait); err != nil {
			return err
		}
	}
	n.metrics.Notification("failed")
	n.log.Warn("subscription notification failed", "subscription", s.id, "error", last)
	cur, err := n.st.Current(ctx, "Subscription", s.id)
	if err != nil {
		return err
	}
	return n.setStatus(ctx, cur, "error", fmt.Sprintf("notification failed %d times, last: %s", n.o.MaxAttempts, last))
}

func (n *Notifier) backoff(attempt int) time.Duration {
	d := min(n.o.BackoffBase<<(attempt-1), n.o.BackoffMax)
	return time.Duration(n.o.Jitter() * float64(d))
}

// payload is the notification body: none (empty), a history Bundle whose
// one entry has only the fullUrl of the version (id-only), or the resource
// as stored (full-resource). A Subscription has no principal a Consent
// could name, so Part 2 data (package disclosure) goes id-only: the
// subscriber reads it through the API, where the policy applies.
func (n *Notifier) payload(spec *resource.SubscriptionSpec, rec *store.Record) ([]byte, error) {
	content := spec.Content
	if labels, err := disclosure.Labels(rec.Raw); err != nil || len(labels) > 0 {
		content = "id-only"
	}
	switch content {
	case "empty":
		return nil, nil
	case "id-only":
		full := fmt.Sprintf("%s/%s/%s/_history/%d", n.o.BaseURL, rec.Type, rec.ID, rec.VersionID)
		return json.Marshal(map[string]any{"resourceType": "Bundle", "type": "history",
			"entry": []any{map[string]any{"fullUrl": full}}})
	}
	return []byte(rec.Raw), nil
}

func (n *Notifier) post(ctx context.Context, spec *resource.SubscriptionSpec, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, spec.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, h := range spec.Headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := n.o.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
