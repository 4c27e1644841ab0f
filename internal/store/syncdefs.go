package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// EndpointDef is an EHR endpoint defined through the admin API, in
// sync_defs with _id its name. Definition is the endpoint in the form of a
// configuration file's entry (package ehr), as a document; it holds secret
// references (env:NAME, file:/path), never a secret's value.
type EndpointDef struct {
	Name       string    `bson:"_id"`
	Definition bson.Raw  `bson:"definition"`
	Updated    time.Time `bson:"updated"`
}

// PutEndpointDef creates or replaces an endpoint definition; true when it
// created it.
func (s *Store) PutEndpointDef(ctx context.Context, d *EndpointDef) (bool, error) {
	ictx, cancel := s.op(ctx)
	_, err := s.syncDefs.InsertOne(ictx, d)
	cancel()
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, storeErr(err, "write endpoint definition")
	}
	return false, s.putByID(ctx, s.syncDefs, d.Name, d, "write endpoint definition")
}

// DeleteEndpointDef removes an endpoint definition; false when there was
// none. The endpoint's delivery state (sync_endpoints, sync_ids,
// sync_dead) stays, so defining it again resumes from its cursor.
func (s *Store) DeleteEndpointDef(ctx context.Context, name string) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	res, err := s.syncDefs.DeleteOne(ctx, bson.D{{Key: "_id", Value: name}})
	if err != nil {
		return false, storeErr(err, "delete endpoint definition")
	}
	return res.DeletedCount == 1, nil
}

// EndpointDefs lists every endpoint definition by name. The collection
// holds a handful of documents: the engines of every instance read it
// whole every few seconds.
func (s *Store) EndpointDefs(ctx context.Context) ([]EndpointDef, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.syncDefs.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, storeErr(err, "read endpoint definitions")
	}
	var out []EndpointDef
	if err := cur.All(ctx, &out); err != nil {
		return nil, storeErr(err, "read endpoint definitions")
	}
	return out, nil
}
