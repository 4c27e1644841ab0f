// Package store keeps FHIR resource versions in MongoDB through the official
// driver. It knows records, versions and the change log; FHIR rules (what a
// version is, when an update is a no-op) live in package resource.
//
// Layout (see docs/architecture.md):
//   - history: one document per version, _id "Type/id/_history/N". Inserting it
//     is the commit: its unique _id makes exactly one writer win each version.
//     Its seq field orders all writes: history is also the change log.
//   - resources: the current version of each resource, _id "Type/id", a
//     projection of history that is rolled forward with a version condition.
//   - counters: the change-log sequence.
//   - guards: one document per conditional-create criteria claimed (see Guard).
//   - jobs: background reindex jobs (see Job).
//   - exports, export_files: bulk export jobs and their output (see ExportJob).
//   - sync_endpoints, sync_ids, sync_dead: the outbound EHR sync (see sync.go).
//   - sync_defs: EHR endpoints defined through the admin API (syncdefs.go).
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// ErrVersionTaken means another writer committed the version first.
var ErrVersionTaken = errors.New("version already committed")

// Record is one version of a resource.
type Record struct {
	Type        string    `bson:"type"`
	ID          string    `bson:"rid"`
	VersionID   int64     `bson:"vid"`
	LastUpdated time.Time `bson:"ts"`
	Seq         int64     `bson:"seq"`
	Deleted     bool      `bson:"deleted,omitempty"`
	Method      string    `bson:"method"` // POST, PUT, PATCH or DELETE: the interaction that made it
	Raw         string    `bson:"raw,omitempty"`
	// Index is what search matches; it is kept with the current version
	// only, not in history.
	Index *Index `bson:"-"`
	// IndexLater, when Index is nil, computes it as CommitTxn makes the
	// version current, batch by batch, letting each batch's entries go
	// once written: a big transaction's versions never hold them all.
	IndexLater func(*Record) *Index `bson:"-"`
	// Keys are the values of the query's sort keys (nil where missing),
	// set by Search for cursors.
	Keys []any `bson:"-"`
}

// Key is the resources collection _id of a resource.
func Key(typ, id string) string { return typ + "/" + id }

func versionKey(typ, id string, vid int64) string {
	return typ + "/" + id + "/_history/" + strconv.FormatInt(vid, 10)
}

// Options configure Open.
type Options struct {
	URI      string
	Database string
	// Embedded selects a single connection: FerretDB applies updates by
	// read-modify-write, so it is only atomic when commands are serialised.
	Embedded bool
	Monitor  *event.CommandMonitor
	Timeout  time.Duration // per store command; default 10s
	// Indexer computes the search entries of a version read back from
	// history (history keeps none), when recovery rolls it forward.
	Indexer func(*Record) *Index
	// TxnDeadline is how old a pending transaction must be before
	// recovery aborts it: longer than any transaction takes; default 30s,
	// under GapGrace so change-log readers never skip its numbers.
	TxnDeadline time.Duration
	// Owner names this instance in the transactions it writes.
	Owner string
	// TxnHook, for fault-injection tests, runs after each stage of
	// CommitTxn (Stage*); an error acts as a store failure there, and
	// ErrSimulatedCrash stops at once without cleanup.
	TxnHook func(stage string) error
	// AfterIndexes, when set, runs once Open has created the collections
	// and their indexes, with the database's name: the embedded server
	// adds the index its _id lookups use there (embedded.IndexIDs).
	AfterIndexes func(ctx context.Context, database string) error
}

// Store is the MongoDB adapter.
type Store struct {
	client    *mongo.Client
	db        *mongo.Database
	resources *mongo.Collection
	history   *mongo.Collection
	counters  *mongo.Collection
	guards    *mongo.Collection
	jobs      *mongo.Collection
	txns      *mongo.Collection
	// exports and exportFiles hold the bulk export jobs and their output.
	exports     *mongo.Collection
	exportFiles *mongo.Collection
	// syncEndpoints, syncIDs and syncDead hold the outbound EHR sync.
	syncEndpoints *mongo.Collection
	syncIDs       *mongo.Collection
	syncDead      *mongo.Collection
	syncDefs      *mongo.Collection
	timeout       time.Duration

	indexer     func(*Record) *Index
	txnDeadline time.Duration
	owner       string
	txnHook     func(string) error
	txnCache    txnCache
	embedded    bool       // FerretDB: only an exact _id filter avoids a collection scan
	projectMu   sync.Mutex // embedded: see updateVersion
}

