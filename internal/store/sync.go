package store

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// The outbound EHR sync (package ehr/outbound) keeps its state in three
// collections, every document addressed by _id (FerretDB pushes only an
// exact _id filter down):
//   - sync_endpoints: one document per endpoint, _id its name: the change-log
//     cursor and the delivery lease (one worker per endpoint across every
//     instance; the same lease as reindex jobs), plus status fields.
//   - sync_ids: the local→remote id map, _id "<endpoint>|<Type>/<id>".
//   - sync_dead: dead letters, _id "<endpoint>|<Type>/<id>/_history/<v>".

// SyncEndpoint is the delivery state of one EHR endpoint. One worker holds
// it at a time: Owner until Lease.
type SyncEndpoint struct {
	Name string `bson:"_id"`
	// Cursor is the sequence number of the last change delivered,
	// skipped or dead-lettered: the worker reads store.Changes after it.
	Cursor int64     `bson:"cursor"`
	Owner  string    `bson:"owner"`
	Lease  time.Time `bson:"lease"`
	State  string    `bson:"state"` // JobRunning once claimed (claimLease)
	// InFlight is the sequence number of the change being delivered (0:
	// none); a worker that dies leaves it, so status reads it together
	// with Lease.
	InFlight int64 `bson:"inflight"`
	// Attempts is the number of failed attempts of the change in flight,
	// FailingSince when the first of them failed.
	Attempts     int       `bson:"attempts"`
	FailingSince time.Time `bson:"failingSince"`
	// LastError is the class and HTTP status of the last failure, never
	// resource content.
	LastError   string    `bson:"lastError"`
	LastSuccess time.Time `bson:"lastSuccess"`
	// Replays counts replay requests not yet taken up by the worker.
	Replays int64 `bson:"replays"`
	// Skipped counts the changes not sent, by reason.
	Skipped []SkipCount `bson:"skipped"`
}

// SkipCount is how many changes were skipped for one reason (a class such
// as "type not sent", never content).
type SkipCount struct {
	Reason string `bson:"reason" json:"reason"`
	Count  int64  `bson:"count" json:"count"`
}

// RemoteRef maps a local resource to the resource created for it in one
// EHR.
type RemoteRef struct {
	ID       string `bson:"_id"` // RemoteRefID
	Endpoint string `bson:"endpoint"`
	Type     string `bson:"type"`
	LocalID  string `bson:"rid"`
	// RemoteType differs from Type when the EHR gets a portable form (a
	// MedicationAdministration as a DocumentReference).
	RemoteType    string `bson:"rtype"`
	RemoteID      string `bson:"remote"`
	RemoteVersion string `bson:"rvid"`
	// Version is the last local version delivered (0: none yet).
	Version int64 `bson:"vid"`
	// Attempted is the local version of the last create sent whose
	// outcome is not known: before sending another create, the worker
	// searches the EHR by its identifier.
	Attempted int64 `bson:"attempted"`
	// Matched is a resource the EHR had already (a Patient found by MRN):
	// referred to, never written.
	Matched bool      `bson:"matched"`
	Deleted bool      `bson:"deleted"`
	Updated time.Time `bson:"updated"`
}

// RemoteRefID is the _id of the id map entry of Type/id at an endpoint.
func RemoteRefID(endpoint, typ, id string) string { return endpoint + "|" + Key(typ, id) }

// Dead letter states.
const (
	DeadLetterDead     = "dead"     // waiting for a human
	DeadLetterReplay   = "replay"   // replay requested, not yet done
	DeadLetterResolved = "resolved" // replayed and delivered (or superseded)
)

// DeadLetter is a change an EHR refused (or that failed for too long).
type DeadLetter struct {
	ID       string `bson:"_id"` // DeadLetterID
	Endpoint string `bson:"endpoint"`
	Type     string `bson:"type"`
	LocalID  string `bson:"rid"`
	Version  int64  `bson:"vid"`
	Seq      int64  `bson:"seq"`
	// Status is the EHR's HTTP status (0: no answer); Reason the class:
	// validation, conflict, auth, not-found, patient-unmatched, exhausted.
	Status int    `bson:"status"`
	Reason string `bson:"reason"`
	// Outcome is the EHR's OperationOutcome as it sent it (JSON), if any.
	Outcome  string    `bson:"outcome"`
	Time     time.Time `bson:"time"`
	State    string    `bson:"state"`
	Replays  int       `bson:"replays"`
	Resolved time.Time `bson:"resolved"`
}

