package store_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func rec(vid int64, raw string) *store.Record {
	return &store.Record{Type: "Patient", ID: "p1", VersionID: vid, LastUpdated: time.Now().UTC().Truncate(time.Millisecond), Method: "PUT", Raw: raw}
}

func TestCommitAndRead(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	if _, err := s.Current(ctx, "Patient", "p1"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Current of unknown = %v, want NotFound", err)
	}
	for v := int64(1); v <= 3; v++ {
		if err := s.Commit(ctx, rec(v, `{"v":`+string(rune('0'+v))+`}`)); err != nil {
			t.Fatalf("commit v%d: %v", v, err)
		}
	}
	cur, err := s.Current(ctx, "Patient", "p1")
	if err != nil || cur.VersionID != 3 || cur.Raw != `{"v":3}` {
		t.Fatalf("Current = %+v, %v", cur, err)
	}
	v2, err := s.Version(ctx, "Patient", "p1", 2)
	if err != nil || v2.Raw != `{"v":2}` {
		t.Fatalf("Version 2 = %+v, %v", v2, err)
	}
	if err := s.Commit(ctx, rec(3, `{"v":"again"}`)); !errors.Is(err, store.ErrVersionTaken) {
		t.Fatalf("recommit v3 = %v, want ErrVersionTaken", err)
	}
	if cur, _ := s.Current(ctx, "Patient", "p1"); cur.Raw != `{"v":3}` {
		t.Fatalf("lost race changed current: %s", cur.Raw)
	}
}

// A writer that inserted its history version and died before updating the
// current projection is rolled forward by the next writer that loses to it.
func TestCommitRollsForwardACrashedWriter(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	if err := s.Commit(ctx, rec(1, `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	store.CrashAfterHistory(t, s, rec(2, `{"v":2}`))
	if cur, _ := s.Current(ctx, "Patient", "p1"); cur.VersionID != 1 {
		t.Fatalf("setup: current is v%d", cur.VersionID)
	}
	if err := s.Commit(ctx, rec(2, `{"v":"late"}`)); !errors.Is(err, store.ErrVersionTaken) {
		t.Fatalf("commit = %v, want ErrVersionTaken", err)
	}
	if cur, _ := s.Current(ctx, "Patient", "p1"); cur.VersionID != 2 || cur.Raw != `{"v":2}` {
		t.Fatalf("current after roll forward = %+v", cur)
	}
}

// A version whose writer died before projecting it becomes current when the
// store is next opened, even if no one writes the resource again.
func TestOpenRepairsProjections(t *testing.T) {
	uri, emb := storetest.URI(t)
	db := storetest.Database()
	ctx := context.Background()
	open := func() *store.Store {
		s, err := store.Open(ctx, store.Options{URI: uri, Database: db, Embedded: emb})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	t.Cleanup(func() { _ = s.Drop(ctx); _ = s.Close(ctx) })
	if err := s.Commit(ctx, rec(1, `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	store.CrashAfterHistory(t, s, rec(2, `{"v":2}`))
	store.CrashAfterHistory(t, s, rec(3, `{"v":3}`))
	again := open()
	defer again.Close(ctx)
	if cur, err := again.Current(ctx, "Patient", "p1"); err != nil || cur.VersionID != 3 || cur.Raw != `{"v":3}` {
		t.Fatalf("current after reopen = %+v, %v; want version 3", cur, err)
	}
}

func TestConcurrentCommitsOneWinnerPerVersion(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	const writers = 20
	var wg sync.WaitGroup
	wins := make(chan int, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := s.Commit(ctx, rec(1, `{}`))
			if err == nil {
				wins <- i
			} else if !errors.Is(err, store.ErrVersionTaken) {
				t.Errorf("writer %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d writers won version 1, want 1", n)
	}
	// Every burned sequence number is filled, so the log has no gap to wait for.
	changes, next, err := s.Changes(ctx, 0, 100, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || next != writers {
		t.Fatalf("changes = %d, cursor %d; want 1 change, cursor %d", len(changes), next, writers)
	}
}

func TestChangesStopAtAGapUntilItIsOld(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	store.BurnSeq(t, s) // seq 1: allocated by a writer still in flight
	if err := s.Commit(ctx, rec(1, `{}`)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, next, err := s.Changes(ctx, 0, 10, now)
	if err != nil || len(got) != 0 || next != 0 {
		t.Fatalf("with a fresh gap: %d changes, cursor %d, %v; want none", len(got), next, err)
	}
	got, next, err = s.Changes(ctx, 0, 10, now.Add(store.GapGrace+time.Second))
	if err != nil || len(got) != 1 || next != 2 {
		t.Fatalf("with an old gap: %d changes, cursor %d, %v; want 1, 2", len(got), next, err)
	}
}

func TestHistoryPages(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	for v := int64(1); v <= 5; v++ {
		if err := s.Commit(ctx, rec(v, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []int64
	q := store.HistoryQuery{Type: "Patient", ID: "p1", Count: 2}
	for {
		page, more, err := s.History(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seen = append(seen, r.VersionID)
		}
		if !more {
			break
		}
		q.Before = page[len(page)-1].Seq
	}
	want := []int64{5, 4, 3, 2, 1}
	if len(seen) != len(want) {
		t.Fatalf("versions %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("versions %v, want %v", seen, want)
		}
	}
}

func TestGuards(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	g := store.Guard{Key: "Patient?identifier=a|1", Target: "Patient/x", Since: time.Now().UTC()}
	if _, ok, err := s.ClaimGuard(ctx, g); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	g2 := g
	g2.Target = "Patient/y"
	held, ok, err := s.ClaimGuard(ctx, g2)
	if ok || err != nil || held.Target != "Patient/x" {
		t.Fatalf("second claim: %+v %v %v", held, ok, err)
	}
	if ok, err := s.TakeOverGuard(ctx, held, g2); !ok || err != nil {
		t.Fatalf("take over: %v %v", ok, err)
	}
	if ok, _ := s.TakeOverGuard(ctx, held, g2); ok {
		t.Fatal("second take over of the same holder succeeded")
	}
	// The holder that was taken over cannot release its successor's guard.
	if err := s.ReleaseGuard(ctx, g); err != nil {
		t.Fatalf("release by the old holder: %v", err)
	}
	if held, ok, _ := s.ClaimGuard(ctx, g); ok || held == nil || held.Target != g2.Target {
		t.Fatalf("after the old holder's release: %+v %v, want the guard of %s", held, ok, g2.Target)
	}
	if err := s.ReleaseGuard(ctx, g2); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, ok, err := s.ClaimGuard(ctx, g); !ok || err != nil {
		t.Fatalf("claim after release: %v %v", ok, err)
	}
}