// Open connects, checks the server answers and creates the indexes.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.TxnDeadline == 0 {
		o.TxnDeadline = 30 * time.Second
	}
	co := options.Client().ApplyURI(o.URI).SetServerSelectionTimeout(o.Timeout)
	if o.Monitor != nil {
		co.SetMonitor(o.Monitor)
	}
	if o.Embedded {
		co.SetMaxPoolSize(1)
	} else {
		// An acknowledged write must survive a primary failover and a crash.
		co.SetWriteConcern(&writeconcern.WriteConcern{W: "majority", Journal: ptr(true)})
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	db := client.Database(o.Database)
	s := &Store{
		client:        client,
		db:            db,
		resources:     db.Collection("resources"),
		history:       db.Collection("history"),
		counters:      db.Collection("counters"),
		guards:        db.Collection("guards"),
		jobs:          db.Collection("jobs"),
		txns:          db.Collection("txns"),
		exports:       db.Collection("exports"),
		exportFiles:   db.Collection("export_files"),
		syncEndpoints: db.Collection("sync_endpoints"),
		syncIDs:       db.Collection("sync_ids"),
		syncDead:      db.Collection("sync_dead"),
		syncDefs:      db.Collection("sync_defs"),
		timeout:       o.Timeout,

		indexer:     o.Indexer,
		txnDeadline: o.TxnDeadline,
		owner:       o.Owner,
		txnHook:     o.TxnHook,
		embedded:    o.Embedded,
	}
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(ctx)
		return nil, err
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(ctx)
		return nil, err
	}
	if o.AfterIndexes != nil {
		if err := o.AfterIndexes(ctx, o.Database); err != nil {
			_ = client.Disconnect(ctx)
			return nil, err
		}
	}
	if err := s.repair(ctx); err != nil {
		_ = client.Disconnect(ctx)
		return nil, err
	}
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// IndexSpec is one declared index.
type IndexSpec struct {
	Name   string
	Keys   bson.D
	Unique bool
}

