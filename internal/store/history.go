package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// HistoryQuery selects versions, newest first (by change sequence).
type HistoryQuery struct {
	Type, ID string    // both empty: system history; ID empty: type history
	Since    time.Time // zero: no lower bound on lastUpdated
	Before   int64     // page cursor: only versions with seq < Before (0: none)
	Count    int       // page size
}

// History returns one page of versions and whether more follow.
func (s *Store) History(ctx context.Context, q HistoryQuery) ([]*Record, bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	filter := bson.D{}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "type", Value: q.Type})
	} else {
		filter = append(filter, bson.E{Key: "void", Value: bson.D{{Key: "$ne", Value: true}}})
	}
	if q.ID != "" {
		filter = append(filter, bson.E{Key: "rid", Value: q.ID})
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "ts", Value: bson.D{{Key: "$gte", Value: q.Since}}})
	}
	if q.Before > 0 {
		filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$lt", Value: q.Before}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(int64(q.Count) + 1)
	cur, err := s.history.Find(ctx, filter, opts)
	if err != nil {
		return nil, false, storeErr(err, "read history")
	}
	var page []history
	if err := cur.All(ctx, &page); err != nil {
		return nil, false, storeErr(err, "read history")
	}
	more := len(page) > q.Count
	if more {
		page = page[:q.Count]
	}
	out := make([]*Record, 0, len(page))
	for i := range page {
		// A version of a transaction that has not committed is not there yet.
		ok, err := s.visible(ctx, page[i].Txn)
		if err != nil {
			return nil, false, err
		}
		if ok {
			out = append(out, &page[i].Record)
		}
	}
	return out, more, nil
}

// GapGrace is how long a change-log reader waits for a missing sequence
// number before it concludes the writer that allocated it died. Writers give
// up far sooner (Options.Timeout per command), so a live write is never skipped.
const GapGrace = time.Minute

// Change is one entry of the change log.
type Change struct {
	Record `bson:",inline"`
	Void   bool   `bson:"void,omitempty"`
	Upto   int64  `bson:"upto,omitempty"` // a void entry covering seq..upto
	Txn    string `bson:"txn,omitempty"`
}

// Changes returns committed changes with seq > after, in sequence order, at
// most limit, and the cursor to pass next time. It never returns a change
// past a missing sequence number: a writer allocates its number before it
// inserts, so a gap is a write still in flight that will commit with a lower
// number than what is already visible. A gap older than GapGrace (judged by
// the lastUpdated of the change after it) is a writer that died and is
// skipped; a gap left by a lost version race is filled at once by Commit.
// A change of a transaction that has not committed stops the reader like a
// gap, whatever its age: recovery either commits it or removes it and
// fills its numbers.
func (s *Store) Changes(ctx context.Context, after int64, limit int, now time.Time) ([]*Record, int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.history.Find(ctx,
		bson.D{{Key: "seq", Value: bson.D{{Key: "$gt", Value: after}}}},
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, after, storeErr(err, "read change log")
	}
	var page []Change
	if err := cur.All(ctx, &page); err != nil {
		return nil, after, storeErr(err, "read change log")
	}
	var out []*Record
	next := after
	for _, c := range page {
		if c.Seq != next+1 && now.Sub(c.LastUpdated) < GapGrace {
			break
		}
		if ok, err := s.visible(ctx, c.Txn); err != nil {
			return nil, after, err
		} else if !ok {
			break
		}
		next = max(c.Seq, c.Upto)
		if !c.Void {
			out = append(out, &c.Record)
		}
	}
	return out, next, nil
}
