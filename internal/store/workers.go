package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Inbound EHR pull (package ehr/inbound) and the Subscription notifier
// (package subscription) keep their state in two collections, every
// document addressed by _id (FerretDB pushes only an exact _id filter
// down):
//   - worker_state: one document per background worker that one instance
//     runs at a time ("pull|<endpoint>", "subscriptions"): its lease (the
//     lease of reindex jobs) and its cursors.
//   - sync_pulled: the remote→local id map of pulled resources, _id
//     "<endpoint>|<Type>/<remote id>".

// WorkerState is the state of a leased background worker: Owner holds it
// until Lease.
type WorkerState struct {
	ID    string    `bson:"_id"`
	Owner string    `bson:"owner"`
	Lease time.Time `bson:"lease"`
	State string    `bson:"state"` // JobRunning once claimed (claimLease)
	// Seq is a change-log cursor (the notifier: the last change
	// evaluated).
	Seq int64 `bson:"seq"`
	// Cursors are per-type cursors (the pull: the EHR's meta.lastUpdated
	// of the newest resource pulled of each type, as the EHR wrote it).
	Cursors []TypeCursor `bson:"cursors"`
	// LastSuccess is when a round last finished; LastError the class of
	// the last failure, never resource content.
	LastSuccess time.Time `bson:"lastSuccess"`
	LastError   string    `bson:"lastError"`
}

// TypeCursor is the cursor of one resource type.
type TypeCursor struct {
	Type  string `bson:"type" json:"type"`
	Since string `bson:"since" json:"since"`
}

// Cursor returns the cursor of typ ("" when there is none).
func (w *WorkerState) Cursor(typ string) string {
	for _, c := range w.Cursors {
		if c.Type == typ {
			return c.Since
		}
	}
	return ""
}

// SetCursor sets the cursor of typ.
func (w *WorkerState) SetCursor(typ, since string) {
	for i := range w.Cursors {
		if w.Cursors[i].Type == typ {
			w.Cursors[i].Since = since
			return
		}
	}
	w.Cursors = append(w.Cursors, TypeCursor{Type: typ, Since: since})
}

func (s *Store) workerStates() *mongo.Collection { return s.db.Collection("worker_state") }
func (s *Store) pulledRefs() *mongo.Collection   { return s.db.Collection("sync_pulled") }

// ClaimWorker takes (or renews) the lease of worker id for owner until
// lease, when no other owner holds an unexpired one, creating its state
// on first use; nil when another owner holds it.
func (s *Store) ClaimWorker(ctx context.Context, id, owner string, now, lease time.Time) (*WorkerState, error) {
	octx, cancel := s.op(ctx)
	_, err := s.workerStates().InsertOne(octx, WorkerState{ID: id, State: JobPending, Cursors: []TypeCursor{}})
	cancel()
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return nil, storeErr(err, "create worker state")
	}
	var w WorkerState
	ok, err := s.claimLease(ctx, s.workerStates(), id, owner, now, lease, &w)
	if err != nil || !ok {
		return nil, err
	}
	return &w, nil
}

// SaveWorker writes the cursors and status of a worker its owner holds,
// renewing the lease to w.Lease. It reports false when the owner lost the
// lease: the caller must stop.
func (s *Store) SaveWorker(ctx context.Context, w *WorkerState) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	set := bson.D{
		{Key: "lease", Value: w.Lease}, {Key: "seq", Value: w.Seq}, {Key: "cursors", Value: w.Cursors},
		{Key: "lastSuccess", Value: w.LastSuccess}, {Key: "lastError", Value: w.LastError},
	}
	return s.saveLeased(ctx, s.workerStates(), w.ID, w.Owner, set)
}

// ReleaseWorker gives up owner's lease (a clean shutdown), so another
// instance takes over at once.
func (s *Store) ReleaseWorker(ctx context.Context, id, owner string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.workerStates().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}}}})
	return storeErr(err, "release worker")
}

// Worker reads a worker's state; a fault.NotFound error when it never ran.
func (s *Store) Worker(ctx context.Context, id string) (*WorkerState, error) {
	var w WorkerState
	if err := s.findByID(ctx, s.workerStates(), id, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// PulledRef maps a resource pulled from an EHR to its local copy.
type PulledRef struct {
	ID       string `bson:"_id"` // PulledRefID
	Endpoint string `bson:"endpoint"`
	Type     string `bson:"type"`
	RemoteID string `bson:"remote"`
	LocalID  string `bson:"rid"`
	// Linked: the EHR's resource matched a local one by identifier (a
	// Patient by MRN) that was not pulled from it: references to it are
	// rewritten to the local one, which is never overwritten.
	Linked  bool      `bson:"linked"`
	Updated time.Time `bson:"updated"`
}

// PulledRefID is the _id of the map entry of the EHR's Type/id.
func PulledRefID(endpoint, typ, remoteID string) string {
	return endpoint + "|" + Key(typ, remoteID)
}

// PulledRef reads the map entry of the EHR's Type/id; nil when there is
// none.
func (s *Store) PulledRef(ctx context.Context, endpoint, typ, remoteID string) (*PulledRef, error) {
	var r PulledRef
	err := s.findByID(ctx, s.pulledRefs(), PulledRefID(endpoint, typ, remoteID), &r)
	if fault.Is(err, fault.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// PutPulledRef writes a map entry (its ID is set from its fields).
func (s *Store) PutPulledRef(ctx context.Context, r *PulledRef) error {
	r.ID = PulledRefID(r.Endpoint, r.Type, r.RemoteID)
	return s.putByID(ctx, s.pulledRefs(), r.ID, r, "write pulled id map")
}
