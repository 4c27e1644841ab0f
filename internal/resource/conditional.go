package resource

import (
	"context"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Match returns up to two current resources matching c: enough to tell
// none, one and many apart.
func (s *Service) Match(ctx context.Context, c *search.Request) ([]*store.Record, error) {
	recs, _, err := s.store.Search(ctx, &store.Query{Type: c.Type, And: c.Conds, Limit: 2})
	return recs, err
}

// ConditionalCreate creates res unless a resource matches c. Concurrent
// calls with the same criteria create one resource (see claim).
func (s *Service) ConditionalCreate(ctx context.Context, res *fhir.Resource, c *search.Request) (*Outcome, error) {
	found, g, err := s.claim(ctx, c)
	if err != nil || found != nil {
		return found, err
	}
	out, err := s.create(ctx, c.Type, guardID(g), res)
	if err != nil {
		s.release(ctx, g)
	}
	return out, err
}

// claim settles a conditional create by the criteria c: the one current
// match (several: 412), or else a guard keyed by c that the caller now
// holds, whose Target is the new resource it is to create. One claimant of
// a key wins the guard; the others wait until the holder's resource
// matches and return it, and take over from a holder that is gone
// (abandoned) with a compare-and-set on the holder's target. A
// holder that does not create its resource must release the guard; one
// that did leaves it, for the waiters to find the resource.
func (s *Service) claim(ctx context.Context, c *search.Request) (*Outcome, *store.Guard, error) {
	deadline := time.Now().Add(s.guardWait)
	for attempt := 0; ; attempt++ {
		if found, err := s.single(ctx, c); err != nil || found != nil {
			return found, nil, err
		}
		g := &store.Guard{Key: c.Canonical, Target: store.Key(c.Type, NewID()), Since: s.now().UTC()}
		held, claimed, err := s.store.ClaimGuard(ctx, *g)
		if err != nil && !isRetry(err) {
			return nil, nil, err
		}
		if claimed {
			return nil, g, nil
		}
		if held != nil && s.abandoned(ctx, held) {
			// The holder may have committed since the first look (its
			// resource exists): then that matches, unless it was changed
			// since, and the guard stays with it.
			if found, err := s.single(ctx, c); err != nil || found != nil {
				return found, nil, err
			}
			if s.takeOver(ctx, held, *g) {
				return nil, g, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, nil, fault.New(fault.Conflict, "", "a concurrent conditional create with the same criteria did not finish; try again")
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, nil, err
		}
	}
}

// guardID is the id of the resource g's holder creates.
func guardID(g *store.Guard) string {
	_, id, _ := strings.Cut(g.Target, "/")
	return id
}

// release gives g up after its holder failed to create, so that competing
// creators need not wait for it to be judged abandoned. When the target
// was written after all (a commit whose answer was lost, a failure after
// the commit) or the store cannot tell, the guard stays: the competitors
// then find that resource, or judge the guard abandoned in time.
func (s *Service) release(ctx context.Context, g *store.Guard) {
	ctx = context.WithoutCancel(ctx) // a client gone is no reason to keep others waiting
	typ, _, _ := strings.Cut(g.Target, "/")
	if _, err := s.store.Version(ctx, typ, guardID(g), 1); fault.Is(err, fault.NotFound) {
		_ = s.store.ReleaseGuard(ctx, *g) // if it fails, the abandonment rules still apply
	}
}

func isRetry(err error) bool { return err == store.ErrVersionTaken }

// single reports the one match of c as a no-op outcome, nil when none
// matches, and 412 when several do.
func (s *Service) single(ctx context.Context, c *search.Request) (*Outcome, error) {
	m, err := s.Match(ctx, c)
	switch {
	case err != nil:
		return nil, err
	case len(m) > 1:
		return nil, fault.New(fault.PreconditionFailed, "", "the criteria match more than one %s", c.Type)
	case len(m) == 1:
		return &Outcome{Record: m[0], NoOp: true}, nil
	}
	return nil, nil
}

// abandoned reports whether the guard's holder will not create a matching
// resource: its resource exists (so it no longer matches, or was deleted),
// or it never appeared within the writers' time limit. A holder may be a
// transaction, which is decided (aborted, or rolled forward by recovery)
// within two transaction deadlines of its start: only after that can its
// resource no longer appear.
func (s *Service) abandoned(ctx context.Context, g *store.Guard) bool {
	typ, id, _ := strings.Cut(g.Target, "/")
	_, err := s.store.Current(ctx, typ, id)
	if err == nil {
		return true
	}
	return fault.Is(err, fault.NotFound) && s.now().Sub(g.Since) > s.guardWait+2*s.store.TxnDeadline()
}

func (s *Service) takeOver(ctx context.Context, held *store.Guard, g store.Guard) bool {
	ok, err := s.store.TakeOverGuard(ctx, held, g)
	return err == nil && ok
}

// ConditionalUpdate updates the one resource matching c, or creates res
// when none does (under the same guard as a conditional create).
func (s *Service) ConditionalUpdate(ctx context.Context, res *fhir.Resource, c *search.Request, ifMatch *int64) (*Outcome, error) {
	m, err := s.Match(ctx, c)
	if err != nil {
		return nil, err
	}
	switch len(m) {
	case 0:
		if res.ID() != "" {
			// The client chose the id: an update-as-create of that id.
			return s.put(ctx, c.Type, res.ID(), res, "PUT", ifMatch)
		}
		return s.ConditionalCreate(ctx, res, c)
	case 1:
		if res.ID() != "" && res.ID() != m[0].ID {
			return nil, fault.New(fault.Invalid, c.Type+".id", "the resource id %q is not the id of the resource the criteria match", res.ID())
		}
		res.SetID(m[0].ID)
		return s.put(ctx, c.Type, m[0].ID, res, "PUT", ifMatch)
	}
	return nil, fault.New(fault.PreconditionFailed, "", "the criteria match more than one %s", c.Type)
}

// ConditionalPatch patches the one resource matching c; none is 404 and
// several 412 (a patch needs exactly one resource to apply to).
func (s *Service) ConditionalPatch(ctx context.Context, p fhir.Patch, c *search.Request, ifMatch *int64) (*Outcome, error) {
	m, err := s.Match(ctx, c)
	if err != nil {
		return nil, err
	}
	switch len(m) {
	case 0:
		return nil, fault.New(fault.NotFound, "", "no %s matches the criteria", c.Type)
	case 1:
		return s.Patch(ctx, c.Type, m[0].ID, p, ifMatch)
	}
	return nil, fault.New(fault.PreconditionFailed, "", "the criteria match more than one %s", c.Type)
}

// ConditionalDelete deletes the one resource matching c; none is a no-op,
// several is 412 (the server does not delete many at once).
func (s *Service) ConditionalDelete(ctx context.Context, c *search.Request) (*Outcome, error) {
	m, err := s.Match(ctx, c)
	if err != nil {
		return nil, err
	}
	switch len(m) {
	case 0:
		return &Outcome{NoOp: true}, nil
	case 1:
		return s.Delete(ctx, c.Type, m[0].ID, nil)
	}
	return nil, fault.New(fault.PreconditionFailed, "", "the criteria match more than one %s", c.Type)
}

// Search returns a page of current versions matching q.
func (s *Service) Search(ctx context.Context, q *store.Query) ([]*store.Record, bool, error) {
	recs, more, err := s.store.Search(ctx, q)
	trace(ctx, recs...)
	return recs, more, err
}

// Count counts the current versions matching q.
func (s *Service) Count(ctx context.Context, q *store.Query) (int64, error) {
	return s.store.Count(ctx, q)
}

// History returns a page of versions; see store.HistoryQuery.
func (s *Service) History(ctx context.Context, q store.HistoryQuery) ([]*store.Record, bool, error) {
	return s.store.History(ctx, q)
}