// indexes are the declared indexes of each collection, created at every
// start when missing.
var indexes = map[string][]IndexSpec{
	"resources": {
		{Name: "type_tok", Keys: bson.D{{Key: "type", Value: 1}, {Key: "tok", Value: 1}}},
		{Name: "type_txt", Keys: bson.D{{Key: "type", Value: 1}, {Key: "txt", Value: 1}}},
		{Name: "type_str", Keys: bson.D{{Key: "type", Value: 1}, {Key: "str", Value: 1}}},
		{Name: "type_strx", Keys: bson.D{{Key: "type", Value: 1}, {Key: "strx", Value: 1}}},
		{Name: "type_ref", Keys: bson.D{{Key: "type", Value: 1}, {Key: "ref", Value: 1}}},
		{Name: "type_uri", Keys: bson.D{{Key: "type", Value: 1}, {Key: "uri", Value: 1}}},
		{Name: "type_has", Keys: bson.D{{Key: "type", Value: 1}, {Key: "has", Value: 1}}},
		{Name: "type_dlo", Keys: bson.D{{Key: "type", Value: 1}, {Key: "dlo", Value: 1}}},
		{Name: "type_dhi", Keys: bson.D{{Key: "type", Value: 1}, {Key: "dhi", Value: 1}}},
		{Name: "type_num", Keys: bson.D{{Key: "type", Value: 1}, {Key: "num", Value: 1}}},
		{Name: "type_nlo", Keys: bson.D{{Key: "type", Value: 1}, {Key: "nlo", Value: 1}}},
		{Name: "type_nhi", Keys: bson.D{{Key: "type", Value: 1}, {Key: "nhi", Value: 1}}},
		{Name: "type_drg", Keys: bson.D{{Key: "type", Value: 1}, {Key: "drg", Value: 1}}},
		{Name: "type_nrg", Keys: bson.D{{Key: "type", Value: 1}, {Key: "nrg", Value: 1}}},
		{Name: "type_rid", Keys: bson.D{{Key: "type", Value: 1}, {Key: "rid", Value: 1}}},
		{Name: "type_ts_rid", Keys: bson.D{{Key: "type", Value: 1}, {Key: "ts", Value: 1}, {Key: "rid", Value: 1}}},
		// The sorts of a search over several types (type $in, sorted by rid
		// or ts first, type last): scanned in order, the type filtered on
		// the index key.
		{Name: "rid_type", Keys: bson.D{{Key: "rid", Value: 1}, {Key: "type", Value: 1}}},
		{Name: "ts_rid_type", Keys: bson.D{{Key: "ts", Value: 1}, {Key: "rid", Value: 1}, {Key: "type", Value: 1}}},
	},
	"history": {
		{Name: "seq", Keys: bson.D{{Key: "seq", Value: 1}}, Unique: true},
		{Name: "type_rid_vid", Keys: bson.D{{Key: "type", Value: 1}, {Key: "rid", Value: 1}, {Key: "vid", Value: -1}}},
		{Name: "type_seq", Keys: bson.D{{Key: "type", Value: 1}, {Key: "seq", Value: -1}}},
	},
	"txns": {
		{Name: "state", Keys: bson.D{{Key: "state", Value: 1}}},
	},
	"jobs": {
		{Name: "created", Keys: bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}},
	},
	"exports": {
		{Name: "created", Keys: bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}},
	},
	// Dead letters are listed per endpoint (and state) oldest first.
	"sync_dead": {
		{Name: "endpoint_time", Keys: bson.D{{Key: "endpoint", Value: 1}, {Key: "time", Value: 1}, {Key: "_id", Value: 1}}},
		{Name: "endpoint_state_time", Keys: bson.D{{Key: "endpoint", Value: 1}, {Key: "state", Value: 1}, {Key: "time", Value: 1}, {Key: "_id", Value: 1}}},
	},
}

// ensureIndexes creates the declared indexes that are missing. It asks
// first instead of relying on createIndexes being idempotent: FerretDB 1.24
// drops the connection when asked to create indexes that exist already.
func (s *Store) ensureIndexes(ctx context.Context) error {
	for coll, declared := range indexes {
		if err := s.ensureCollectionIndexes(ctx, s.db.Collection(coll), declared); err != nil {
			return fmt.Errorf("create indexes on %s: %w", coll, err)
		}
	}
	return nil
}

func (s *Store) ensureCollectionIndexes(ctx context.Context, c *mongo.Collection, declared []IndexSpec) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	specs, err := c.Indexes().ListSpecifications(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, sp := range specs {
		have[sp.Name] = true
	}
	for _, ix := range declared {
		if have[ix.Name] {
			continue
		}
		m := mongo.IndexModel{Keys: ix.Keys, Options: options.Index().SetName(ix.Name).SetUnique(ix.Unique)}
		if _, err := c.Indexes().CreateOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Indexes lists the declared indexes by collection, for documentation and
// index-coverage tests.
func Indexes() map[string][]IndexSpec { return indexes }

// Ping checks the store answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		e := fault.New(fault.Unavailable, "", "the store is not reachable")
		e.Err = err
		return e
	}
	return nil
}

// Close disconnects.
func (s *Store) Close(ctx context.Context) error { return s.client.Disconnect(ctx) }

// TxnDeadline is how long a transaction may stay pending (Options.TxnDeadline).
func (s *Store) TxnDeadline() time.Duration { return s.txnDeadline }

// Drop removes the database; tests use it to clean up.
func (s *Store) Drop(ctx context.Context) error { return s.db.Drop(ctx) }

