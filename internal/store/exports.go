package store

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Export levels.
const (
	ExportSystem  = "system"
	ExportPatient = "patient"
	ExportGroup   = "group"
)

// ExportJob is a bulk data export ($export), kept in the exports collection
// so that any service instance can run it, resume it after a crash and
// serve its files. One runner holds it at a time: Owner until Lease. Its
// output is NDJSON in chunks of the export_files collection, each file a
// run of consecutive chunk numbers.
type ExportJob struct {
	ID    string `bson:"_id"`
	Level string `bson:"level"`
	// Patients restrict a patient or group export to the compartments of
	// these Patient ids (a Group's members, as at kick-off); empty at
	// patient level: every patient.
	Patients []string  `bson:"patients,omitempty"`
	Types    []string  `bson:"types,omitempty"` // _type; empty: every type
	Since    time.Time `bson:"since,omitempty"` // _since; zero: none
	Request  string    `bson:"request"`         // the kick-off URL, for the manifest
	// Requester names the principal that kicked the job off (see
	// bulkexport.Request): only it may poll, fetch or cancel the job.
	Requester string `bson:"requester,omitempty"`
	// TransactionTime is the snapshot: the versions current then are
	// exported.
	TransactionTime time.Time `bson:"tt"`
	// Recipient is whom the export discloses to (package disclosure): the
	// kick-off's principal. A job without one withholds all sensitive data.
	Recipient ExportRecipient `bson:"recipient"`
	State     string          `bson:"state"` // JobPending, JobRunning, JobDone
	// Plan is the types to export, fixed when the job starts; Step the one
	// being exported, After the last id done in it.
	Plan     []string     `bson:"plan,omitempty"`
	Step     int          `bson:"step"`
	After    string       `bson:"after"`
	Chunks   int64        `bson:"chunks"` // chunks written: numbers 0 to Chunks-1
	Files    []ExportFile `bson:"files,omitempty"`
	Owner    string       `bson:"owner"`
	Lease    time.Time    `bson:"lease"`
	Created  time.Time    `bson:"created"`
	Started  time.Time    `bson:"started,omitempty"`
	Finished time.Time    `bson:"finished,omitempty"`
	Expires  time.Time    `bson:"expires,omitempty"` // when a done job and its files are removed
}

// ExportFile is one output file: the resources of one type, in the chunks
// numbered First to Last-1.
type ExportFile struct {
	Type  string `bson:"type"`
	First int64  `bson:"first"`
	Last  int64  `bson:"last"`
	Count int64  `bson:"count"`
	// Withheld counts the resources the disclosure policy kept out.
	Withheld int64 `bson:"withheld,omitempty"`
}

// ExportRecipient is a stored disclosure.Recipient.
type ExportRecipient struct {
	Unrestricted bool     `bson:"all,omitempty"`
	Actors       []string `bson:"actors,omitempty"`
	ClientID     string   `bson:"client,omitempty"`
	Purposes     []string `bson:"purposes,omitempty"`
}

func chunkKey(job string, n int64) string { return job + "/" + strconv.FormatInt(n, 10) }

// CreateExport stores a new pending export job.
func (s *Store) CreateExport(ctx context.Context, j *ExportJob) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	j.State = JobPending
	_, err := s.exports.InsertOne(ctx, j)
	return storeErr(err, "create export job")
}

// Export returns an export job; a fault.NotFound error when there is none.
func (s *Store) Export(ctx context.Context, id string) (*ExportJob, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var j ExportJob
	err := s.exports.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fault.New(fault.NotFound, "", "there is no export job %s", id)
	}
	if err != nil {
		return nil, storeErr(err, "read export job")
	}
	return &j, nil
}

// Exports returns every export job without its patients and files (what a
// runner needs to pick the jobs to work on or to remove).
func (s *Store) Exports(ctx context.Context) ([]ExportJob, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	opts := options.Find().SetProjection(bson.D{{Key: "patients", Value: 0}, {Key: "files", Value: 0}}).
		SetSort(bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}})
	cur, err := s.exports.Find(ctx, bson.D{}, opts)
	if err != nil {
		return nil, storeErr(err, "read export jobs")
	}
	var out []ExportJob
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "read export jobs")
	}
	return out, nil
}

