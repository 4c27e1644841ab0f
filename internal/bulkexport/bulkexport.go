// Package bulkexport runs FHIR Bulk Data exports ($export, Bulk Data
// Access IG v2) in the background.
//
// A job is a document in the exports collection (store.ExportJob), created
// at kick-off with its transaction time. Any service instance may run it,
// one at a time (a lease renewed each batch), resuming from its cursor
// after a crash: it walks the resources of one type after another by id,
// in batches, and appends each batch's NDJSON lines to the export_files
// collection as a chunk. The export is a snapshot as of the transaction
// time: a resource written later is exported as the version current then,
// read back from history. Done jobs, and their files, are removed once
// their retention has passed.
package bulkexport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Options tune the runner; zero values take the defaults.
type Options struct {
	Poll       time.Duration // how often the store is read for jobs (1 s)
	Lease      time.Duration // how long a claimed job stays held without progress (30 s)
	Batch      int           // resources read per store query (500)
	ChunkBytes int           // the size a chunk is closed at (1 MiB); a larger resource gets a chunk of its own
	// Settle is how long after its transaction time a job starts (2 s): a
	// write that took its lastUpdated before then and is still committing
	// is included if it commits within that time.
	Settle time.Duration
	// Pause is the least time between two batches (20 ms). The runner
	// also waits as long as the last batch took, so that an export takes
	// at most about half of the store's time: the embedded store has one
	// connection and scans a collection for each batch.
	Pause time.Duration
	// Retention is how long the files of a done job are kept (24 h).
	Retention time.Duration
	// Disclosure withholds sensitive resources the job's recipient may
	// not see (default: the policy over the store, with the built-in
	// search parameters, which are all it reads).
	Disclosure *disclosure.Policy
}

// Runner creates and runs export jobs.
type Runner struct {
	st    *store.Store
	log   *slog.Logger
	o     Options
	owner string // this runner's lease owner id
	now   func() time.Time
}

