package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// The driver side's collections: the service's layout under other names, so
// its data stays untouched.
const (
	benchResources = "bench_resources"
	benchHistory   = "bench_history"
	benchCounters  = "bench_counters"
)

// rawSide sends, with the driver alone, the store commands the service sends
// for each interaction:
//   - create: $inc the change counter (findAndModify), insert the version into
//     history, insert it into resources;
//   - read: find the current version by _id;
//   - update: find the current version, $inc the counter, insert the version
//     into history, update resources on _id and the previous version.
type rawSide struct {
	client    *mongo.Client
	db        *mongo.Database
	resources *mongo.Collection
	history   *mongo.Collection
	counters  *mongo.Collection
	opTimeout time.Duration
	ids       idPool
	params    *fhir.Registry // the built-in search parameters: the bench defines no custom ones
}

// connect opens the driver side's client with the service's settings: one
// connection on FerretDB, which applies updates by read-modify-write and is
// only atomic when commands are serialised; majority, journaled writes on
// MongoDB.
func connect(ctx context.Context, uri, database string, embedded bool, opTimeout time.Duration) (*rawSide, error) {
	co := options.Client().ApplyURI(uri).SetServerSelectionTimeout(opTimeout)
	if embedded {
		co.SetMaxPoolSize(1)
	} else {
		j := true
		co.SetWriteConcern(&writeconcern.WriteConcern{W: "majority", Journal: &j})
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	db := client.Database(database)
	r := &rawSide{
		client: client, db: db,
		resources: db.Collection(benchResources),
		history:   db.Collection(benchHistory),
		counters:  db.Collection(benchCounters),
		opTimeout: opTimeout,
		params:    fhir.NewRegistry(),
	}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("ping MongoDB: %w", err)
	}
	return r, nil
}

// prepare drops what an interrupted run may have left and creates the
// service's indexes on the bench collections, so writes maintain as many
// indexes as the service's do.
func (r *rawSide) prepare(ctx context.Context) error {
	if err := r.drop(ctx); err != nil {
		return err
	}
	names := map[string]string{"resources": benchResources, "history": benchHistory}
	for coll, models := range store.Indexes() {
		name, ok := names[coll]
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.opTimeout)
		var ms []mongo.IndexModel
		for _, ix := range models {
			ms = append(ms, mongo.IndexModel{Keys: ix.Keys, Options: options.Index().SetName(ix.Name).SetUnique(ix.Unique)})
		}
		_, err := r.db.Collection(name).Indexes().CreateMany(cctx, ms)
		cancel()
		if err != nil {
			return fmt.Errorf("create indexes on %s: %w", name, err)
		}
	}
	return nil
}

// drop removes the bench collections.
func (r *rawSide) drop(ctx context.Context) error {
	for _, c := range []*mongo.Collection{r.resources, r.history, r.counters} {
		cctx, cancel := context.WithTimeout(ctx, r.opTimeout)
		err := c.Drop(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("drop %s: %w", c.Name(), err)
		}
	}
	return nil
}

func (r *rawSide) close() { _ = r.client.Disconnect(context.Background()) }

func (r *rawSide) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opTimeout)
}

// record is version vid of Observation id as the service would store it,
// with the search index the service would compute.
func (r *rawSide) record(i int, id string, vid int64, method string) (*store.Record, error) {
	update := method == "PUT"
	now := time.Now().UTC().Truncate(time.Millisecond)
	raw := observation(i, update, id, strconv.FormatInt(vid, 10), now)
	res, err := fhir.ParseResource(raw)
	if err != nil {
		return nil, err
	}
	return &store.Record{
		Type: "Observation", ID: id, VersionID: vid, LastUpdated: now, Method: method,
		Raw: string(raw), Index: search.Index(r.params, res),
	}, nil
}

type historyDoc struct {
	Key          string `bson:"_id"`
	store.Record `bson:",inline"`
}

// errVersionTaken: another writer inserted this version first.
var errVersionTaken = errors.New("version already committed")

