package resource

import (
	"context"
	"errors"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Change is one version a unit writes: Next replaces Prev (nil: none
// stored). Next.Deleted for a delete.
type Change struct{ Prev, Next *store.Record }

// Companion is a write a Keeper adds to a unit: Resource (with its id) as
// the version after Prev, the current version it was derived from.
type Companion struct {
	Prev     *store.Record
	Resource *fhir.Resource
}

// Keeper keeps resources derived from others (the KAP client index,
// kap.IndexKeeper) current in the same atomic unit as the writes they
// derive from, whatever path the writes take.
type Keeper interface {
	// Keys are the resources (store.Key) the companions of c derive
	// from; none for most changes, which then cost nothing.
	Keys(c Change) []string
	// Keep returns the companion writes of changes, given the current
	// versions of their Keys (absent: not stored).
	Keep(changes []Change, current map[string]*store.Record) ([]Companion, error)
}

// WithKeeper makes s maintain k's companions on every write; it returns
// s. Set once while wiring, before s serves.
func (s *Service) WithKeeper(k Keeper) *Service {
	s.keeper = k
	return s
}

// keys are the keys of the companions of changes, each once, but for
// those the unit writes itself (a KAP write keeps its client's index).
func (s *Service) keys(changes []Change) []string {
	if s.keeper == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, c := range changes {
		seen[store.Key(c.Next.Type, c.Next.ID)] = true
	}
	var out []string
	for _, c := range changes {
		for _, k := range s.keeper.Keys(c) {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// companions are the versions the keeper adds to the unit of changes: no
// store command when no change has keys (a resource naming no KAP
// client), one read by _id per key otherwise.
func (s *Service) companions(ctx context.Context, changes []Change) ([]*store.Record, error) {
	keys := s.keys(changes)
	if len(keys) == 0 {
		return nil, nil
	}
	cur, err := s.store.CurrentMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	cs, err := s.keeper.Keep(changes, cur)
	if err != nil {
		return nil, err
	}
	var out []*store.Record
	for _, c := range cs {
		if rec, noop := s.next(c.Resource.Type(), c.Resource.ID(), c.Prev, c.Resource, "PUT", true); !noop {
			out = append(out, rec)
		}
	}
	return out, nil
}

// maxCompanionRaces bounds how often a unit is committed again because a
// companion (not one of its own resources) was changed meanwhile.
const maxCompanionRaces = 10

// commitWith commits recs with the keeper's companions and the
// Provenance of the writer (of recs only: a companion is the server's
// bookkeeping) as one unit; txn: a store transaction even for a single
// record without companions (else store.Commit). A companion changed by another writer
// meanwhile (a lost version race on it, while recs' own versions are
// still free) makes it derive the companions again and retry, so a write
// does not fail because of its companions.
func (s *Service) commitWith(ctx context.Context, changes []Change, txn bool) error {
	recs := make([]*store.Record, len(changes))
	for i, c := range changes {
		recs[i] = c.Next
	}
	provs, err := s.provenance(ctx, recs)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		extra, err := s.companions(ctx, changes)
		if err != nil {
			return err
		}
		if !txn && len(extra) == 0 && len(provs) == 0 && len(recs) == 1 {
			return s.store.Commit(ctx, recs[0])
		}
		unit := make([]*store.Record, 0, len(recs)+len(extra)+len(provs))
		unit = append(append(append(unit, recs...), extra...), provs...)
		err = s.store.CommitTxn(ctx, unit)
		if !errors.Is(err, store.ErrVersionTaken) || len(extra) == 0 || attempt >= maxCompanionRaces {
			return err
		}
		if moved, rerr := s.moved(ctx, extra); rerr != nil || !moved {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// moved reports whether another writer took the version of one of recs.
func (s *Service) moved(ctx context.Context, recs []*store.Record) (bool, error) {
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = store.Key(r.Type, r.ID)
	}
	cur, err := s.store.CurrentMany(ctx, keys)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if c := cur[store.Key(r.Type, r.ID)]; c != nil && c.VersionID >= r.VersionID {
			return true, nil
		}
	}
	return false, nil
}
