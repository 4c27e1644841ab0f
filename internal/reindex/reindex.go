// Package reindex keeps the custom search parameters of every service
// instance in step with the SearchParameter resources in the store, and
// runs the background jobs that recompute the search index entries of
// existing resources when a custom parameter is added, changed or removed.
//
// A job is a document in the jobs collection (store.Job); any instance may
// run it, one at a time (a lease renewed each batch), resuming from its
// keyset cursor after a crash. A job has two phases: phase 0 walks every
// resource of its types by _id; phase 1 walks again those written since
// the job was created minus Settle, once Settle has passed, because an
// instance that had not yet refreshed its registry may have indexed them
// with the previous definition.
package reindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Options tune the runner; zero values take the defaults.
type Options struct {
	Poll   time.Duration // how often the store is read for new parameters and jobs (2 s)
	Lease  time.Duration // how long a claimed job stays held without progress (30 s)
	Settle time.Duration // the longest a write may take after its instance refreshed (1 min)
	Batch  int           // resources per batch (200)
	// Rescan is how often the SearchParameters are read even though no
	// new job says one changed (1 min): a writer may die between its
	// commit and its job.
	Rescan time.Duration
}

// Jobs refreshes a registry from the store and runs reindex jobs.
type Jobs struct {
	st      *store.Store
	reg     *fhir.Registry
	metrics *metrics.Metrics
	log     *slog.Logger
	o       Options
	owner   string // this runner's lease owner id
	now     func() time.Time

	mu       sync.Mutex
	versions map[string]int64      // SearchParameter id -> the version last read
	jobs     map[string]*store.Job // by id, as last read or written here
	scanned  time.Time             // when the SearchParameters were last read
	scanJobs int                   // how many jobs there were then
}

// New returns the runner of st's jobs for reg.
func New(st *store.Store, reg *fhir.Registry, m *metrics.Metrics, log *slog.Logger, o Options) *Jobs {
	if o.Poll == 0 {
		o.Poll = 2 * time.Second
	}
	if o.Lease == 0 {
		o.Lease = 30 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = time.Minute
	}
	if o.Batch == 0 {
		o.Batch = 200
	}
	if o.Rescan == 0 {
		o.Rescan = time.Minute
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Jobs{
		st: st, reg: reg, metrics: m, log: log, o: o, owner: hex.EncodeToString(b[:]), now: time.Now,
		versions: map[string]int64{}, jobs: map[string]*store.Job{},
	}
}

// Run refreshes and runs jobs every Poll until ctx ends.
func (j *Jobs) Run(ctx context.Context) {
	t := time.NewTicker(j.o.Poll)
	defer t.Stop()
	for {
		if err := j.Step(ctx); err != nil && ctx.Err() == nil {
			j.log.Error("reindex", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step refreshes the registry and the jobs from the store, then works on
// each unfinished job this runner can claim.
func (j *Jobs) Step(ctx context.Context) error {
	if err := j.Refresh(ctx); err != nil {
		return err
	}
	for _, job := range j.List() {
		if job.State == store.JobDone {
			continue
		}
		if err := j.run(ctx, job.ID); err != nil {
			return err
		}
	}
	return nil
}

// Refresh loads the SearchParameters changed since the last refresh into
// the registry, makes sure each active version has its job, and reads the
// jobs.
//
// Every write that changes what a SearchParameter defines creates a job,
// so the SearchParameters are only read when the number of jobs changed,
// or every Rescan: reading them is a collection scan on the embedded store.
func (j *Jobs) Refresh(ctx context.Context) error {
	now := j.now()
	jobs, err := j.Current(ctx)
	if err != nil {
		return err
	}
	j.mu.Lock()
	fresh := !j.scanned.IsZero() && len(jobs) == j.scanJobs && now.Before(j.scanned.Add(j.o.Rescan))
	j.mu.Unlock()
	if fresh {
		j.report()
		return nil
	}
	known := map[string]bool{}
	for _, job := range jobs {
		known[job.ID] = true
	}
	seen := map[string]bool{}
	q := &store.Query{Type: "SearchParameter", Sort: []store.Sort{{Field: "rid"}}, Limit: 500}
	for {
		recs, more, err := j.st.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			seen[rec.ID] = true
			if err := j.load(ctx, rec, known); err != nil {
				return err
			}
		}
		if !more {
			break
		}
		q.After = []any{recs[len(recs)-1].ID}
	}
	// Deleted ones: the service that deleted it created their job.
	for _, c := range j.reg.Custom() {
		if !seen[c.ID] {
			j.reg.Remove(c.ID)
		}
	}
	j.mu.Lock()
	for id := range j.versions {
		if !seen[id] {
			delete(j.versions, id)
		}
	}
	j.mu.Unlock()
	// Jobs this refresh created count as seen: the next one need not scan.
	if jobs, err = j.Current(ctx); err != nil {
		return err
	}
	j.mu.Lock()
	j.scanned, j.scanJobs = now, len(jobs)
	j.mu.Unlock()
	j.report()
	return nil
}

// load registers (or unregisters) one SearchParameter version read from
// the store, once per version.
func (j *Jobs) load(ctx context.Context, rec *store.Record, known map[string]bool) error {
	j.mu.Lock()
	same := j.versions[rec.ID] == rec.VersionID
	j.versions[rec.ID] = rec.VersionID
	j.mu.Unlock()
	if same {
		return nil
	}
	res, err := fhir.ParseResource([]byte(rec.Raw))
	var c fhir.CustomParam
	active := false
	if err == nil {
		c, active, err = fhir.SearchParameterOf(res, rec.VersionID)
	}
	if err != nil {
		// Accepted once, so only a stricter validator gets here: one bad
		// resource must not keep the service from starting.
		j.log.Warn("stored SearchParameter unreadable", "search_parameter", rec.ID, "error", fault.As(err).Error())
		j.reg.Remove(rec.ID)
		return nil
	}
	if !active {
		j.reg.Remove(rec.ID)
		return nil
	}
	if err := j.reg.Put(c); err != nil {
		// Two instances accepted colliding codes at once: the first one
		// registered is served.
		j.log.Warn("custom search parameter not served", "search_parameter", rec.ID, "error", fault.As(err).Error())
		return nil
	}
	id := store.ReindexJobID(rec.ID, rec.VersionID)
	if known[id] {
		return nil
	}
	// Its writer died between the commit and the job: create it here.
	return j.st.CreateJob(ctx, &store.Job{ID: id, Param: rec.ID, Version: rec.VersionID, URL: c.URL, Code: c.Code, Types: c.Base, Created: j.now().UTC()})
}

// Current reads the jobs from the store (and keeps them as the latest
// known here), oldest first.
func (j *Jobs) Current(ctx context.Context) ([]store.Job, error) {
	jobs, err := j.st.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	j.remember(jobs)
	return jobs, nil
}

func (j *Jobs) remember(jobs []store.Job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range jobs {
		j.jobs[jobs[i].ID] = &jobs[i]
	}
}

// List returns the jobs as last read or written here, oldest first.
func (j *Jobs) List() []store.Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]store.Job, 0, len(j.jobs))
	for _, job := range j.jobs {
		out = append(out, *job)
	}
	sortJobs(out)
	return out
}

// Unfinished returns the job that makes a search by p incomplete: the job
// of p's SearchParameter version, unless this instance knows it is done.
// ok is false for a built-in parameter or a finished job; job is zero when
// the job is not known here yet.
func (j *Jobs) Unfinished(p *fhir.SearchParam) (job store.Job, ok bool) {
	if p.Custom == nil {
		return store.Job{}, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	got := j.jobs[store.ReindexJobID(p.Custom.ID, p.Custom.Version)]
	if got == nil {
		return store.Job{ID: store.ReindexJobID(p.Custom.ID, p.Custom.Version), Code: p.Code, State: store.JobPending}, true
	}
	return *got, got.State != store.JobDone
}

// run works on one job while it holds the lease, batch by batch.
func (j *Jobs) run(ctx context.Context, id string) error {
	now := j.now()
	job, err := j.st.ClaimJob(ctx, id, j.owner, now, now.Add(j.o.Lease))
	if err != nil || job == nil {
		return err
	}
	if j.superseded(job) {
		return j.finish(ctx, job)
	}
	if job.Started.IsZero() {
		job.Started = now.UTC()
		if job.Total, err = j.st.CountCurrent(ctx, job.Types); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		var since time.Time
		if job.Phase == 1 {
			if j.now().Before(job.Created.Add(j.o.Settle)) {
				return j.save(ctx, job) // phase 1 waits for writes in flight
			}
			since = job.Created.Add(-j.o.Settle)
		}
		recs, err := j.st.CurrentAfter(ctx, job.Types, job.After, since, j.o.Batch)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			if job.Phase == 1 {
				return j.finish(ctx, job)
			}
			job.Phase, job.After = 1, ""
			continue
		}
		for _, rec := range recs {
			if err := j.reindex(ctx, rec); err != nil {
				return err
			}
		}
		job.After = store.Key(recs[len(recs)-1].Type, recs[len(recs)-1].ID)
		if job.Phase == 0 {
			job.Done += int64(len(recs))
			j.metrics.ReindexedResources(len(recs))
		}
		if err := j.save(ctx, job); err != nil {
			return err
		}
		if job.Owner != j.owner {
			return nil // lost the lease
		}
	}
	return ctx.Err()
}

// superseded reports whether a later version of the job's SearchParameter
// exists: that version's job reindexes with the current definition.
func (j *Jobs) superseded(job *store.Job) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	v, ok := j.versions[job.Param]
	return ok && v > job.Version
}