// commit is the service's Commit: sequence, history insert, and the
// projection into resources (an insert for version 1, else an update
// conditioned on the previous version).
func (r *rawSide) commit(ctx context.Context, rec *store.Record) error {
	cctx, cancel := r.op(ctx)
	seq, err := store.NextSeq(cctx, r.counters)
	cancel()
	if err != nil {
		return fmt.Errorf("allocate sequence: %w", err)
	}
	rec.Seq = seq
	key := store.Key(rec.Type, rec.ID)
	cctx, cancel = r.op(ctx)
	_, err = r.history.InsertOne(cctx, historyDoc{Key: key + "/_history/" + strconv.FormatInt(rec.VersionID, 10), Record: *rec})
	cancel()
	if mongo.IsDuplicateKeyError(err) {
		return errVersionTaken
	}
	if err != nil {
		return fmt.Errorf("insert version: %w", err)
	}
	cctx, cancel = r.op(ctx)
	defer cancel()
	if rec.VersionID == 1 {
		_, err = r.resources.InsertOne(cctx, store.CurrentDocument(rec))
		if err != nil && !mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("insert current version: %w", err)
		}
		return nil
	}
	filter, update, err := store.ProjectionUpdate(rec)
	if err != nil {
		return err
	}
	_, err = r.resources.UpdateOne(cctx, filter, update)
	if err != nil {
		return fmt.Errorf("update current version: %w", err)
	}
	return nil
}

func (r *rawSide) current(ctx context.Context, id string) (*store.Record, error) {
	cctx, cancel := r.op(ctx)
	defer cancel()
	var rec store.Record
	if err := r.resources.FindOne(cctx, bson.D{{Key: "_id", Value: store.Key("Observation", id)}}).Decode(&rec); err != nil {
		return nil, fmt.Errorf("find Observation/%s: %w", id, err)
	}
	return &rec, nil
}

func (r *rawSide) create(ctx context.Context, i int) error {
	id := resource.NewID()
	rec, err := r.record(i, id, 1, "POST")
	if err != nil {
		return err
	}
	if err := r.commit(ctx, rec); err != nil {
		return err
	}
	r.ids.add(id)
	return nil
}

func (r *rawSide) read(ctx context.Context, i int) error {
	id, err := r.ids.pick(i)
	if err != nil {
		return err
	}
	rec, err := r.current(ctx, id)
	if err != nil {
		return err
	}
	if rec.Raw == "" {
		return fmt.Errorf("Observation/%s has no content", id)
	}
	return nil
}

func (r *rawSide) update(ctx context.Context, i int) error {
	id, err := r.ids.pick(i)
	if err != nil {
		return err
	}
	// Like the service, try again when a concurrent writer took the version.
	for attempt := 0; attempt < 10; attempt++ {
		prev, err := r.current(ctx, id)
		if err != nil {
			return err
		}
		rec, err := r.record(i, id, prev.VersionID+1, "PUT")
		if err != nil {
			return err
		}
		err = r.commit(ctx, rec)
		if !errors.Is(err, errVersionTaken) {
			return err
		}
	}
	return fmt.Errorf("update Observation/%s: lost 10 version races", id)
}

// serverInfo is what the store says about itself.
type serverInfo struct {
	Version         string `bson:"version"`
	FerretDBVersion string `bson:"ferretdbVersion"`
}

func (r *rawSide) serverInfo(ctx context.Context) (serverInfo, error) {
	cctx, cancel := r.op(ctx)
	defer cancel()
	var si serverInfo
	err := r.db.RunCommand(cctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&si)
	return si, err
}

// countDocs counts the documents of the named collections, the service's
// AuditEvents apart (under "audit_events", those of "resources"): it
// writes one per request in the background, so how many are stored when
// the run ends depends on what is still queued.
func (r *rawSide) countDocs(ctx context.Context, names ...string) (map[string]int64, error) {
	out := map[string]int64{}
	count := func(name string, filter bson.D) (int64, error) {
		cctx, cancel := r.op(ctx)
		defer cancel()
		n, err := r.db.Collection(name).CountDocuments(cctx, filter)
		if err != nil {
			return 0, fmt.Errorf("count %s: %w", name, err)
		}
		return n, nil
	}
	for _, name := range names {
		n, err := count(name, bson.D{{Key: "type", Value: bson.D{{Key: "$ne", Value: audit.ResourceType}}}})
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	n, err := count("resources", bson.D{{Key: "type", Value: audit.ResourceType}})
	if err != nil {
		return nil, err
	}
	out["audit_events"] = n
	return out, nil
}