func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func storeErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || mongo.IsTimeout(err) || mongo.IsNetworkError(err) {
		e := fault.New(fault.Unavailable, "", "the store did not answer in time")
		e.Err = fmt.Errorf("%s: %w", what, err)
		return e
	}
	return fault.Wrap(err, what)
}

// Current returns the current version of a resource, a tombstone included.
// It returns a fault.NotFound error when the resource never existed.
func (s *Store) Current(ctx context.Context, typ, id string) (*Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var r Record
	err := s.resources.FindOne(ctx, bson.D{{Key: "_id", Value: Key(typ, id)}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fault.New(fault.NotFound, "", "%s/%s is not known", typ, id)
	}
	if err != nil {
		return nil, storeErr(err, "read current version")
	}
	return &r, nil
}

// Version returns one version of a resource.
func (s *Store) Version(ctx context.Context, typ, id string, vid int64) (*Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var h history
	err := s.history.FindOne(ctx, bson.D{{Key: "_id", Value: versionKey(typ, id, vid)}}).Decode(&h)
	if err == nil {
		var ok bool
		if ok, err = s.visible(ctx, h.Txn); err == nil && !ok {
			err = mongo.ErrNoDocuments // its transaction has not committed
		}
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fault.New(fault.NotFound, "", "%s/%s has no version %d", typ, id, vid)
	}
	if err != nil {
		return nil, storeErr(err, "read version")
	}
	return &h.Record, nil
}

// Commit writes r as version r.VersionID, which must be one more than the
// current version (1 for a new resource). It allocates r.Seq. When another
// writer committed that version first it returns ErrVersionTaken, after making
// sure the current projection shows the winner.
//
// Commands: the sequence, the history insert, the current replace (3).
func (s *Store) Commit(ctx context.Context, r *Record) error {
	seq, err := s.nextSeq(ctx)
	if err != nil {
		return err
	}
	r.Seq = seq
	hctx, cancel := s.op(ctx)
	defer cancel()
	_, err = s.history.InsertOne(hctx, historyDoc(r))
	if mongo.IsDuplicateKeyError(err) {
		// The version is taken. Fill the burned sequence number so change-log
		// readers need not wait for it, and make sure the winner is current
		// even if it crashed before rolling resources forward.
		s.fillGap(ctx, seq)
		if w, verr := s.Version(ctx, r.Type, r.ID, r.VersionID); verr == nil {
			_ = s.project(ctx, w)
		}
		return ErrVersionTaken
	}
	if err != nil {
		s.fillGap(ctx, seq)
		return storeErr(err, "commit version")
	}
	return s.project(ctx, r)
}

// project makes r the current version. It runs only when the current
// version is r.VersionID-1 or already r (a loser rolling a winner forward
// races the winner itself), so an insert, or an update conditioned on the
// previous version, is enough. Both address the document by _id (on
// FerretDB see updateVersion); an upsert would scan.
func (s *Store) project(ctx context.Context, r *Record) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if r.VersionID == 1 {
		_, err := s.resources.InsertOne(ctx, CurrentDocument(r))
		if mongo.IsDuplicateKeyError(err) {
			return nil // rolled forward by another writer already
		}
		return storeErr(err, "insert current version")
	}
	// No match means another writer already made r (or a later version) current.
	return storeErr(s.updateCurrent(ctx, r), "update current version")
}

// updateCurrent makes r current over its previous version (the
// ProjectionUpdate); nothing when that is not the current one.
func (s *Store) updateCurrent(ctx context.Context, r *Record) error {
	_, update, err := ProjectionUpdate(r)
	if err != nil {
		return err
	}
	_, err = s.updateVersion(ctx, Key(r.Type, r.ID), r.VersionID-1, update)
	return err
}

