package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// A transaction writes many versions atomically without multi-document
// transactions (the embedded FerretDB has none). Its document in txns is
// the commit record (see docs/architecture.md, "data flow of a transaction"):
//
//	pending   intent written; history documents carry its id and are invisible
//	committed the commit point: its history documents are visible
//	aborted   its history documents are being removed
//	voided    removed and its sequence numbers filled (kept: a reader may still
//	          hold one of its documents, and a missing txn means committed)
//
// A committed transaction's document is deleted once resources is rolled
// forward, so txns only holds transactions in flight and the rare aborted
// ones.
const (
	txnPending   = "pending"
	txnCommitted = "committed"
	txnAborted   = "aborted"
	txnVoided    = "voided"
)

// Transaction stages, named to TxnHook.
const (
	StageSequence = "sequence" // sequence numbers allocated
	StageIntent   = "intent"   // pending txn document inserted
	StageHistory  = "history"  // one batch of history documents inserted
	StageCommit   = "commit"   // txn document committed
	StageProject  = "project"  // resources rolled forward
)

// ErrSimulatedCrash, returned by a TxnHook, stops CommitTxn at once without
// any cleanup, leaving the store as a killed process would.
var ErrSimulatedCrash = errors.New("simulated crash")

// txnBatch bounds the documents of one insert or bulk write, and
// txnBatchBytes the resources' JSON in one: the driver and the embedded
// store each hold a batch several times over while it is sent, so a big
// bundle goes in slices instead of one message of its whole size.
const (
	txnBatch      = 500
	txnBatchBytes = 64 << 10
)

// batchEnd returns the end of the batch of recs that starts at from.
func batchEnd(recs []*Record, from int) int {
	end, size := from, 0
	for end < len(recs) && end-from < txnBatch && (end == from || size+len(recs[end].Raw) <= txnBatchBytes) {
		size += len(recs[end].Raw)
		end++
	}
	return end
}

type txnDoc struct {
	ID       string    `bson:"_id"`
	State    string    `bson:"state"`
	Owner    string    `bson:"owner"`
	Created  time.Time `bson:"created"`
	First    int64     `bson:"first"` // the sequence numbers it holds: first..last
	Last     int64     `bson:"last"`
	Versions []string  `bson:"versions"` // history _ids it writes
}

// txnCache remembers committed transactions: that never changes.
type txnCache struct {
	mu        sync.Mutex
	committed map[string]bool
}

func (c *txnCache) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed[id]
}

func (c *txnCache) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.committed == nil {
		c.committed = map[string]bool{}
	}
	c.committed[id] = true
}

// visible reports whether a history document of transaction id (empty: a
// single write) is committed.
func (s *Store) visible(ctx context.Context, id string) (bool, error) {
	if id == "" || s.txnCache.has(id) {
		return true, nil
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var t txnDoc
	err := s.txns.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) || err == nil && t.State == txnCommitted {
		// Deleted only once committed and applied.
		s.txnCache.add(id)
		return true, nil
	}
	if err != nil {
		return false, storeErr(err, "read transaction state")
	}
	return false, nil
}

func (s *Store) hook(stage string) error {
	if s.txnHook == nil {
		return nil
	}
	return s.txnHook(stage)
}

