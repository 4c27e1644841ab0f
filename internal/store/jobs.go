package store

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Job states.
const (
	JobPending = "pending"
	JobRunning = "running"
	JobDone    = "done"
)

// Job is a background reindex of the resources of some types after a
// custom search parameter changed, kept in the jobs collection so that any
// service instance can resume it. One runner holds it at a time: Owner
// until Lease.
type Job struct {
	ID      string   `bson:"_id"` // SearchParameter/<id>/_history/<version>
	Param   string   `bson:"param"`
	Version int64    `bson:"version"`
	URL     string   `bson:"url,omitempty"`
	Code    string   `bson:"code"`
	Types   []string `bson:"types"`
	State   string   `bson:"state"`
	// Phase 0 scans every resource of Types by _id; phase 1 scans again
	// those written since Created minus the settle time (see package
	// reindex).
	Phase    int       `bson:"phase"`
	After    string    `bson:"after"` // the last _id done in the phase
	Done     int64     `bson:"done"`  // resources scanned in phase 0
	Total    int64     `bson:"total"` // resources of Types when phase 0 began
	Owner    string    `bson:"owner"`
	Lease    time.Time `bson:"lease"`
	Created  time.Time `bson:"created"`
	Started  time.Time `bson:"started,omitempty"`
	Finished time.Time `bson:"finished,omitempty"`
}

// ReindexJobID is the id of the reindex job of a SearchParameter version.
func ReindexJobID(id string, version int64) string {
	return versionKey("SearchParameter", id, version)
}

// CreateJob stores a new pending job; a job with that id existing already
// is not an error (creating it is idempotent).
func (s *Store) CreateJob(ctx context.Context, j *Job) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	j.State = JobPending
	_, err := s.jobs.InsertOne(ctx, j)
	if mongo.IsDuplicateKeyError(err) {
		return nil
	}
	return storeErr(err, "create job")
}

// Jobs returns every job, oldest first.
func (s *Store) Jobs(ctx context.Context) ([]Job, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.jobs.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, storeErr(err, "read jobs")
	}
	var out []Job
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "read jobs")
	}
	return out, nil
}

// ClaimJob takes the lease of an unfinished job for owner until lease,
// when no other owner holds an unexpired one. It returns nil when the job
// is held by another owner or finished. The update is conditioned on the
// lease, so two runners never both win it.
func (s *Store) ClaimJob(ctx context.Context, id, owner string, now, lease time.Time) (*Job, error) {
	var j Job
	ok, err := s.claimLease(ctx, s.jobs, id, owner, now, lease, &j)
	if err != nil || !ok {
		return nil, err
	}
	return &j, nil
}

// claimLease takes the lease of document id of c, an unfinished job
// (state not done), for owner until lease when no other owner holds an
// unexpired one, and decodes the job into out. It reports false when
// another owner holds it or it is done. The update is conditioned on the
// lease, so two runners never both win it. Reindex and export jobs share
// it.
func (s *Store) claimLease(ctx context.Context, c *mongo.Collection, id, owner string, now, lease time.Time, out any) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	filter := bson.D{
		{Key: "_id", Value: id},
		{Key: "state", Value: bson.D{{Key: "$ne", Value: JobDone}}},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "owner", Value: ""}},
			bson.D{{Key: "owner", Value: owner}},
			bson.D{{Key: "lease", Value: bson.D{{Key: "$lt", Value: now}}}},
		}},
	}
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: owner}, {Key: "lease", Value: lease}, {Key: "state", Value: JobRunning}}}}
	err := c.FindOneAndUpdate(ctx, filter, update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, storeErr(err, "claim job")
	}
	return true, nil
}

// SaveJob writes the progress of a job its owner holds, renewing the lease
// to j.Lease. It reports false when the owner lost the lease (another
// runner took it over): the caller must stop.
func (s *Store) SaveJob(ctx context.Context, j *Job) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	set := bson.D{
		{Key: "state", Value: j.State}, {Key: "phase", Value: j.Phase}, {Key: "after", Value: j.After},
		{Key: "done", Value: j.Done}, {Key: "total", Value: j.Total}, {Key: "lease", Value: j.Lease},
		{Key: "started", Value: j.Started}, {Key: "finished", Value: j.Finished},
	}
	return s.saveLeased(ctx, s.jobs, j.ID, j.Owner, set)
}

// saveLeased $sets fields of job id of c if owner still holds it, and
// reports whether it did.
func (s *Store) saveLeased(ctx context.Context, c *mongo.Collection, id, owner string, set bson.D) (bool, error) {
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}}, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return false, storeErr(err, "save job")
	}
	return res.MatchedCount == 1, nil
}

// CountCurrent returns how many resources of types exist (tombstones
// included).
func (s *Store) CountCurrent(ctx context.Context, types []string) (int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.resources.CountDocuments(ctx, bson.D{{Key: "type", Value: bson.D{{Key: "$in", Value: types}}}})
	return n, storeErr(err, "count resources")
}

// CurrentAfter returns up to limit current versions of types (tombstones
// included) with _id after the cursor, in _id order; since, when not zero,
// keeps those last updated at or after it. Reindexing walks the resources
// with it.
func (s *Store) CurrentAfter(ctx context.Context, types []string, after string, since time.Time, limit int) ([]*Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	f := bson.D{{Key: "type", Value: bson.D{{Key: "$in", Value: types}}}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: after}}}}
	if !since.IsZero() {
		f = append(f, bson.E{Key: "ts", Value: bson.D{{Key: "$gte", Value: since}}})
	}
	cur, err := s.resources.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, storeErr(err, "read resources to reindex")
	}
	var out []*Record
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "read resources to reindex")
	}
	return out, nil
}

// SetIndex replaces the search index entries of r's current document if r
// is still the current version (a concurrent write is never clobbered: it
// brought its own entries). It reports whether it did.
func (s *Store) SetIndex(ctx context.Context, r *Record, ix *Index) (bool, error) {
	raw, err := bson.Marshal(ix)
	if err != nil {
		return false, storeErr(err, "encode index")
	}
	var set bson.D
	if err := bson.Unmarshal(raw, &set); err != nil {
		return false, storeErr(err, "encode index")
	}
	var unset bson.D
	for _, name := range indexFieldNames {
		if !has(set, name) {
			unset = append(unset, bson.E{Key: name, Value: ""})
		}
	}
	var update bson.D
	if len(set) > 0 {
		update = append(update, bson.E{Key: "$set", Value: set})
	}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	ok, err := s.updateVersion(ctx, Key(r.Type, r.ID), r.VersionID, update)
	return ok, storeErr(err, "update index")
}