// updateVersion applies update to the current document of key when its
// version is vid, and reports whether it matched. FerretDB decodes the
// whole collection for any filter but {_id} alone (measured: the {_id,
// vid} update cost as much as a search), so on the embedded store the version is checked by a read by _id and the
// update addressed by _id alone, both under projectMu: the embedded store
// has one process, whose updates of current versions all pass here.
func (s *Store) updateVersion(ctx context.Context, key string, vid int64, update bson.D) (bool, error) {
	byID := bson.D{{Key: "_id", Value: key}}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if !s.embedded {
		res, err := s.resources.UpdateOne(ctx, append(byID, bson.E{Key: "vid", Value: vid}), update)
		if err != nil {
			return false, err
		}
		return res.MatchedCount == 1, nil
	}
	s.projectMu.Lock()
	defer s.projectMu.Unlock()
	var cur struct {
		VersionID int64 `bson:"vid"`
	}
	err := s.resources.FindOne(ctx, byID).Decode(&cur)
	if errors.Is(err, mongo.ErrNoDocuments) || err == nil && cur.VersionID != vid {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	res, err := s.resources.UpdateOne(ctx, byID, update)
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}

// current is a resources document: the version and its search index.
type current struct {
	Key    string `bson:"_id"`
	Record `bson:",inline"`
	Index  `bson:",inline"`
}

// CurrentDocument is the resources document of r (exported for the load
// tool, which sends the same documents with the bare driver).
func CurrentDocument(r *Record) any { return currentDoc(r) }

// ProjectionUpdate is the filter and update that make r, a version after
// the first, current when the previous version is: a $set of the whole
// document (a replace would address it by a filter FerretDB cannot push
// down) and an $unset of what the previous version had and r has not.
func ProjectionUpdate(r *Record) (filter, update bson.D, err error) {
	var set bson.D
	raw, err := bson.Marshal(currentDoc(r))
	if err == nil {
		err = bson.Unmarshal(raw, &set)
	}
	if err != nil {
		return nil, nil, fault.Wrap(err, "encode current version")
	}
	set = set[1:] // _id
	var unset bson.D
	for _, name := range optionalFields {
		if !has(set, name) {
			unset = append(unset, bson.E{Key: name, Value: ""})
		}
	}
	update = bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	filter = bson.D{{Key: "_id", Value: Key(r.Type, r.ID)}, {Key: "vid", Value: r.VersionID - 1}}
	return filter, update, nil
}

func currentDoc(r *Record) current {
	c := current{Key: Key(r.Type, r.ID), Record: *r}
	if r.Index != nil {
		c.Index = *r.Index
	}
	return c
}

// optionalFields are the omitempty fields of current: a new version
// without them must remove the previous version's.
var optionalFields = append([]string{"deleted", "raw"}, indexFieldNames...)

// indexFieldNames are the bson names of the fields of Index.
var indexFieldNames = []string{"tok", "txt", "str", "strx", "ref", "uri", "has", "dlo", "dhi", "num", "nlo", "nhi", "drg", "nrg", "sa", "sd"}

func has(d bson.D, key string) bool {
	for _, e := range d {
		if e.Key == key {
			return true
		}
	}
	return false
}

type history struct {
	Key    string `bson:"_id"`
	Record `bson:",inline"`
	Txn    string `bson:"txn,omitempty"` // the transaction that wrote it, if any
}

func historyDoc(r *Record) history {
	return history{Key: versionKey(r.Type, r.ID, r.VersionID), Record: *r}
}

func (s *Store) nextSeq(ctx context.Context) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	seq, err := NextSeq(ctx, s.counters)
	if err != nil {
		return 0, storeErr(err, "allocate change sequence")
	}
	return seq, nil
}

// NextSeq allocates the next change sequence number in counters (exported
// for the load tool, which sends the same command with the bare driver).
func NextSeq(ctx context.Context, counters *mongo.Collection) (int64, error) {
	return addSeq(ctx, counters, 1)
}

// fillGap records that seq will never hold a change. Best effort: a reader
// also skips a gap once it is older than GapGrace.
func (s *Store) fillGap(ctx context.Context, seq int64) {
	ctx, cancel := s.op(context.WithoutCancel(ctx))
	defer cancel()
	_, _ = s.history.InsertOne(ctx, bson.D{
		{Key: "_id", Value: "void/" + strconv.FormatInt(seq, 10)},
		{Key: "seq", Value: seq},
		{Key: "void", Value: true},
		{Key: "ts", Value: time.Now().UTC()},
	})
}
