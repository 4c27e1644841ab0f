package reindex

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const eyeParam = `{"resourceType":"SearchParameter","url":"http://example.org/sp/eye","name":"EyeColour","status":"active",
 "description":"eye colour","code":"eye-colour","base":["Patient"],"type":"token",
 "expression":"Patient.extension.where(url='http://example.org/eye-colour').value"}`

func patient(colour string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","extension":[{"url":"http://example.org/eye-colour","valueCode":%q}]}`, colour)
}

func parse(t *testing.T, body string) *fhir.Resource {
	t.Helper()
	res, err := fhir.ParseResource([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func newJobs(st *store.Store, reg *fhir.Registry) *Jobs {
	return New(st, reg, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Options{Lease: time.Minute, Settle: time.Millisecond, Batch: 3})
}

// find returns the ids of the Patients with eye-colour=colour, sorted.
func find(t *testing.T, st *store.Store, reg *fhir.Registry, colour string) []string {
	t.Helper()
	req, err := search.Parse(reg, "Patient", url.Values{"eye-colour": {colour}}, false)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := st.Search(context.Background(), &store.Query{Type: "Patient", And: req.Conds, Sort: req.Sort, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	return ids
}

// TestJobResumesAfterCrash runs a job in a runner that dies after a few
// batches, checks that no other runner takes it while its lease holds,
// and lets a second runner on another registry finish it from the cursor.
func TestJobResumesAfterCrash(t *testing.T) {
	st, db := storetest.Open(t, nil)
	ctx := context.Background()
	regA := fhir.NewRegistry()
	svc := resource.New(st, regA, time.Now)
	var blue []string
	for i := range 14 {
		colour := "brown"
		if i%2 == 0 {
			colour = "blue"
		}
		out, err := svc.Create(ctx, parse(t, patient(colour)))
		if err != nil {
			t.Fatal(err)
		}
		if colour == "blue" {
			blue = append(blue, out.Record.ID)
		}
	}
	sort.Strings(blue)
	sp, err := svc.Create(ctx, parse(t, eyeParam))
	if err != nil {
		t.Fatal(err)
	}
	if got := find(t, st, regA, "blue"); len(got) != 0 {
		t.Fatalf("found %v before the reindex", got)
	}

	// Runner A dies while saving its third batch: two batches are saved,
	// the third is indexed but its progress is lost.
	a := newJobs(st, regA)
	actx, crash := context.WithCancel(ctx)
	saves := 0
	a.now = func() time.Time {
		if a.jobs[store.ReindexJobID(sp.Record.ID, 1)] != nil {
			if saves++; saves == 4 { // the claim, two saves, then the third
				crash()
			}
		}
		return time.Now()
	}
	if err := a.Step(actx); err == nil {
		t.Fatal("runner A did not notice the crash")
	}
	job := storedJob(t, st, sp.Record.ID)
	if job.State != store.JobRunning || job.Done != 6 || job.Total != 14 || job.Owner != a.owner {
		t.Fatalf("after the crash: %+v, want running, 6 of 14 done, owned by A", job)
	}

	// Runner B, another instance, cannot take it while A's lease holds.
	stB := storetest.OpenDatabase(t, db, nil)
	regB := fhir.NewRegistry()
	b := newJobs(stB, regB)
	if err := b.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedJob(t, st, sp.Record.ID); got.Owner != a.owner || got.Done != 6 {
		t.Fatalf("B ran a job A holds: %+v", got)
	}
	if regB.Lookup("Patient", "eye-colour") == nil {
		t.Fatal("B did not load the custom parameter")
	}

	// Once the lease expired, B resumes from A's cursor and finishes.
	b.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if err := b.Step(ctx); err != nil {
		t.Fatal(err)
	}
	job = storedJob(t, st, sp.Record.ID)
	if job.State != store.JobDone || job.Done != job.Total || job.Owner != b.owner || job.Finished.IsZero() {
		t.Fatalf("after B: %+v, want done with every resource counted once", job)
	}
	if diff := cmp.Diff(blue, find(t, stB, regB, "blue")); diff != "" {
		t.Errorf("eye-colour=blue (-want +got):\n%s", diff)
	}
	if _, unfinished := b.Unfinished(regB.Lookup("Patient", "eye-colour")); unfinished {
		t.Error("B still reports the job unfinished")
	}
}

// TestSetIndexKeepsNewerVersion checks that the reindex of a version never
// overwrites the entries of a version written meanwhile.
func TestSetIndexKeepsNewerVersion(t *testing.T) {
	st, _ := storetest.Open(t, nil)
	ctx := context.Background()
	reg := fhir.NewRegistry()
	svc := resource.New(st, reg, time.Now)
	if _, err := svc.Create(ctx, parse(t, eyeParam)); err != nil {
		t.Fatal(err)
	}
	out, err := svc.Create(ctx, parse(t, patient("green")))
	if err != nil {
		t.Fatal(err)
	}
	v1 := out.Record
	res := parse(t, patient("blue"))
	res.SetID(v1.ID)
	if _, err := svc.Update(ctx, "Patient", v1.ID, res, nil); err != nil {
		t.Fatal(err)
	}
	ok, err := st.SetIndex(ctx, v1, &store.Index{})
	if err != nil || ok {
		t.Fatalf("SetIndex of a replaced version = %v, %v; want false", ok, err)
	}
	if diff := cmp.Diff([]string{v1.ID}, find(t, st, reg, "blue")); diff != "" {
		t.Errorf("the newer version's entries were lost (-want +got):\n%s", diff)
	}
}

func storedJob(t *testing.T, st *store.Store, param string) store.Job {
	t.Helper()
	jobs, err := st.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Param == param {
			return j
		}
	}
	t.Fatalf("no job for SearchParameter/%s in %+v", param, jobs)
	return store.Job{}
}

// Refresh reads the SearchParameters (a collection scan on the embedded
// store) only when a new job says one changed, or every Rescan.
func TestRefreshScansOnlyWhenJobsChange(t *testing.T) {
	counter := &metrics.CommandCounter{}
	st, _ := storetest.Open(t, counter.Monitor())
	ctx := context.Background()
	reg := fhir.NewRegistry()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j := New(st, reg, metrics.New(prometheus.NewRegistry()), slog.New(slog.NewJSONHandler(io.Discard, nil)), Options{Rescan: time.Minute})
	j.now = func() time.Time { return now }
	finds := func() int {
		t.Helper()
		if err := j.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return counter.Take()["find"]
	}
	if got := finds(); got <= 1 {
		t.Errorf("first refresh: %d finds, want the SearchParameters read too", got)
	}
	if got := finds(); got != 1 {
		t.Errorf("refresh without changes: %d finds, want 1 (the jobs)", got)
	}
	// Another instance defines a parameter: its write creates a job.
	other := resource.New(st, fhir.NewRegistry(), time.Now)
	if _, err := other.Create(ctx, parse(t, eyeParam)); err != nil {
		t.Fatal(err)
	}
	counter.Take()
	if got := finds(); got <= 1 {
		t.Errorf("refresh after a new job: %d finds, want the SearchParameters read too", got)
	}
	if reg.Lookup("Patient", "eye-colour") == nil {
		t.Error("the new parameter was not loaded")
	}
	if got := finds(); got != 1 {
		t.Errorf("refresh without changes: %d finds, want 1", got)
	}
	now = now.Add(time.Minute)
	if got := finds(); got <= 1 {
		t.Errorf("refresh after Rescan: %d finds, want the SearchParameters read too", got)
	}
}