// CommitTxn writes recs, each the next version of a distinct resource (1
// for a new one), all or nothing. It allocates their sequence numbers in
// order. When another writer took one of the versions first it returns
// ErrVersionTaken and nothing is visible.
//
// Commands: the sequence, the intent, one insert per 500 versions, the
// commit, one bulk write per 500 versions, the cleanup (about 5 for a
// bundle of Synthea's size).
func (s *Store) CommitTxn(ctx context.Context, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	allocated := time.Now()
	last, err := s.allocSeqs(ctx, int64(len(recs)))
	if err != nil {
		return err
	}
	t := &txnDoc{ID: "txn/" + newTxnID(), State: txnPending, Owner: s.owner, Created: allocated.UTC(),
		First: last - int64(len(recs)) + 1, Last: last}
	for i, r := range recs {
		r.Seq = t.First + int64(i)
		t.Versions = append(t.Versions, versionKey(r.Type, r.ID, r.VersionID))
	}
	if err := s.hook(StageSequence); err != nil {
		if errors.Is(err, ErrSimulatedCrash) {
			return err
		}
		s.fillRange(ctx, t.First, t.Last)
		return err
	}
	ictx, cancel := s.op(ctx)
	_, err = s.txns.InsertOne(ictx, t)
	cancel()
	if err == nil {
		err = s.hook(StageIntent)
	}
	if errors.Is(err, ErrSimulatedCrash) {
		return err
	}
	if err != nil {
		s.fillRange(ctx, t.First, t.Last)
		return storeErr(err, "record transaction intent")
	}
	inserted, err := s.insertTxnHistory(ctx, t, recs, allocated)
	if errors.Is(err, ErrSimulatedCrash) {
		return err
	}
	if err != nil {
		s.abort(context.WithoutCancel(ctx), t, t.Versions[:inserted])
		return err
	}
	if err := s.commitTxn(ctx, t); err != nil {
		return err
	}
	// Committed: whatever fails now, recovery rolls it forward. A failed
	// roll-forward is tried again at once, so that the writer's next read
	// sees its versions without waiting for recovery.
	err = s.hook(StageCommit)
	if err == nil {
		for attempt := 0; attempt < 3; attempt++ {
			if err = s.projectAll(context.WithoutCancel(ctx), recs); err == nil {
				break
			}
		}
		if err == nil {
			err = s.hook(StageProject)
		}
	}
	if errors.Is(err, ErrSimulatedCrash) {
		return err
	}
	if err == nil {
		s.forget(ctx, t.ID)
	}
	return nil
}

// insertTxnHistory inserts the versions in ordered batches and returns
// how many are in. Each batch must start well within GapGrace of the
// allocation, or change-log readers may have skipped the numbers.
func (s *Store) insertTxnHistory(ctx context.Context, t *txnDoc, recs []*Record, allocated time.Time) (int, error) {
	done := 0
	for done < len(recs) {
		if time.Since(allocated) > min(GapGrace, s.txnDeadline)/2 {
			return done, fault.New(fault.Unavailable, "", "the transaction took too long to write; nothing was stored")
		}
		end := batchEnd(recs, done)
		docs := make([]any, 0, end-done)
		for _, r := range recs[done:end] {
			docs = append(docs, history{Key: versionKey(r.Type, r.ID, r.VersionID), Record: *r, Txn: t.ID})
		}
		hctx, cancel := s.op(ctx)
		_, err := s.history.InsertMany(hctx, docs, options.InsertMany().SetOrdered(true))
		cancel()
		if err != nil {
			var bwe mongo.BulkWriteException
			if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
				done += bwe.WriteErrors[0].Index // ordered: those before it are in
			}
			if mongo.IsDuplicateKeyError(err) {
				return done, ErrVersionTaken
			}
			// Unknown how much is in: recovery removes by the txn id.
			return done, storeErr(err, "insert transaction versions")
		}
		done = end
		if err := s.hook(StageHistory); err != nil {
			return done, err
		}
	}
	return done, nil
}

// commitTxn is the commit point: pending → committed, conditional so that
// exactly one of commit and a recovery's abort wins.
func (s *Store) commitTxn(ctx context.Context, t *txnDoc) error {
	cctx, cancel := s.op(ctx)
	defer cancel()
	res, err := s.txns.UpdateOne(cctx, bson.D{{Key: "_id", Value: t.ID}, {Key: "state", Value: txnPending}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: txnCommitted}}}})
	if err == nil && res.MatchedCount == 1 {
		s.txnCache.add(t.ID)
		return nil
	}
	if err == nil {
		return fault.New(fault.Conflict, "", "the transaction was aborted by recovery before it could commit; nothing was stored")
	}
	// The outcome is unknown; the state says.
	if ok, verr := s.visible(context.WithoutCancel(ctx), t.ID); verr == nil && ok {
		return nil
	}
	return storeErr(err, "commit transaction")
}

