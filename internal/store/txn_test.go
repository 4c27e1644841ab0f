package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// txnRecs are n new Patients t0..tn-1 (the last one updates p1 to version 2
// when update is set), each with one search entry.
func txnRecs(n int, update bool) []*store.Record {
	now := time.Now().UTC().Truncate(time.Millisecond)
	var recs []*store.Record
	for i := range n {
		id := fmt.Sprintf("t%d", i)
		recs = append(recs, &store.Record{Type: "Patient", ID: id, VersionID: 1, LastUpdated: now, Method: "POST",
			Raw: `{"resourceType":"Patient","id":"` + id + `"}`, Index: &store.Index{Token: []string{"identifier=" + id}}})
	}
	if update {
		recs[n-1] = &store.Record{Type: "Patient", ID: "p1", VersionID: 2, LastUpdated: now, Method: "PUT", Raw: `{"v":2}`,
			Index: &store.Index{Token: []string{"identifier=p1v2"}}}
	}
	return recs
}

// visibleState is what readers see of the transaction's resources: the
// current versions, the versions, and the change log.
type visibleState struct {
	Current, Versions, Changes []string
}

func observe(t *testing.T, s *store.Store, recs []*store.Record) visibleState {
	t.Helper()
	ctx := context.Background()
	var v visibleState
	for _, r := range recs {
		if c, err := s.Current(ctx, r.Type, r.ID); err == nil && c.VersionID == r.VersionID {
			v.Current = append(v.Current, r.ID)
		}
		if _, err := s.Version(ctx, r.Type, r.ID, r.VersionID); err == nil {
			v.Versions = append(v.Versions, r.ID)
		} else if !fault.Is(err, fault.NotFound) {
			t.Fatal(err)
		}
	}
	changes, _, err := s.Changes(ctx, 0, 1000, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.ID != "p1" || c.VersionID > 1 {
			v.Changes = append(v.Changes, c.ID)
		}
	}
	return v
}