// ClaimExport takes the lease of an unfinished export job for owner (see
// ClaimJob); nil when another owner holds it, or it is done or gone.
func (s *Store) ClaimExport(ctx context.Context, id, owner string, now, lease time.Time) (*ExportJob, error) {
	var j ExportJob
	ok, err := s.claimLease(ctx, s.exports, id, owner, now, lease, &j)
	if err != nil || !ok {
		return nil, err
	}
	return &j, nil
}

// SaveExport writes the progress of an export job its owner holds,
// renewing the lease to j.Lease. It reports false when the owner lost the
// lease or the job was deleted: the caller must stop.
func (s *Store) SaveExport(ctx context.Context, j *ExportJob) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	set := bson.D{
		{Key: "state", Value: j.State}, {Key: "plan", Value: j.Plan}, {Key: "step", Value: j.Step},
		{Key: "after", Value: j.After}, {Key: "chunks", Value: j.Chunks}, {Key: "files", Value: j.Files},
		{Key: "lease", Value: j.Lease}, {Key: "started", Value: j.Started}, {Key: "finished", Value: j.Finished},
		{Key: "expires", Value: j.Expires},
	}
	return s.saveLeased(ctx, s.exports, j.ID, j.Owner, set)
}

// PutChunk writes chunk n of a job's output. Writing it again (a runner
// resuming after a crash redoes its last batch) replaces it; both commands
// address the chunk by _id, which FerretDB serves without a scan.
func (s *Store) PutChunk(ctx context.Context, job string, n int64, data []byte) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	key := chunkKey(job, n)
	_, err := s.exportFiles.InsertOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "data", Value: data}})
	if mongo.IsDuplicateKeyError(err) {
		_, err = s.exportFiles.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: data}}}})
	}
	return storeErr(err, "write export chunk")
}

// Chunk reads chunk n of a job's output.
func (s *Store) Chunk(ctx context.Context, job string, n int64) ([]byte, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var c struct {
		Data []byte `bson:"data"`
	}
	err := s.exportFiles.FindOne(ctx, bson.D{{Key: "_id", Value: chunkKey(job, n)}}).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fault.New(fault.NotFound, "", "the export file is gone")
	}
	if err != nil {
		return nil, storeErr(err, "read export chunk")
	}
	return c.Data, nil
}

// DeleteExport removes an export job, then its chunks, and returns the job
// as it was (nil when it did not exist). Removing the job first makes its
// status and files 404 at once.
func (s *Store) DeleteExport(ctx context.Context, id string) (*ExportJob, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	var j ExportJob
	err := s.exports.FindOneAndDelete(octx, bson.D{{Key: "_id", Value: id}}).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err, "delete export job")
	}
	return &j, s.DeleteChunks(ctx, id, j.Chunks)
}

// DeleteChunks removes the chunks of a job: the first n, and any after
// them (a runner may have written one past what it saved). One delete by
// _id each: FerretDB would scan the collection for any other filter.
func (s *Store) DeleteChunks(ctx context.Context, job string, n int64) error {
	for i := int64(0); ; i++ {
		octx, cancel := s.op(ctx)
		res, err := s.exportFiles.DeleteOne(octx, bson.D{{Key: "_id", Value: chunkKey(job, i)}})
		cancel()
		if err != nil {
			return storeErr(err, "delete export chunk")
		}
		if i >= n && res.DeletedCount == 0 {
			return nil
		}
	}
}

// TypeCount is how many resources of a type are stored.
type TypeCount struct {
	Type string `bson:"_id"`
	N    int64  `bson:"n"`
}

// CountByType counts the resources of each stored type (tombstones
// included), by type name: one pass over the collection, where a count per
// type would make one each on the embedded store.
func (s *Store) CountByType(ctx context.Context) ([]TypeCount, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.resources.Aggregate(ctx, bson.A{
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$type"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
	})
	if err != nil {
		return nil, storeErr(err, "count resources")
	}
	var out []TypeCount
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "count resources")
	}
	return out, nil
}

// Types returns the resource types that have current versions (tombstones
// included), sorted. A $group, not distinct: the driver could not decode
// FerretDB 1.24's distinct answer.
func (s *Store) Types(ctx context.Context) ([]string, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.resources.Aggregate(ctx, bson.A{
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$type"}}}},
		bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
	})
	if err != nil {
		return nil, storeErr(err, "list resource types")
	}
	var groups []struct {
		Type string `bson:"_id"`
	}
	if err := cur.All(ctx, &groups); err != nil {
		return nil, storeErr(err, "list resource types")
	}
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = g.Type
	}
	return out, nil
}