// reindex recomputes one resource's entries with the current registry.
func (j *Jobs) reindex(ctx context.Context, rec *store.Record) error {
	if rec.Deleted {
		return nil
	}
	res, err := fhir.ParseResource([]byte(rec.Raw))
	if err != nil {
		return fmt.Errorf("reindex %s/%s: %w", rec.Type, rec.ID, err)
	}
	// A false result means a write replaced the version meanwhile, with
	// entries computed by a registry that already had the parameter.
	_, err = j.st.SetIndex(ctx, rec, search.Index(j.reg, res))
	return err
}

func (j *Jobs) finish(ctx context.Context, job *store.Job) error {
	job.State, job.Finished = store.JobDone, j.now().UTC()
	if job.Started.IsZero() {
		job.Started = job.Finished
	}
	return j.save(ctx, job)
}

// save writes the job's progress and renews its lease; a runner that lost
// the lease gets an empty Owner back.
func (j *Jobs) save(ctx context.Context, job *store.Job) error {
	job.Lease = j.now().Add(j.o.Lease)
	ok, err := j.st.SaveJob(ctx, job)
	if err != nil {
		return err
	}
	if !ok {
		job.Owner = ""
		return nil
	}
	j.mu.Lock()
	cp := *job
	j.jobs[job.ID] = &cp
	j.mu.Unlock()
	j.report()
	return nil
}

// report sets the job gauges.
func (j *Jobs) report() {
	counts := map[string]int{store.JobPending: 0, store.JobRunning: 0, store.JobDone: 0}
	for _, job := range j.List() {
		counts[job.State]++
	}
	for state, n := range counts {
		j.metrics.SetReindexJobs(state, n)
	}
}

func sortJobs(js []store.Job) {
	slices.SortFunc(js, func(a, b store.Job) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
