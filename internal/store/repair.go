package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kapfhir/kapfhir/internal/fault"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// repairWindow is how many of the latest changes Open checks for a
// projection left behind. A writer can only die between its history insert
// and its projection while it runs, so only the last few changes can need it.
const repairWindow = 1000

// repair rolls the current projection forward to versions whose writer died
// after committing them to history. Without it such a version would stay
// invisible to reads until the resource's next write.
func (s *Store) repair(ctx context.Context) error {
	latest, have, err := s.projectionBehind(ctx)
	if err != nil {
		return err
	}
	// Each version is its own pair of commands with its own time limit: a
	// big transaction cut short may leave many.
	for k, r := range latest {
		for v := have[k] + 1; v <= r.VersionID; v++ {
			rec, err := s.Version(ctx, r.Type, r.ID, v)
			if fault.Is(err, fault.NotFound) {
				break // a transaction in flight; RecoverTxns finishes it
			}
			if err != nil {
				return fmt.Errorf("repair %s: %w", k, err)
			}
			s.index(rec)
			if err := s.project(ctx, rec); err != nil {
				return fmt.Errorf("repair %s: %w", k, err)
			}
		}
	}
	return nil
}

// projectionBehind reads the latest version of each resource among the
// recent changes and the version its projection holds.
func (s *Store) projectionBehind(ctx context.Context) (map[string]Record, map[string]int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	cur, err := s.history.Find(ctx,
		bson.D{{Key: "void", Value: bson.D{{Key: "$ne", Value: true}}}},
		options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(repairWindow).
			SetProjection(bson.D{{Key: "type", Value: 1}, {Key: "rid", Value: 1}, {Key: "vid", Value: 1}}))
	if err != nil {
		return nil, nil, fmt.Errorf("repair: read recent changes: %w", err)
	}
	var recent []Record
	if err := cur.All(ctx, &recent); err != nil {
		return nil, nil, fmt.Errorf("repair: read recent changes: %w", err)
	}
	latest := map[string]Record{}
	for _, r := range recent {
		k := Key(r.Type, r.ID)
		if r.VersionID > latest[k].VersionID {
			latest[k] = r
		}
	}
	if len(latest) == 0 {
		return nil, nil, nil
	}
	keys := make(bson.A, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	cur, err = s.resources.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}},
		options.Find().SetProjection(bson.D{{Key: "vid", Value: 1}}))
	if err != nil {
		return nil, nil, fmt.Errorf("repair: read current versions: %w", err)
	}
	var projected []struct {
		Key string `bson:"_id"`
		Vid int64  `bson:"vid"`
	}
	if err := cur.All(ctx, &projected); err != nil {
		return nil, nil, fmt.Errorf("repair: read current versions: %w", err)
	}
	have := map[string]int64{}
	for _, p := range projected {
		have[p.Key] = p.Vid
	}
	return latest, have, nil
}
