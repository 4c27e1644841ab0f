package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func recOf(id string, vid int64, raw string) *store.Record {
	r := rec(vid, raw)
	r.ID = id
	return r
}

// commandNames records the commands sent after it is armed.
type commandNames struct {
	mu    sync.Mutex
	on    bool
	names []string
}

func (c *commandNames) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.on {
			c.names = append(c.names, e.CommandName)
		}
	}}
}

func (c *commandNames) arm() { c.mu.Lock(); c.on, c.names = true, nil; c.mu.Unlock() }

func (c *commandNames) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	return c.names
}

func TestCommitMany(t *testing.T) {
	var cmds commandNames
	s, _ := storetest.Open(t, cmds.monitor())
	ctx := context.Background()

	// A batch of new resources: one sequence block, one history insert,
	// one projection insert. The second p1 v1 loses to the first.
	cmds.arm()
	errs, err := s.CommitMany(ctx, []*store.Record{recOf("p1", 1, `{"a":1}`), recOf("p2", 1, `{"b":1}`), recOf("p1", 1, `{"a":"dup"}`)})
	if err != nil {
		t.Fatal(err)
	}
	got := cmds.take()
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], store.ErrVersionTaken) {
		t.Fatalf("errors %v, want nil, nil, ErrVersionTaken", errs)
	}
	// The lost record fills its sequence number and reads the winner back
	// (find, then an insert of the projection that is already there).
	want := []string{"findAndModify", "insert", "insert", "find", "insert", "insert"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}

	// New versions and new resources together; tombstones too.
	del := recOf("p2", 2, "")
	del.Deleted, del.Method = true, "DELETE"
	errs, err = s.CommitMany(ctx, []*store.Record{recOf("p1", 2, `{"a":2}`), del, recOf("p3", 1, `{"c":1}`)})
	if err != nil || errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("second batch: %v %v", errs, err)
	}
	cur, err := s.CurrentMany(ctx, []string{"Patient/p1", "Patient/p2", "Patient/p3", "Patient/none"})
	if err != nil {
		t.Fatal(err)
	}
	summary := map[string]string{}
	for k, r := range cur {
		summary[k] = r.Raw
		if r.Deleted {
			summary[k] = "deleted"
		}
	}
	if d := cmp.Diff(map[string]string{"Patient/p1": `{"a":2}`, "Patient/p2": "deleted", "Patient/p3": `{"c":1}`}, summary); d != "" {
		t.Errorf("current (-want +got):\n%s", d)
	}

	// The change log has no gap: the lost record's number was filled.
	changes, next, err := s.Changes(ctx, 0, 100, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 5 || next != 6 {
		t.Errorf("change log: %d changes up to %d, want 5 up to 6", len(changes), next)
	}
}
