package store

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Guard serialises conditional creates with the same criteria: whoever
// inserts the guard for a criteria key may create; the others wait for the
// winner's resource. Key is the normalised criteria, Target the resource key
// ("Type/id") the holder creates.
type Guard struct {
	Key    string    `bson:"_id"`
	Target string    `bson:"target"`
	Since  time.Time `bson:"since"`
}

// ClaimGuard inserts the guard. When one exists already it returns that one
// and false.
func (s *Store) ClaimGuard(ctx context.Context, g Guard) (*Guard, bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.guards.InsertOne(ctx, g)
	if err == nil {
		return &g, true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return nil, false, storeErr(err, "claim conditional-create guard")
	}
	var held Guard
	err = s.guards.FindOne(ctx, bson.D{{Key: "_id", Value: g.Key}}).Decode(&held)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, false, ErrVersionTaken // released meanwhile: the caller retries
	}
	if err != nil {
		return nil, false, storeErr(err, "read conditional-create guard")
	}
	return &held, false, nil
}

// TakeOverGuard replaces a guard whose holder is gone (its resource was
// deleted, or never written) if it still names old.Target.
func (s *Store) TakeOverGuard(ctx context.Context, old *Guard, g Guard) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	res, err := s.guards.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: old.Key}, {Key: "target", Value: old.Target}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "target", Value: g.Target}, {Key: "since", Value: g.Since}}}})
	if err != nil {
		return false, storeErr(err, "take over conditional-create guard")
	}
	return res.ModifiedCount == 1, nil
}

// ReleaseGuard deletes g if it still names g.Target, so that a holder that
// did not create gives the criteria back at once. A guard taken over
// meanwhile belongs to its new holder and stays.
func (s *Store) ReleaseGuard(ctx context.Context, g Guard) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err := s.guards.DeleteOne(ctx, bson.D{{Key: "_id", Value: g.Key}, {Key: "target", Value: g.Target}})
	return storeErr(err, "release conditional-create guard")
}
