// Package inbound pulls what the hospital EHRs know into the local store
// (docs/ehr-sync.md, "Inbound").
//
// The endpoints are the configuration file's and those defined through
// the admin API (store.EndpointDef, read with the outbound engine's
// ehr.StoredDefs), re-read every Options.Reload and on a change through
// this instance's API; a name of the file wins. One worker per endpoint
// with pull types holds the endpoint's pull lease
// (store.WorkerState "pull|<endpoint>": one holder across every service
// instance). Each round it reads, per type, `[base]/Type?_lastUpdated=
// ge<cursor>&_sort=_lastUpdated&_count=N` and the pages its next links
// name, upserts every resource locally and moves the type's cursor to the
// newest meta.lastUpdated seen. A pulled resource gets a local id derived
// from the endpoint and its remote id, so two pulls of it (another
// instance, a repeated page) write one resource; it is tagged
// `urn:kapfhir:pulled-from|<endpoint>` so outbound never sends it back.
package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Options tune the puller; zero values take the defaults (but Owner).
type Options struct {
	// Install is the outbound identifier system's name (urn:kapfhir:
	// <Install>, default "kapfhir"): a resource carrying it is one we
	// sent, not pulled.
	Install      string
	lease.Holder     // the pull leases; Sleep is the wait between rounds
	Count        int // _count of each search page (100)
	// Client builds an endpoint's HTTP client (default ehr.NewClient).
	Client func(ehr.Endpoint) (*http.Client, error)
	// Reload is how often Run reads the endpoints defined through the
	// admin API, starting and stopping their workers (10 s).
	Reload time.Duration
	// Sources resolve the secret references of the endpoints defined
	// through the admin API (default ehr.DefaultSources).
	Sources ehr.Sources
}

// Puller runs one worker per endpoint that has pull types: the file's,
// fixed, and the admin API's, started and stopped as their definitions
// change.
type Puller struct {
	st      *store.Store
	svc     *resource.Service
	reg     *fhir.Registry
	metrics *metrics.Metrics
	log     *slog.Logger
	o       Options
	ours    string // the outbound identifier system
	workers *ehr.Workers[*worker]
}