// abort makes a pending transaction aborted (unless it committed
// meanwhile) and removes its versions. known are the history _ids this
// writer knows it inserted; recovery passes nil and looks them up.
func (s *Store) abort(ctx context.Context, t *txnDoc, known []string) {
	actx, cancel := s.op(ctx)
	res, err := s.txns.UpdateOne(actx, bson.D{{Key: "_id", Value: t.ID}, {Key: "state", Value: txnPending}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: txnAborted}}}})
	cancel()
	if err != nil || res.MatchedCount == 0 {
		return // committed, or the store failed: recovery decides
	}
	_ = s.clean(ctx, t, known)
}

// clean removes the versions of an aborted transaction, fills its sequence
// numbers and marks it voided. Idempotent: recovery repeats it.
func (s *Store) clean(ctx context.Context, t *txnDoc, known []string) error {
	if known == nil {
		var err error
		if known, err = s.ownVersions(ctx, t); err != nil {
			return err
		}
	}
	for len(known) > 0 {
		n := min(txnBatch, len(known))
		models := make([]mongo.WriteModel, 0, n)
		for _, k := range known[:n] {
			// By _id alone, which FerretDB looks up without a scan: these
			// are versions this transaction inserted.
			models = append(models, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: k}}))
		}
		dctx, cancel := s.op(ctx)
		_, err := s.history.BulkWrite(dctx, models, options.BulkWrite().SetOrdered(false))
		cancel()
		if err != nil {
			return storeErr(err, "remove aborted transaction versions")
		}
		known = known[n:]
	}
	if err := s.fillRange(ctx, t.First, t.Last); err != nil {
		return err
	}
	vctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.txns.UpdateOne(vctx, bson.D{{Key: "_id", Value: t.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: txnVoided}, {Key: "versions", Value: bson.A{}}}}})
	return storeErr(err, "void transaction")
}

