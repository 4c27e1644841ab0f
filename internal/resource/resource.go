// Package resource holds the FHIR rules of the versioned resource store:
// version numbers, no-op updates, tombstones, If-Match, and race-free
// conditional create. It speaks FHIR resources and store records; HTTP is
// not its concern.
package resource

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Service applies FHIR interactions to the store.
type Service struct {
	store *store.Store
	reg   *fhir.Registry // the search parameters; custom ones change with SearchParameter writes
	now   func() time.Time
	locks keyedMutex
	// keeper, when set, adds its companions to every unit (WithKeeper).
	keeper Keeper
	// GuardWait bounds how long a conditional create waits for a competing
	// creator with the same criteria to commit.
	guardWait time.Duration
}

// New returns a Service on st that indexes with reg. now is the clock (UTC
// is applied here).
func New(st *store.Store, reg *fhir.Registry, now func() time.Time) *Service {
	return &Service{store: st, reg: reg, now: now, guardWait: 10 * time.Second}
}

// Outcome of a write.
type Outcome struct {
	Record  *store.Record
	Created bool // a new resource (201), not a new version of one
	NoOp    bool // nothing was written: identical content, or an existing match
}

// maxAttempts bounds retries of a write that keeps losing version races to
// writers in other service instances (in one instance, writes to one
// resource queue on a lock instead).
const maxAttempts = 100

// Read returns the current version; a tombstone gives fault.Gone.
func (s *Service) Read(ctx context.Context, typ, id string) (*store.Record, error) {
	r, err := s.store.Current(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	trace(ctx, r)
	if r.Deleted {
		return r, gone(r)
	}
	return r, nil
}

// VRead returns one version; a deleted version gives fault.Gone.
func (s *Service) VRead(ctx context.Context, typ, id string, vid int64) (*store.Record, error) {
	r, err := s.store.Version(ctx, typ, id, vid)
	if err != nil {
		return nil, err
	}
	if r.Deleted {
		return r, gone(r)
	}
	return r, nil
}

func gone(r *store.Record) error {
	return fault.New(fault.Gone, "", "%s/%s was deleted (version %d)", r.Type, r.ID, r.VersionID)
}

// Create stores res under a new server-assigned id. The client's id, if
// any, is ignored as the spec requires.
func (s *Service) Create(ctx context.Context, res *fhir.Resource) (*Outcome, error) {
	return s.create(ctx, res.Type(), NewID(), res)
}

// create writes version 1 of a fresh server-assigned id. Such an id cannot
// exist yet, so the first attempt skips reading it.
func (s *Service) create(ctx context.Context, typ, id string, res *fhir.Resource) (*Outcome, error) {
	return s.write(ctx, typ, id, res, "POST", nil, true)
}

// Update stores res as the next version of typ/id, creating it if needed
// (update-as-create). ifMatch, when not nil, is the version the client
// expects to replace.
func (s *Service) Update(ctx context.Context, typ, id string, res *fhir.Resource, ifMatch *int64) (*Outcome, error) {
	if err := checkBodyID(typ, id, res); err != nil {
		return nil, err
	}
	return s.put(ctx, typ, id, res, "PUT", ifMatch)
}

// Patch applies p to the current version of typ/id and stores the result
// through the update path (If-Match, versioning, no-op detection as for
// PUT; the version's method is PATCH). A missing resource is 404, a deleted
// one 410: a patch needs something to apply to. When another writer changes
// the resource between the read and the write, the patch is applied again
// to the new version, unless the client named the version with If-Match.
func (s *Service) Patch(ctx context.Context, typ, id string, p fhir.Patch, ifMatch *int64) (*Outcome, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		cur, err := s.Read(ctx, typ, id)
		if err != nil {
			return nil, err
		}
		if err := checkIfMatch(typ, id, cur, ifMatch); err != nil {
			return nil, err
		}
		res, err := fhir.ApplyPatch([]byte(cur.Raw), p)
		if err != nil {
			return nil, err
		}
		out, err := s.put(ctx, typ, id, res, "PATCH", &cur.VersionID)
		if ifMatch == nil && fault.Is(err, fault.PreconditionFailed) {
			if err := backoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		}
		return out, err
	}
	return nil, fault.New(fault.Conflict, "", "%s/%s is being changed by too many writers; try again", typ, id)
}

// Delete writes a tombstone. Deleting a missing or deleted resource is a
// successful no-op.
func (s *Service) Delete(ctx context.Context, typ, id string, ifMatch *int64) (*Outcome, error) {
	return s.put(ctx, typ, id, nil, "DELETE", ifMatch)
}

