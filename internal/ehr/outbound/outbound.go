// Package outbound delivers the changes of the change log to the
// configured hospital EHRs (docs/ehr-sync.md, "Outbound").
//
// One worker per endpoint holds the endpoint's lease (store.SyncEndpoint:
// one holder across every service instance) and reads store.Changes after
// the endpoint's cursor. Each change is delivered, skipped (the send
// policy, the Part 2 consent rule, what the EHR accepts) or dead-lettered,
// and only then does the cursor move past it; transient failures (429,
// 5xx, network) are retried with exponential backoff and jitter, honouring
// Retry-After. Delivery has an exactly-once effect: the local→remote id map
// (store.RemoteRef) turns later versions into PUTs with If-Match, and a
// create whose outcome is unknown is looked for on the EHR by our
// identifier before it is sent again.
package outbound

import (
	"context"
	"errors"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// Options tune the engine; zero values take the defaults (but Owner).
type Options struct {
	// Install names this installation in the identifier every resource
	// sent carries, system "urn:kapfhir:<Install>", value "<Type>/<id>"
	// (default "kapfhir"). Two clinics sending to one EHR need different
	// names.
	Install      string
	lease.Holder               // the endpoint leases; Sleep also waits out the backoff
	Poll         time.Duration // how often an idle worker reads the change log (2 s)
	Batch        int           // changes read at once (100)
	// BackoffBase and BackoffMax bound the exponential backoff of a
	// transient failure (1 s doubling up to 5 min, full jitter); GiveUp is
	// how long one change may keep failing before it is dead-lettered
	// (24 h).
	BackoffBase, BackoffMax, GiveUp time.Duration
	// Jitter (a number in [0, 1)) is the randomness of the backoff; tests
	// inject it.
	Jitter func() float64
	// Client builds an endpoint's HTTP client (default ehr.NewClient).
	Client func(ehr.Endpoint) (*http.Client, error)
	// Reload is how often Run reads the endpoints defined through the
	// admin API, starting and stopping their workers (10 s): another
	// instance's changes take effect within it.
	Reload time.Duration
	// Sources resolve the secret references of the endpoints defined
	// through the admin API (default ehr.DefaultSources).
	Sources ehr.Sources
	// Audit records an AuditEvent of each resource delivered (a
	// disclosure to the endpoint); nil: none.
	Audit *audit.Sink
}

// Engine runs one worker per endpoint: those of the configuration file,
// fixed, and those defined through the admin API (store.EndpointDef),
// started and stopped as their definitions change (defs.go).
type Engine struct {
	st      *store.Store
	mapper  *mappings.Mapper
	metrics *metrics.Metrics
	log     *slog.Logger
	o       Options
	system  string // our identifier system
	policy  *disclosure.Policy

	workers *ehr.Workers[*worker]
}

// New returns the engine of cfg's endpoints over st. reg is used to find a
// patient's Consents, mapper for the kap CodeSystem and the session note.
func New(st *store.Store, reg *fhir.Registry, mapper *mappings.Mapper, cfg ehr.Config, m *metrics.Metrics, log *slog.Logger, o Options) (*Engine, error) {
	if o.Install == "" {
		o.Install = "kapfhir"
	}
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
	if o.BackoffBase == 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.GiveUp == 0 {
		o.GiveUp = 24 * time.Hour
	}
	if o.Jitter == nil {
		o.Jitter = mathrand.Float64
	}
	if o.Client == nil {
		o.Client = func(e ehr.Endpoint) (*http.Client, error) { return ehr.NewClient(e, ehr.ClientOptions{}) }
	}
	if o.Reload == 0 {
		o.Reload = 10 * time.Second
	}
	if o.Sources.LookupEnv == nil {
		o.Sources = ehr.DefaultSources()
	}
	e := &Engine{st: st, mapper: mapper, metrics: m, log: log, o: o, system: "urn:kapfhir:" + o.Install,
		policy: disclosure.New(st, reg, o.Now)}
	var names []string
	var file []*worker
	for _, ep := range cfg.Endpoints {
		ep.Source = ehr.SourceFile // whatever cfg says: these are fixed
		c, err := o.Client(ep)
		if err != nil {
			return nil, err
		}
		names = append(names, ep.Name)
		file = append(file, &worker{e: e, ep: ep, client: c})
	}
	e.workers = ehr.NewWorkers(st, log, "EHR sync", names, file, e.newWorker)
	return e, nil
}

// System is the identifier system of the resources this engine sends.
func (e *Engine) System() string { return e.system }

// Run runs every endpoint's worker until ctx ends, re-reading the
// endpoints defined through the admin API every Reload, then gives up the
// leases it holds so another instance takes over at once.
func (e *Engine) Run(ctx context.Context) {
	e.workers.Run(ctx, e.o.Reload)
}

// Step runs one round of every worker: take or renew the lease, read a
// batch of changes after the cursor and deliver them. Tests drive the
// engine with it; more reports that a full batch was read.
func (e *Engine) Step(ctx context.Context) (more bool, err error) {
	for _, w := range e.current() {
		m, err := w.step(ctx)
		if err != nil {
			return false, err
		}
		more = more || m
	}
	return more, nil
}

// current is a snapshot of the workers.
func (e *Engine) current() []*worker { return e.workers.Current() }

// worker is the worker of the endpoint name; nil when there is none.
func (e *Engine) worker(name string) *worker {
	w, _ := e.workers.Named(name)
	return w
}

// errLostLease stops a worker whose lease another instance took over.
var errLostLease = errors.New("the endpoint's lease was taken over")

// worker delivers to one endpoint.
type worker struct {
	e      *Engine
	ep     ehr.Endpoint
	client *http.Client
	// def and routine: see ehr.Worker.
	def     string
	routine ehr.Routine

	// stepping serialises steps (Run and a test's Step); the fields
	// below belong to the step holding it.
	stepping sync.Mutex
	ensured  bool                // the endpoint's state document exists
	profile  ehr.Profile         // discovered once, with the overrides
	state    *store.SyncEndpoint // as held; nil when not held
	scope    *disclosure.Scope   // a batch's disclosure context (Consents read once per patient)
}

func (w *worker) Endpoint() *ehr.Endpoint { return &w.ep }
func (w *worker) Def() string             { return w.def }
func (w *worker) Routine() *ehr.Routine   { return &w.routine }

// Run steps until ctx ends, without waiting while there is more to read.
func (w *worker) Run(ctx context.Context) {
	for ctx.Err() == nil {
		more, err := w.step(ctx)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errLostLease) {
			w.e.log.Error("EHR sync", "endpoint", w.ep.Name, "error", err.Error())
		}
		if more && err == nil {
			continue
		}
		if w.e.o.Sleep(ctx, w.e.o.Poll) != nil {
			break
		}
	}
	w.release()
}