// New returns the export runner of st.
func New(st *store.Store, log *slog.Logger, o Options) *Runner {
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.Lease == 0 {
		o.Lease = 30 * time.Second
	}
	if o.Batch == 0 {
		o.Batch = 500
	}
	if o.ChunkBytes == 0 {
		o.ChunkBytes = 1 << 20
	}
	if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	if o.Pause == 0 {
		o.Pause = 20 * time.Millisecond
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.Disclosure == nil {
		o.Disclosure = disclosure.New(st, fhir.NewRegistry(), time.Now)
	}
	return &Runner{st: st, log: log, o: o, owner: randomID(8), now: time.Now}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Request is a validated kick-off.
type Request struct {
	Level string // store.ExportSystem, ExportPatient or ExportGroup
	Group string // the Group id of a group export
	// Patients restrict a patient export to these Patient ids (the POST
	// patient parameter); empty: every patient.
	Patients []string
	Types    []string  // empty: every type (in the Patient compartment below system level)
	Since    time.Time // zero: none
	URL      string    // the kick-off request, for the manifest
	// Requester names the principal kicking the job off (issuer, subject
	// and client of its token; empty without authentication).
	Requester string
	// Recipient is whom the export discloses to: the kick-off's principal.
	Recipient disclosure.Recipient
}

// InPatientCompartment reports whether resources of typ can be in a
// Patient's compartment, i.e. exported at patient and group level.
func InPatientCompartment(typ string) bool {
	return typ == "Patient" || len(fhir.CompartmentParams("Patient", typ)) > 0
}

// Kickoff creates the job of req, as of now. A group export reads the
// Group's Patient members now (404 or 410 when it is missing or deleted).
func (r *Runner) Kickoff(ctx context.Context, req Request) (*store.ExportJob, error) {
	now := r.now().UTC().Truncate(time.Millisecond) // the store keeps milliseconds
	job := &store.ExportJob{
		ID: randomID(16), Level: req.Level, Patients: req.Patients, Types: req.Types, Since: req.Since,
		Request: req.URL, Requester: req.Requester, TransactionTime: now, Created: now,
		Recipient: store.ExportRecipient{Unrestricted: req.Recipient.Unrestricted, Actors: req.Recipient.Actors,
			ClientID: req.Recipient.ClientID, Purposes: req.Recipient.Purposes},
	}
	if req.Level == store.ExportGroup {
		rec, err := r.st.Current(ctx, "Group", req.Group)
		if err != nil {
			return nil, err
		}
		if rec.Deleted {
			return nil, fault.New(fault.Gone, "", "Group/%s is deleted", req.Group)
		}
		if job.Patients, err = members(rec.Raw); err != nil {
			return nil, err
		}
	}
	if err := r.st.CreateExport(ctx, job); err != nil {
		return nil, err
	}
	r.log.Info("export job created", "job", job.ID, "export_level", job.Level, "types", len(job.Types))
	return job, nil
}

// members returns the ids of the Patients a stored Group lists as active
// members, sorted, once each.
func members(raw string) ([]string, error) {
	var g struct {
		Member []struct {
			Entity   struct{ Reference string }
			Inactive bool
		}
	}
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return nil, fault.Wrap(err, "read Group members")
	}
	var ids []string
	for _, m := range g.Member {
		if m.Inactive {
			continue
		}
		if id, ok := PatientID(m.Entity.Reference); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// PatientID is the id of a reference to a Patient (Patient/1, or an
// absolute URL ending in Patient/1); ok is false for anything else.
func PatientID(ref string) (string, bool) {
	parts := strings.Split(ref, "/")
	if len(parts) < 2 || parts[len(parts)-2] != "Patient" || !fhir.ValidID(parts[len(parts)-1]) {
		return "", false
	}
	return parts[len(parts)-1], true
}

// Run works on the jobs every Poll until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(r.o.Poll)
	defer t.Stop()
	for {
		if err := r.Step(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("export", "error", fault.As(err).Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step removes the expired jobs and works on each unfinished job whose
// settle time has passed and that this runner can claim.
func (r *Runner) Step(ctx context.Context) error {
	jobs, err := r.st.Exports(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	for _, j := range jobs {
		switch {
		case j.State == store.JobDone && now.After(j.Expires):
			if _, err := r.st.DeleteExport(ctx, j.ID); err != nil {
				return err
			}
			r.log.Info("export job expired", "job", j.ID)
		case j.State != store.JobDone && !now.Before(j.TransactionTime.Add(r.o.Settle)):
			if err := r.run(ctx, j.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// run works on one job while it holds the lease, batch by batch.
func (r *Runner) run(ctx context.Context, id string) error {
	now := r.now()
	job, err := r.st.ClaimExport(ctx, id, r.owner, now, now.Add(r.o.Lease))
	if err != nil || job == nil {
		return err
	}
	if job.Started.IsZero() {
		job.Started = now.UTC()
		if job.Plan, err = r.plan(ctx, job); err != nil {
			return err
		}
	}
	for job.Step < len(job.Plan) {
		start := r.now()
		if err := r.batch(ctx, job); err != nil {
			return err
		}
		if ok, err := r.save(ctx, job); err != nil || !ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(r.o.Pause, r.now().Sub(start))):
		}
	}
	job.State, job.Finished = store.JobDone, r.now().UTC()
	job.Expires = job.Finished.Add(r.o.Retention)
	if ok, err := r.save(ctx, job); err != nil || !ok {
		return err
	}
	r.log.Info("export job done", "job", job.ID, "files", len(job.Files), "chunks", job.Chunks)
	return nil
}

// plan is the types a job exports, in order: those asked for, else those
// with resources; below system level only those of the Patient
// compartment. A group without Patient members exports nothing.
func (r *Runner) plan(ctx context.Context, job *store.ExportJob) ([]string, error) {
	if job.Level == store.ExportGroup && len(job.Patients) == 0 {
		return []string{}, nil
	}
	types := slices.Clone(job.Types)
	if len(types) == 0 {
		var err error
		if types, err = r.st.Types(ctx); err != nil {
			return nil, err
		}
	}
	if job.Level != store.ExportSystem {
		types = slices.DeleteFunc(types, func(t string) bool { return !InPatientCompartment(t) })
	}
	slices.Sort(types)
	return slices.Compact(types), nil
}

// batch exports the next resources of the job's current type into chunks
// and moves its cursor; the caller saves it.
func (r *Runner) batch(ctx context.Context, job *store.ExportJob) error {
	typ := job.Plan[job.Step]
	if len(job.Files) == job.Step {
		job.Files = append(job.Files, store.ExportFile{Type: typ, First: job.Chunks, Last: job.Chunks})
	}
	f := &job.Files[job.Step]
	recs, more, err := r.st.Search(ctx, query(job, typ, r.o.Batch))
	if err != nil {
		return err
	}
	rc := job.Recipient
	scope := r.o.Disclosure.Scope(disclosure.Recipient{Unrestricted: rc.Unrestricted, Actors: rc.Actors, ClientID: rc.ClientID, Purposes: rc.Purposes})
	var buf []byte
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := r.st.PutChunk(ctx, job.ID, job.Chunks, buf); err != nil {
			return err
		}
		job.Chunks++
		f.Last = job.Chunks
		buf = buf[:0]
		return nil
	}
	for _, rec := range recs {
		v, err := r.asOf(ctx, rec, job.TransactionTime)
		if err != nil {
			return err
		}
		if v == nil || v.Deleted || (!job.Since.IsZero() && !v.LastUpdated.After(job.Since)) {
			continue
		}
		// The version exported is judged, against the Consents of now.
		if ok, err := scope.Allows(ctx, v.Type, v.ID, v.Raw); err != nil {
			return err
		} else if !ok {
			f.Withheld++
			continue
		}
		if len(buf) > 0 && len(buf)+len(v.Raw)+1 > r.o.ChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		buf = append(append(buf, v.Raw...), '\n')
		f.Count++
	}
	if err := flush(); err != nil {
		return err
	}
	if more {
		job.After = recs[len(recs)-1].ID
	} else {
		job.Step, job.After = job.Step+1, ""
	}
	return nil
}

// query is the next batch of a job's resources of typ, by id after its
// cursor, tombstones included.
func query(job *store.ExportJob, typ string, limit int) *store.Query {
	q := &store.Query{Type: typ, Sort: []store.Sort{{Field: "rid"}}, Limit: limit, Tombstones: true}
	if cond, ok := scope(job, typ); ok {
		q.And = append(q.And, cond)
	}
	if !job.Since.IsZero() {
		// The current version is at least as recent as the one exported:
		// a sound pre-filter, the exact test is in batch.
		q.And = append(q.And, store.Cond{Field: "ts", From: job.Since})
	}
	if job.After != "" {
		q.After = []any{job.After}
	}
	return q
}

// scope is the condition that keeps a job's resources of typ: none at
// system level; below, being in the compartment of one of its patients,
// or of any Patient when it names none.
func scope(job *store.ExportJob, typ string) (store.Cond, bool) {
	switch {
	case job.Level == store.ExportSystem:
		return store.Cond{}, false
	case len(job.Patients) > 0:
		return search.CompartmentCond("Patient", typ, job.Patients)
	case typ == "Patient":
		return store.Cond{}, false
	}
	var prefixes []string
	for _, code := range fhir.CompartmentParams("Patient", typ) {
		prefixes = append(prefixes, code+":Patient/")
	}
	return store.Cond{Field: "ref", Prefix: prefixes}, true
}

// asOf returns the version of rec's resource that was current at t (nil
// when it was created later), walking back its history by _id.
func (r *Runner) asOf(ctx context.Context, rec *store.Record, t time.Time) (*store.Record, error) {
	v := rec
	for v.LastUpdated.After(t) {
		if v.VersionID <= 1 {
			return nil, nil
		}
		prev, err := r.st.Version(ctx, v.Type, v.ID, v.VersionID-1)
		if err != nil {
			return nil, err
		}
		v = prev
	}
	return v, nil
}

// save writes the job's progress and renews its lease. It reports false
// when the runner must stop: another runner took the job over, or it was
// deleted (cancelled), in which case the chunks written since are removed.
func (r *Runner) save(ctx context.Context, job *store.ExportJob) (bool, error) {
	job.Lease = r.now().Add(r.o.Lease)
	ok, err := r.st.SaveExport(ctx, job)
	if err != nil || ok {
		return ok, err
	}
	if _, err := r.st.Export(ctx, job.ID); fault.Is(err, fault.NotFound) {
		r.log.Info("export job cancelled", "job", job.ID)
		return false, r.st.DeleteChunks(ctx, job.ID, job.Chunks)
	} else if err != nil {
		return false, err
	}
	return false, nil
}

// Progress describes a job's progress for X-Progress.
func Progress(job *store.ExportJob) string {
	if job.State == store.JobPending || job.Started.IsZero() {
		return "waiting to start"
	}
	var n int64
	for _, f := range job.Files {
		n += f.Count
	}
	if job.Step >= len(job.Plan) {
		return fmt.Sprintf("%d resources exported, finishing", n)
	}
	return fmt.Sprintf("exporting %s (type %d of %d), %d resources so far", job.Plan[job.Step], job.Step+1, len(job.Plan), n)
}

// Job returns an export job (a fault.NotFound error when there is none).
func (r *Runner) Job(ctx context.Context, id string) (*store.ExportJob, error) {
	return r.st.Export(ctx, id)
}

// Chunk returns chunk n of a job's output.
func (r *Runner) Chunk(ctx context.Context, job string, n int64) ([]byte, error) {
	return r.st.Chunk(ctx, job, n)
}

// Cancel deletes a job and its files; a runner working on it notices at
// its next save and removes what it wrote since. A fault.NotFound error
// when there is no such job.
func (r *Runner) Cancel(ctx context.Context, id string) error {
	job, err := r.st.DeleteExport(ctx, id)
	if err != nil {
		return err
	}
	if job == nil {
		return fault.New(fault.NotFound, "", "there is no export job %s", id)
	}
	r.log.Info("export job deleted", "job", id)
	return nil
}