// DeadLetterID is the _id of the dead letter of a version at an endpoint.
func DeadLetterID(endpoint, typ, id string, vid int64) string {
	return endpoint + "|" + versionKey(typ, id, vid)
}

// EnsureSyncEndpoint creates the state of an endpoint, cursor 0, unless it
// exists.
func (s *Store) EnsureSyncEndpoint(ctx context.Context, name string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.syncEndpoints.InsertOne(ctx, SyncEndpoint{Name: name, State: JobPending})
	if mongo.IsDuplicateKeyError(err) {
		return nil
	}
	return storeErr(err, "create sync endpoint")
}

// ClaimSyncEndpoint takes (or renews) the delivery lease of an endpoint for
// owner until lease, when no other owner holds an unexpired one, and
// returns its state; nil when another owner holds it.
func (s *Store) ClaimSyncEndpoint(ctx context.Context, name, owner string, now, lease time.Time) (*SyncEndpoint, error) {
	var e SyncEndpoint
	ok, err := s.claimLease(ctx, s.syncEndpoints, name, owner, now, lease, &e)
	if err != nil || !ok {
		return nil, err
	}
	return &e, nil
}

// SaveSyncEndpoint writes the cursor and status of an endpoint its owner
// holds, renewing the lease to e.Lease. It reports false when the owner
// lost the lease: the caller must stop delivering.
func (s *Store) SaveSyncEndpoint(ctx context.Context, e *SyncEndpoint) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	set := bson.D{
		{Key: "cursor", Value: e.Cursor}, {Key: "lease", Value: e.Lease}, {Key: "inflight", Value: e.InFlight},
		{Key: "attempts", Value: e.Attempts}, {Key: "failingSince", Value: e.FailingSince},
		{Key: "lastError", Value: e.LastError}, {Key: "lastSuccess", Value: e.LastSuccess},
		{Key: "skipped", Value: e.Skipped},
	}
	return s.saveLeased(ctx, s.syncEndpoints, e.Name, e.Owner, set)
}

// ReleaseSyncEndpoint gives up owner's lease (a clean shutdown), so
// another instance takes over at once instead of after the lease.
func (s *Store) ReleaseSyncEndpoint(ctx context.Context, name, owner string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.syncEndpoints.UpdateOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "owner", Value: owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}, {Key: "inflight", Value: int64(0)}}}})
	return storeErr(err, "release sync endpoint")
}

// SyncEndpointState reads an endpoint's state; a fault.NotFound error when
// no worker ever started for it.
func (s *Store) SyncEndpointState(ctx context.Context, name string) (*SyncEndpoint, error) {
	var e SyncEndpoint
	if err := s.findByID(ctx, s.syncEndpoints, name, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// TakeReplays subtracts n taken-up replay requests from an endpoint's
// count.
func (s *Store) TakeReplays(ctx context.Context, name string, n int64) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.syncEndpoints.UpdateOne(ctx, bson.D{{Key: "_id", Value: name}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "replays", Value: -n}}}})
	return storeErr(err, "update sync endpoint")
}

// LastSeq is the highest change sequence number allocated so far.
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var c struct {
		Seq int64 `bson:"seq"`
	}
	err := s.findByID(ctx, s.counters, "changes", &c)
	if fault.As(err).Kind == fault.NotFound {
		return 0, nil
	}
	return c.Seq, err
}