// release gives the lease up after a clean stop.
func (w *worker) release() {
	w.stepping.Lock()
	defer w.stepping.Unlock()
	held := w.state != nil
	w.state = nil
	w.clearGauges()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.e.st.ReleaseSyncEndpoint(ctx, w.ep.Name, w.e.o.Owner); err != nil {
		w.e.log.Warn("EHR sync: release lease", "endpoint", w.ep.Name, "error", err.Error())
	}
}

// clearGauges zeroes this instance's lag and in-flight gauges of the
// endpoint when it does not hold it: only the holder's values are current,
// and alerts take the maximum over instances.
func (w *worker) clearGauges() {
	w.e.metrics.SetSyncInFlight(w.ep.Name, 0)
	w.e.metrics.SetSyncLag(w.ep.Name, 0)
}

// step claims the endpoint and delivers one batch of changes.
func (w *worker) step(ctx context.Context) (bool, error) {
	w.stepping.Lock()
	defer w.stepping.Unlock()
	st := w.e.st
	if !w.ensured {
		if err := st.EnsureSyncEndpoint(ctx, w.ep.Name); err != nil {
			return false, err
		}
		w.ensured = true
	}
	now := w.e.o.Now()
	held, err := st.ClaimSyncEndpoint(ctx, w.ep.Name, w.e.o.Owner, now, now.Add(w.e.o.Lease))
	w.state = held
	if err == nil && held == nil {
		w.clearGauges() // another instance holds the endpoint and reports it
	}
	if err != nil || held == nil {
		return false, err
	}
	if err := w.discover(ctx); err != nil {
		w.state.LastError = "capability discovery failed"
		_, _ = w.save(ctx, 0, 0)
		return false, err
	}
	w.scope = w.e.policy.Scope(disclosure.Recipient{Actors: []string{w.ep.Send.Recipient}, Purposes: []string{disclosure.Treatment}})
	if held.Replays > 0 {
		if err := w.replays(ctx, held.Replays); err != nil {
			return false, err
		}
	}
	recs, next, err := st.Changes(ctx, w.state.Cursor, w.e.o.Batch, w.e.o.Now())
	if err != nil {
		return false, err
	}
	for _, rec := range recs {
		if err := w.deliverChange(ctx, rec); err != nil {
			return false, err
		}
		w.state.Cursor = rec.Seq
	}
	w.state.Cursor = next
	if ok, err := w.save(ctx, 0, 0); err != nil || !ok {
		return false, err
	}
	w.reportLag(ctx)
	return len(recs) == w.e.o.Batch, nil
}

// discover reads the EHR's capability profile once.
func (w *worker) discover(ctx context.Context) error {
	if w.profile != nil {
		return nil
	}
	p, err := ehr.Discover(ctx, w.client, w.ep.BaseURL)
	if err != nil {
		return err
	}
	w.profile = p.Merge(w.ep.Overrides)
	return nil
}

// save writes the cursor and status, renewing the lease for Lease plus
// wait (a backoff the worker is about to sleep: another instance must not
// take the endpoint from a live worker); inFlight is the change being
// delivered. It reports false, with errLostLease, when another instance
// took over.
func (w *worker) save(ctx context.Context, inFlight int64, wait time.Duration) (bool, error) {
	w.state.InFlight = inFlight
	w.state.Lease = w.e.o.Now().Add(w.e.o.Lease + wait)
	ok, err := w.e.st.SaveSyncEndpoint(ctx, w.state)
	if err != nil {
		return false, err
	}
	if !ok {
		w.state = nil
		return false, errLostLease
	}
	return true, nil
}

// reportLag sets the lag gauge: the age of the first change after the
// cursor (0 when there is none).
func (w *worker) reportLag(ctx context.Context) {
	lag, _, err := lagOf(ctx, w.e.st, w.state.Cursor, w.e.o.Now())
	if err == nil {
		w.e.metrics.SetSyncLag(w.ep.Name, lag)
	}
}

// lagOf is the age of the first change after cursor and its sequence
// number (0 when there is none).
func lagOf(ctx context.Context, st *store.Store, cursor int64, now time.Time) (time.Duration, int64, error) {
	recs, _, err := st.Changes(ctx, cursor, 1, now)
	if err != nil || len(recs) == 0 {
		return 0, 0, err
	}
	return now.Sub(recs[0].LastUpdated), recs[0].Seq, nil
}