// New returns the puller of cfg's endpoints that list pull types; writes
// go through svc; reg serves the identifier search that links patients.
func New(st *store.Store, svc *resource.Service, reg *fhir.Registry, cfg ehr.Config, m *metrics.Metrics, log *slog.Logger, o Options) (*Puller, error) {
	if o.Install == "" {
		o.Install = "kapfhir"
	}
	var err error
	if o.Holder, err = o.Holder.WithDefaults(); err != nil {
		return nil, err
	}
	if o.Count == 0 {
		o.Count = 100
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
	p := &Puller{st: st, svc: svc, reg: reg, metrics: m, log: log, o: o, ours: "urn:kapfhir:" + o.Install}
	var names []string // pulled or not: the file wins on a name
	var file []*worker
	for _, ep := range cfg.Endpoints {
		ep.Source = ehr.SourceFile // whatever cfg says: these are fixed
		names = append(names, ep.Name)
		if len(ep.Pull.Types) == 0 {
			continue
		}
		c, err := o.Client(ep)
		if err != nil {
			return nil, err
		}
		file = append(file, &worker{p: p, ep: ep, client: c})
	}
	p.workers = ehr.NewWorkers(st, log, "EHR pull", names, file, p.newWorker)
	return p, nil
}

// Endpoints is how many endpoints are pulled from.
func (p *Puller) Endpoints() int { return len(p.current()) }

// Run runs every endpoint's worker until ctx ends, a round every
// pull.every, re-reading the endpoints defined through the admin API
// every Reload, then gives up the leases it holds.
func (p *Puller) Run(ctx context.Context) {
	p.workers.Run(ctx, p.o.Reload)
}

// Reload reads the endpoint definitions of the store and makes the API
// endpoints' workers match (ehr.Workers.Reload); a definition without
// pull types gets none.
func (p *Puller) Reload(ctx context.Context) error { return p.workers.Reload(ctx) }

// newWorker is the worker of an API definition; false when it pulls nothing.
func (p *Puller) newWorker(d ehr.StoredDef) (*worker, bool, error) {
	ep, err := d.Parse(p.o.Sources)
	if err != nil || len(ep.Pull.Types) == 0 {
		return nil, false, err
	}
	c, err := p.o.Client(ep)
	if err != nil {
		return nil, false, fmt.Errorf("client: %w", err)
	}
	return &worker{p: p, ep: ep, client: c, def: d.Def}, true, nil
}

// current is a snapshot of the workers.
func (p *Puller) current() []*worker { return p.workers.Current() }

// Step runs one round of every worker: take the lease and pull every type
// until the EHR has nothing newer. Tests drive the puller with it.
func (p *Puller) Step(ctx context.Context) error {
	for _, w := range p.current() {
		if err := w.step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// WorkerID is the store.WorkerState id of an endpoint's pull.
func WorkerID(endpoint string) string { return "pull|" + endpoint }

// errLostLease stops a worker whose lease another instance took over.
var errLostLease = errors.New("the endpoint's pull lease was taken over")

// worker pulls from one endpoint.
type worker struct {
	p      *Puller
	ep     ehr.Endpoint
	client *http.Client
	// def and routine: see ehr.Worker.
	def     string
	routine ehr.Routine

	stepping sync.Mutex         // serialises steps (Run and a test's Step)
	state    *store.WorkerState // as held; nil when not held
}

func (w *worker) Endpoint() *ehr.Endpoint { return &w.ep }
func (w *worker) Def() string             { return w.def }
func (w *worker) Routine() *ehr.Routine   { return &w.routine }

// Run pulls every pull.every until ctx ends, then gives the lease up.
func (w *worker) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.step(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errLostLease) {
			w.p.log.Error("EHR pull", "endpoint", w.ep.Name, "error", err.Error())
		}
		if w.p.o.Sleep(ctx, w.ep.Pull.Every) != nil {
			break
		}
	}
	w.release()
}

func (w *worker) release() {
	w.stepping.Lock()
	defer w.stepping.Unlock()
	if w.state == nil {
		return
	}
	w.state = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.p.st.ReleaseWorker(ctx, WorkerID(w.ep.Name), w.p.o.Owner); err != nil {
		w.p.log.Warn("EHR pull: release lease", "endpoint", w.ep.Name, "error", err.Error())
	}
}

// step claims the endpoint and pulls every type until caught up.
func (w *worker) step(ctx context.Context) error {
	w.stepping.Lock()
	defer w.stepping.Unlock()
	now := w.p.o.Now()
	held, err := w.p.st.ClaimWorker(ctx, WorkerID(w.ep.Name), w.p.o.Owner, now, now.Add(w.p.o.Lease))
	w.state = held
	if err != nil || held == nil {
		return err
	}
	for _, typ := range w.ep.Pull.Types {
		if err := w.pullType(ctx, typ); err != nil {
			if w.state != nil {
				w.state.LastError = errorClass(err)
				_, _ = w.save(ctx)
			}
			return fmt.Errorf("pull %s: %w", typ, err)
		}
	}
	w.state.LastSuccess, w.state.LastError = w.p.o.Now(), ""
	_, err = w.save(ctx)
	return err
}

// save writes the cursors, renewing the lease; errLostLease when another
// instance took over.
func (w *worker) save(ctx context.Context) (bool, error) {
	w.state.Lease = w.p.o.Now().Add(w.p.o.Lease)
	ok, err := w.p.st.SaveWorker(ctx, w.state)
	if err != nil {
		return false, err
	}
	if !ok {
		w.state = nil
		return false, errLostLease
	}
	return true, nil
}