// RemoteRef reads the id map entry of Type/id at an endpoint; nil when
// there is none.
func (s *Store) RemoteRef(ctx context.Context, endpoint, typ, id string) (*RemoteRef, error) {
	var r RemoteRef
	err := s.findByID(ctx, s.syncIDs, RemoteRefID(endpoint, typ, id), &r)
	if fault.As(err).Kind == fault.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// PutRemoteRef writes an id map entry (its ID is set from the endpoint and
// local key).
func (s *Store) PutRemoteRef(ctx context.Context, r *RemoteRef) error {
	r.ID = RemoteRefID(r.Endpoint, r.Type, r.LocalID)
	return s.putByID(ctx, s.syncIDs, r.ID, r, "write sync id map")
}

// PutDeadLetter writes a dead letter (its ID is set from its fields),
// replacing an earlier one of the same version.
func (s *Store) PutDeadLetter(ctx context.Context, d *DeadLetter) error {
	d.ID = DeadLetterID(d.Endpoint, d.Type, d.LocalID, d.Version)
	return s.putByID(ctx, s.syncDead, d.ID, d, "write dead letter")
}

// DeadLetter reads one dead letter; a fault.NotFound error when there is
// none.
func (s *Store) DeadLetter(ctx context.Context, id string) (*DeadLetter, error) {
	var d DeadLetter
	if err := s.findByID(ctx, s.syncDead, id, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DeadLetterQuery selects dead letters of one endpoint, oldest first.
type DeadLetterQuery struct {
	Endpoint string
	State    string // "": every state
	// After is the keyset cursor: the Time and ID of the last one seen.
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// DeadLetters lists the dead letters of an endpoint, oldest first, served
// by the {endpoint, state, time, _id} index (on the embedded store a scan
// of the collection, which stays small: an admin reads it).
func (s *Store) DeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	f := bson.D{{Key: "endpoint", Value: q.Endpoint}}
	if q.State != "" {
		f = append(f, bson.E{Key: "state", Value: q.State})
	}
	if q.AfterID != "" {
		f = append(f, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "time", Value: bson.D{{Key: "$gt", Value: q.AfterTime}}}},
			bson.D{{Key: "time", Value: q.AfterTime}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: q.AfterID}}}},
		}})
	}
	cur, err := s.syncDead.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "time", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(q.Limit)))
	if err != nil {
		return nil, storeErr(err, "read dead letters")
	}
	var out []DeadLetter
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "read dead letters")
	}
	return out, nil
}

// CountDeadLetters counts an endpoint's dead letters in a state.
func (s *Store) CountDeadLetters(ctx context.Context, endpoint, state string) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.syncDead.CountDocuments(ctx, bson.D{{Key: "endpoint", Value: endpoint}, {Key: "state", Value: state}})
	return n, storeErr(err, "count dead letters")
}

// RequestReplay marks a dead (or resolved) letter for replay and tells its
// endpoint's worker; it returns the letter as it is now. A letter already
// waiting for replay is left as it is.
func (s *Store) RequestReplay(ctx context.Context, id string) (*DeadLetter, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	var d DeadLetter
	err := s.syncDead.FindOneAndUpdate(octx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: bson.D{{Key: "$ne", Value: DeadLetterReplay}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: DeadLetterReplay}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return s.DeadLetter(ctx, id) // waiting already, or none (404)
	}
	if err != nil {
		return nil, storeErr(err, "request replay")
	}
	_, err = s.syncEndpoints.UpdateOne(octx, bson.D{{Key: "_id", Value: d.Endpoint}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "replays", Value: int64(1)}}}})
	return &d, storeErr(err, "request replay")
}

// findByID decodes the document _id of c into out; a fault.NotFound error
// when there is none.
func (s *Store) findByID(ctx context.Context, c *mongo.Collection, id string, out any) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fault.New(fault.NotFound, "", "%s not found", c.Name())
	}
	return storeErr(err, "read "+c.Name())
}

// putByID writes doc as document id of c: an insert, else an _id-addressed
// replacement of its fields ($set; FerretDB serves both without a scan,
// an upsert would scan). Every field is set: the sync documents have no
// omitempty fields, so nothing of the old document survives.
func (s *Store) putByID(ctx context.Context, c *mongo.Collection, id string, doc any, what string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := c.InsertOne(ctx, doc)
	if !mongo.IsDuplicateKeyError(err) {
		return storeErr(err, what)
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		return storeErr(err, what)
	}
	var set bson.D
	if err := bson.Unmarshal(raw, &set); err != nil {
		return storeErr(err, what)
	}
	// _id is the filter, not a field to set.
	set = slices.DeleteFunc(set, func(e bson.E) bool { return e.Key == "_id" })
	update := bson.D{{Key: "$set", Value: set}}
	_, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, update)
	return storeErr(err, what)
}