func ids(recs []*store.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

var none = visibleState{}

func all(recs []*store.Record) visibleState {
	return visibleState{Current: ids(recs), Versions: ids(recs), Changes: ids(recs)}
}

// txnStages are the stages of a transaction and whether it is visible
// when it stops after each.
var txnStages = []struct {
	stage   string
	visible bool
}{
	{store.StageSequence, false},
	{store.StageIntent, false},
	{store.StageHistory, false},
	{store.StageCommit, true},
	{store.StageProject, true},
}

// A store error at any stage before the commit point leaves nothing
// visible, and the change log moves on past the transaction's numbers;
// after the commit point the transaction is whole.
func TestTxnStoreErrorAtEachStage(t *testing.T) {
	for _, tc := range txnStages {
		t.Run(tc.stage, func(t *testing.T) {
			_, db := storetest.Open(t, nil)
			injected := errors.New("injected store failure")
			s := storetest.OpenWith(t, db, store.Options{TxnHook: func(stage string) error {
				if stage == tc.stage {
					return injected
				}
				return nil
			}})
			ctx := context.Background()
			if err := s.Commit(ctx, rec(1, `{"v":1}`)); err != nil {
				t.Fatal(err)
			}
			recs := txnRecs(4, true)
			err := s.CommitTxn(ctx, recs)
			want := none
			if tc.visible {
				if err != nil {
					t.Fatalf("CommitTxn after the commit point = %v, want success", err)
				}
				// A failure after the commit leaves the projection to recovery.
				if err := s.RecoverTxns(ctx); err != nil {
					t.Fatal(err)
				}
				want = all(recs)
			} else if !errors.Is(err, injected) {
				t.Fatalf("CommitTxn = %v, want the injected error", err)
			}
			if diff := cmp.Diff(want, observe(t, s, recs)); diff != "" {
				t.Errorf("visible (-want +got):\n%s", diff)
			}
			// The change log is not stuck: a later write is read.
			if err := s.Commit(ctx, rec(3-boolInt(!tc.visible), `{"v":"later"}`)); err != nil {
				t.Fatal(err)
			}
			changes, _, err := s.Changes(ctx, 1, 1000, time.Now())
			if err != nil || len(changes) == 0 || changes[len(changes)-1].ID != "p1" {
				t.Errorf("the change log does not reach the later write: %v %v", ids(changes), err)
			}
		})
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// A writer that dies at any stage leaves nothing visible before the
// commit point and everything after it once another client recovers.
func TestTxnCrashAndRecovery(t *testing.T) {
	for _, tc := range txnStages {
		t.Run(tc.stage, func(t *testing.T) {
			_, db := storetest.Open(t, nil)
			s := storetest.OpenWith(t, db, store.Options{TxnHook: func(stage string) error {
				if stage == tc.stage {
					return store.ErrSimulatedCrash
				}
				return nil
			}})
			ctx := context.Background()
			if err := s.Commit(ctx, rec(1, `{"v":1}`)); err != nil {
				t.Fatal(err)
			}
			recs := txnRecs(600, true) // two history batches
			if err := s.CommitTxn(ctx, recs); !errors.Is(err, store.ErrSimulatedCrash) {
				t.Fatalf("CommitTxn = %v, want the crash", err)
			}
			if !tc.visible {
				if diff := cmp.Diff(none, observe(t, s, recs)); diff != "" {
					t.Errorf("visible after the crash (-want +got):\n%s", diff)
				}
			}
			// Another instance starts after the deadline and recovers.
			time.Sleep(20 * time.Millisecond)
			var indexed int
			s2 := storetest.OpenWith(t, db, store.Options{TxnDeadline: 10 * time.Millisecond,
				Indexer: func(r *store.Record) *store.Index { indexed++; return r.Index }})
			if err := s2.RecoverTxns(ctx); err != nil {
				t.Fatal(err)
			}
			want := none
			if tc.visible {
				want = all(recs)
			}
			if diff := cmp.Diff(want, observe(t, s2, recs)); diff != "" {
				t.Errorf("visible after recovery (-want +got):\n%s", diff)
			}
			// Rolled forward with search entries (by Open's repair and RecoverTxns).
			if tc.stage == store.StageCommit && indexed < len(recs) {
				t.Errorf("recovery indexed %d versions, want %d", indexed, len(recs))
			}
			// Nothing is left to recover, and the change log is not stuck.
			if err := s2.Commit(ctx, rec(2+boolInt(tc.visible), `{"v":"later"}`)); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if tc.stage == store.StageSequence {
				// Died before its intent: a plain gap, skipped once old.
				now = now.Add(store.GapGrace + time.Second)
			}
			changes, _, err := s2.Changes(ctx, 1, 1000, now)
			if err != nil || len(changes) == 0 || changes[len(changes)-1].ID != "p1" {
				t.Errorf("the change log does not reach the later write: %v", err)
			}
		})
	}
}

// A transaction that loses one version to another writer stores nothing.
func TestTxnVersionTaken(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	recs := txnRecs(5, false)
	taken := *recs[3]
	if err := s.Commit(ctx, &taken); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitTxn(ctx, recs); !errors.Is(err, store.ErrVersionTaken) {
		t.Fatalf("CommitTxn = %v, want ErrVersionTaken", err)
	}
	got := observe(t, s, recs)
	want := visibleState{Current: []string{"t3"}, Versions: []string{"t3"}, Changes: []string{"t3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("visible (-want +got):\n%s", diff)
	}
}

// A pending transaction of a live writer is not aborted by recovery
// before its deadline, and readers stop at it in the change log.
func TestTxnPendingIsInvisibleAndKept(t *testing.T) {
	_, db := storetest.Open(t, nil)
	release := make(chan struct{})
	reached := make(chan struct{})
	s := storetest.OpenWith(t, db, store.Options{TxnHook: func(stage string) error {
		if stage == store.StageHistory {
			close(reached)
			<-release
		}
		return nil
	}})
	ctx := context.Background()
	recs := txnRecs(3, false)
	done := make(chan error)
	go func() { done <- s.CommitTxn(ctx, recs) }()
	<-reached
	other := storetest.OpenWith(t, db, store.Options{TxnDeadline: time.Hour})
	if err := other.RecoverTxns(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(none, observe(t, other, recs)); diff != "" {
		t.Errorf("visible while pending (-want +got):\n%s", diff)
	}
	hist, _, err := other.History(ctx, store.HistoryQuery{Count: 10})
	if err != nil || len(hist) != 0 {
		t.Errorf("history while pending = %d versions, %v", len(hist), err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all(recs), observe(t, other, recs)); diff != "" {
		t.Errorf("visible after the commit (-want +got):\n%s", diff)
	}
}
