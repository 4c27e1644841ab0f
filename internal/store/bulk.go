package store

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Bulk writes (import): the same commit as Commit, a batch at a time. Each
// record is still committed by the insert of its own history document, so
// a batch is not atomic: every record commits or loses on its own, and a
// crash between the history inserts and the projections is repaired by
// Open like a single write's (batches are smaller than repairWindow).

// CurrentMany returns the current versions (tombstones included) of the
// resources with the given keys (Key(type, id)) that exist.
func (s *Store) CurrentMany(ctx context.Context, keys []string) (map[string]*Record, error) {
	out := make(map[string]*Record, len(keys))
	if s.embedded {
		// FerretDB filters {_id: value} in SQLite but decodes every
		// document of the collection for {_id: {$in: ...}}: measured with
		// 1,100 Synthea resources, one $in costs about ten _id lookups.
		for _, k := range keys {
			if err := s.findCurrent(ctx, bson.D{{Key: "_id", Value: k}}, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return out, s.findCurrent(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}}, out)
}

func (s *Store) findCurrent(ctx context.Context, filter bson.D, into map[string]*Record) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.resources.Find(ctx, filter)
	if err != nil {
		return storeErr(err, "read current versions")
	}
	var recs []*Record
	if err := cur.All(ctx, &recs); err != nil {
		return storeErr(err, "read current versions")
	}
	for _, r := range recs {
		into[Key(r.Type, r.ID)] = r
	}
	return nil
}

// CommitMany commits each record as Commit does, in a few commands for the
// whole batch: one sequence allocation, one insertMany into history, one
// insertMany of the new resources' projections and one bulk update of the
// others'. The result holds one error per record: nil when it committed,
// ErrVersionTaken when another writer (or an earlier record of the batch
// with the same id) committed that version first. An error for the whole
// batch (the store failed) comes back as the second result; which records
// committed is then unknown, as after a failed Commit.
func (s *Store) CommitMany(ctx context.Context, recs []*Record) ([]error, error) {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs, nil
	}
	last, err := s.allocSeqs(ctx, int64(len(recs)))
	if err != nil {
		return nil, err
	}
	docs := make([]any, len(recs))
	for i, r := range recs {
		r.Seq = last - int64(len(recs)) + 1 + int64(i)
		docs[i] = historyDoc(r)
	}
	hctx, cancel := s.op(ctx)
	_, err = s.history.InsertMany(hctx, docs, options.InsertMany().SetOrdered(false))
	cancel()
	var bwe mongo.BulkWriteException
	switch {
	case err == nil:
	case errors.As(err, &bwe) && bwe.WriteConcernError == nil:
		for _, we := range bwe.WriteErrors {
			r := recs[we.Index]
			s.fillGap(ctx, r.Seq)
			errs[we.Index] = storeErr(we, "commit version")
			if isDuplicate(we.WriteError) {
				errs[we.Index] = ErrVersionTaken
				s.rollForward(ctx, r)
			}
		}
	default:
		return nil, storeErr(err, "commit versions")
	}
	return errs, s.projectMany(ctx, recs, errs)
}

// rollForward makes the winner of r's version current, in case it died
// before doing so itself (as Commit does for a lost race).
func (s *Store) rollForward(ctx context.Context, r *Record) {
	if w, err := s.Version(ctx, r.Type, r.ID, r.VersionID); err == nil {
		_ = s.project(ctx, w)
	}
}

// projectMany makes the records committed without error current.
func (s *Store) projectMany(ctx context.Context, recs []*Record, errs []error) error {
	var ok []*Record
	for i, r := range recs {
		if errs[i] == nil {
			ok = append(ok, r)
		}
	}
	return s.projectAll(ctx, ok)
}

func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if !isDuplicate(we.WriteError) {
			return false
		}
	}
	return true
}

func isDuplicate(we mongo.WriteError) bool {
	return mongo.IsDuplicateKeyError(mongo.WriteException{WriteErrors: []mongo.WriteError{we}})
}

// allocSeqs allocates n consecutive change sequence numbers and returns the
// last.
func (s *Store) allocSeqs(ctx context.Context, n int64) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	seq, err := addSeq(ctx, s.counters, n)
	if err != nil {
		return 0, storeErr(err, "allocate change sequence")
	}
	return seq, nil
}

// addSeq adds n to the change sequence and returns the new value.
func addSeq(ctx context.Context, counters *mongo.Collection, n int64) (int64, error) {
	var c struct {
		Seq int64 `bson:"seq"`
	}
	err := counters.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: "changes"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "seq", Value: n}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After),
	).Decode(&c)
	return c.Seq, err
}