// ownVersions returns the history _ids of t's versions that t inserted
// (a version with the same _id may be another writer's).
func (s *Store) ownVersions(ctx context.Context, t *txnDoc) ([]string, error) {
	if len(t.Versions) == 0 {
		return nil, nil
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.history.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: t.Versions}}}},
		options.Find().SetProjection(bson.D{{Key: "txn", Value: 1}}))
	if err != nil {
		return nil, storeErr(err, "read transaction versions")
	}
	var docs []struct {
		Key string `bson:"_id"`
		Txn string `bson:"txn"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, storeErr(err, "read transaction versions")
	}
	own := []string{}
	for _, d := range docs {
		if d.Txn == t.ID {
			own = append(own, d.Key)
		}
	}
	return own, nil
}

// projectAll rolls resources forward to recs in bulk writes: inserts for
// first versions, updates conditioned on the previous version otherwise.
// Idempotent: a duplicate insert or an unmatched update means it was done.
func (s *Store) projectAll(ctx context.Context, recs []*Record) error {
	for len(recs) > 0 {
		n := batchEnd(recs, 0)
		models := make([]mongo.WriteModel, 0, n)
		var updates []*Record
		var later []*Record // their entries go once the batch is written
		for _, r := range recs[:n] {
			if r.Index == nil && r.IndexLater != nil && !r.Deleted {
				r.Index = r.IndexLater(r)
				later = append(later, r)
			}
			switch {
			case r.VersionID == 1:
				models = append(models, mongo.NewInsertOneModel().SetDocument(CurrentDocument(r)))
			case s.embedded:
				updates = append(updates, r) // see updateVersion
			default:
				filter, update, err := ProjectionUpdate(r)
				if err != nil {
					return err
				}
				models = append(models, mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(update))
			}
		}
		var err error
		if len(models) > 0 {
			pctx, cancel := s.op(ctx)
			// A duplicate is a projection another writer made already; an
			// update matching nothing, one it replaced with a later version.
			_, err = s.resources.BulkWrite(pctx, models, options.BulkWrite().SetOrdered(false))
			cancel()
			if err != nil && onlyDuplicates(err) {
				err = nil
			}
		}
		for _, r := range updates {
			if err == nil {
				err = s.updateCurrent(ctx, r)
			}
		}
		for _, r := range later {
			r.Index = nil
		}
		if err != nil {
			return storeErr(err, "make versions current")
		}
		recs = recs[n:]
	}
	return nil
}

// forget deletes an applied transaction's document (best effort: recovery
// finds it committed and rolls forward again, idempotently).
func (s *Store) forget(ctx context.Context, id string) {
	ctx, cancel := s.op(context.WithoutCancel(ctx))
	defer cancel()
	_, _ = s.txns.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
}

// RecoverTxns finishes the transactions of writers that died: a pending
// one older than the deadline (Options.TxnDeadline) is aborted, a
// committed one rolled forward, an aborted one cleaned. Any instance may
// run it at any time; it runs at Open.
func (s *Store) RecoverTxns(ctx context.Context) error {
	fctx, cancel := s.op(ctx)
	// txns holds only transactions in flight and aborted ones: a small scan.
	cur, err := s.txns.Find(fctx, bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{txnPending, txnCommitted, txnAborted}}}}})
	var open []*txnDoc
	if err == nil {
		err = cur.All(fctx, &open)
	}
	cancel()
	if err != nil {
		return storeErr(err, "read open transactions")
	}
	for _, t := range open {
		switch {
		case t.State == txnPending && time.Since(t.Created) > s.txnDeadline:
			s.abort(ctx, t, nil)
		case t.State == txnAborted:
			err = s.clean(ctx, t, nil)
		case t.State == txnCommitted:
			err = s.rollTxnForward(ctx, t)
		}
		if err != nil {
			return fmt.Errorf("recover %s: %w", t.ID, err)
		}
	}
	return nil
}

// rollTxnForward projects a committed transaction's versions and forgets it.
func (s *Store) rollTxnForward(ctx context.Context, t *txnDoc) error {
	recs := make([]*Record, 0, len(t.Versions))
	for _, k := range t.Versions {
		var h history
		rctx, cancel := s.op(ctx)
		err := s.history.FindOne(rctx, bson.D{{Key: "_id", Value: k}}).Decode(&h)
		cancel()
		if err != nil {
			return storeErr(err, "read committed transaction version")
		}
		recs = append(recs, &h.Record)
	}
	for _, r := range recs {
		s.index(r) // history keeps no search entries
	}
	if err := s.projectAll(ctx, recs); err != nil {
		return err
	}
	s.forget(ctx, t.ID)
	return nil
}

// index sets r.Index with Options.Indexer, for versions read back from
// history.
func (s *Store) index(r *Record) {
	if s.indexer != nil && !r.Deleted {
		r.Index = s.indexer(r)
	}
}

// fillRange records that first..last will never hold changes: one void
// entry covering them all.
func (s *Store) fillRange(ctx context.Context, first, last int64) error {
	ctx, cancel := s.op(context.WithoutCancel(ctx))
	defer cancel()
	_, err := s.history.InsertOne(ctx, voidDoc(first, last))
	if mongo.IsDuplicateKeyError(err) {
		return nil // filled already
	}
	return storeErr(err, "fill aborted sequence numbers")
}

func voidDoc(first, last int64) bson.D {
	d := bson.D{
		{Key: "_id", Value: "void/" + strconv.FormatInt(first, 10)},
		{Key: "seq", Value: first},
		{Key: "void", Value: true},
		{Key: "ts", Value: time.Now().UTC()},
	}
	if last > first {
		d = append(d, bson.E{Key: "upto", Value: last})
	}
	return d
}

func newTxnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