func (s *Service) put(ctx context.Context, typ, id string, res *fhir.Resource, method string, ifMatch *int64) (*Outcome, error) {
	return s.write(ctx, typ, id, res, method, ifMatch, false)
}

// write is the one write path: res nil means delete. fresh means the id
// was just made, so no current version needs reading at first.
func (s *Service) write(ctx context.Context, typ, id string, res *fhir.Resource, method string, ifMatch *int64, fresh bool) (*Outcome, error) {
	if err := s.Check(res); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(store.Key(typ, id))
	defer unlock()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var prev *store.Record
		var err error
		if !fresh || attempt > 0 {
			prev, err = s.store.Current(ctx, typ, id)
		}
		if err != nil && !fault.Is(err, fault.NotFound) {
			return nil, err
		}
		if err := checkIfMatch(typ, id, prev, ifMatch); err != nil {
			return nil, err
		}
		rec, done := s.next(typ, id, prev, res, method, true)
		if done {
			return &Outcome{Record: prev, NoOp: true}, nil
		}
		// An authenticated writer's Provenance and the keeper's companions
		// commit with the version.
		err = s.commitWith(ctx, []Change{{prev, rec}}, false)
		if errors.Is(err, store.ErrVersionTaken) {
			if ifMatch != nil {
				return nil, fault.New(fault.PreconditionFailed, "", "%s/%s was changed by another writer; version %d is no longer current", typ, id, *ifMatch)
			}
			if err := backoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if typ == "SearchParameter" {
			if err := s.searchParameterWritten(ctx, rec, res); err != nil {
				return nil, err
			}
		}
		return &Outcome{Record: rec, Created: prev == nil || prev.Deleted}, nil
	}
	return nil, fault.New(fault.Conflict, "", "%s/%s is being changed by too many writers; try again", typ, id)
}

func checkIfMatch(typ, id string, prev *store.Record, ifMatch *int64) error {
	if ifMatch == nil {
		return nil
	}
	if prev == nil {
		return fault.New(fault.PreconditionFailed, "", "If-Match names version %d of %s/%s, which does not exist", *ifMatch, typ, id)
	}
	if prev.VersionID != *ifMatch {
		return fault.New(fault.PreconditionFailed, "", "If-Match names version %d of %s/%s, but the current version is %d", *ifMatch, typ, id, prev.VersionID)
	}
	return nil
}

// next builds the record that follows prev, or reports that the write
// changes nothing: identical content, or deleting what is not there.
// index: compute the search entries now; else the store computes them
// when it makes the version current (store.Record.IndexLater).
func (s *Service) next(typ, id string, prev *store.Record, res *fhir.Resource, method string, index bool) (*store.Record, bool) {
	live := prev != nil && !prev.Deleted
	if res == nil && !live {
		return nil, true
	}
	vid := int64(1)
	if prev != nil {
		vid = prev.VersionID + 1
	}
	rec := &store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: s.now().UTC().Truncate(time.Millisecond), Method: method}
	if res == nil {
		rec.Deleted = true
		return rec, false
	}
	res.SetID(id)
	if live {
		// Rendered with the previous meta, identical bytes mean identical content.
		res.SetMeta(strconv.FormatInt(prev.VersionID, 10), prev.LastUpdated)
		if string(res.Bytes()) == prev.Raw {
			return nil, true
		}
	}
	res.SetMeta(strconv.FormatInt(vid, 10), rec.LastUpdated)
	rec.Raw = string(res.Bytes())
	if index {
		rec.Index = search.Index(s.reg, res)
	} else {
		rec.IndexLater = s.indexStored
	}
	return rec, false
}

// indexStored computes the search entries of a version this service
// built, from its JSON (valid: it is only decoded).
func (s *Service) indexStored(r *store.Record) *store.Index {
	res, err := fhir.CompactOf(r.Type, []byte(r.Raw)).Resource()
	if err != nil {
		return nil
	}
	return search.Index(s.reg, res)
}

// backoff waits a little longer after each lost race, with jitter so that
// competing instances do not collide in step.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1+min(attempt, 20)) * time.Millisecond
	var b [1]byte
	_, _ = rand.Read(b[:])
	d += time.Duration(b[0]) * time.Microsecond * 20
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fault.New(fault.Unavailable, "", "the request was cancelled")
	case <-t.C:
		return nil
	}
}

// NewID returns a random UUID (version 4), a valid FHIR id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// keyedMutex serialises writers of one resource inside this process, so
// they queue instead of burning store round trips on lost races. Across
// processes the store's version condition still decides.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	waiters int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.waiters++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.waiters--; l.waiters == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
