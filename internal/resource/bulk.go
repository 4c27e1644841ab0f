package resource

import (
	"context"
	"errors"
	"slices"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// ImportResult is what Import did with one resource: an Outcome, or the
// error that kept it out.
type ImportResult struct {
	Outcome *Outcome
	Err     error
}

// Import stores each resource under its own id as the next version, by the
// rules of Update without If-Match (update-as-create, identical content is
// a no-op), in a few store commands per batch instead of three or four per
// resource. It does not take the per-resource locks: a concurrent writer of
// the same resource makes the store refuse one of the two versions, and a
// resource that lost goes through the single-write path, as does a
// SearchParameter (it changes the registry) and a second occurrence of an
// id in the batch (so that the last one wins), and a resource whose
// write has companions (Keeper: a record of a KAP client with an index),
// which must commit in one unit with them. The error is a store failure
// for the whole batch.
func (s *Service) Import(ctx context.Context, batch []*fhir.Resource) ([]ImportResult, error) {
	results := make([]ImportResult, len(batch))
	keys := make([]string, 0, len(batch))
	seen := map[string]bool{}
	batched := make([]bool, len(batch))
	var single []int
	for i, res := range batch {
		k := store.Key(res.Type(), res.ID())
		switch {
		case res.ID() == "":
			results[i].Err = fault.New(fault.Invalid, res.Type()+".id", "the resource has no id; import keeps the ids of its input")
		case res.Type() == "SearchParameter" || seen[k]:
			single = append(single, i)
		default:
			seen[k], batched[i] = true, true
			keys = append(keys, k)
		}
	}
	prev, err := s.store.CurrentMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	var recs []*store.Record
	var at []int
	for i, res := range batch {
		if !batched[i] {
			continue
		}
		p := prev[store.Key(res.Type(), res.ID())]
		rec, noop := s.next(res.Type(), res.ID(), p, res, "PUT", true)
		if noop {
			results[i].Outcome = &Outcome{Record: p, NoOp: true}
			continue
		}
		results[i].Outcome = &Outcome{Record: rec, Created: p == nil || p.Deleted}
		recs = append(recs, rec)
		at = append(at, i)
	}
	recs, at, kept, err := s.keptApart(ctx, prev, recs, at)
	if err != nil {
		return nil, err
	}
	single = append(single, kept...)
	errs, err := s.store.CommitMany(ctx, recs)
	if err != nil {
		return nil, err
	}
	for j, e := range errs {
		switch {
		case errors.Is(e, store.ErrVersionTaken):
			single = append(single, at[j])
		case e != nil:
			results[at[j]] = ImportResult{Err: e}
		}
	}
	slices.Sort(single) // in input order, so that the last occurrence of an id wins
	for _, i := range single {
		res := batch[i]
		out, err := s.put(ctx, res.Type(), res.ID(), res, "PUT", nil)
		results[i] = ImportResult{Outcome: out, Err: err}
	}
	return results, nil
}

// keptApart takes out of recs (the batch's versions, of the inputs at) those
// with companions to keep: they go through the single-write path, which
// commits each with its companions. One read by _id per distinct key the
// batch's changes name (none when they name none).
func (s *Service) keptApart(ctx context.Context, prev map[string]*store.Record, recs []*store.Record, at []int) ([]*store.Record, []int, []int, error) {
	changes := make([]Change, len(recs))
	for j, r := range recs {
		changes[j] = Change{prev[store.Key(r.Type, r.ID)], r}
	}
	keys := s.keys(changes)
	if len(keys) == 0 {
		return recs, at, nil, nil
	}
	cur, err := s.store.CurrentMany(ctx, keys)
	if err != nil {
		return nil, nil, nil, err
	}
	var keepRecs []*store.Record
	var keepAt, apart []int
	for j, c := range changes {
		if slices.ContainsFunc(s.keeper.Keys(c), func(k string) bool { return cur[k] != nil && !cur[k].Deleted }) {
			apart = append(apart, at[j])
			continue
		}
		keepRecs, keepAt = append(keepRecs, recs[j]), append(keepAt, at[j])
	}
	return keepRecs, keepAt, apart, nil
}
