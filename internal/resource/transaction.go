package resource

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Op is one write of a transaction. Resolve settles its target, Apply
// writes all ops at once.
type Op struct {
	Method   string // POST, PUT, PATCH or DELETE
	Type, ID string // ID: the target; Resolve sets it for a create
	// Resource is what is written; for a PATCH, Resolve sets it to the
	// patched current version. Apply drops it once the op's record is
	// built (SearchParameters excepted: they are needed after the commit).
	Resource *fhir.Resource
	Patch    fhir.Patch // PATCH only
	IfMatch  *int64
	// IfNoneMatch refuses the write (412) when the resource exists: a
	// create that must not overwrite one made meanwhile.
	IfNoneMatch bool
	// Criteria: If-None-Exist of a POST, the URL criteria of a
	// conditional PUT or DELETE; nil otherwise.
	Criteria *search.Request
	// Outcome is set once the op is decided: by Resolve when nothing is
	// to be written (a conditional create that matched, a conditional
	// delete of nothing), by Apply otherwise.
	Outcome *Outcome
	fresh   bool         // the id was just made: nothing to read
	guard   *store.Guard // held for a conditional create until it commits

	// Load, when set, gives Resource at the moment Apply builds the op's
	// record, so that the ops of a big transaction need not all hold a
	// parsed resource at once: the caller keeps a compact form until then.
	Load func() (*fhir.Resource, error)
}

// Resolve settles the targets of ops from the current state: a new id for
// a create, the one match of conditional criteria (several: 412). A
// conditional create (a POST with criteria, a PUT whose criteria match
// nothing and whose body has no id) claims the guard of its criteria as a
// single one does (claim); the guards are claimed after the other ops are
// resolved, in criteria order, so that transactions waiting for each
// other's guards cannot deadlock. Once Resolve is called, the caller must
// Release the ops if the transaction does not commit. A failure that
// belongs to one op comes back as an *OpError.
func (s *Service) Resolve(ctx context.Context, ops []*Op) error {
	var creates []int
	for i, op := range ops {
		create, err := s.resolve(ctx, op)
		if err != nil {
			return &OpError{i, err}
		}
		if create {
			creates = append(creates, i)
		}
	}
	slices.SortStableFunc(creates, func(a, b int) int {
		return strings.Compare(ops[a].Criteria.Canonical, ops[b].Criteria.Canonical)
	})
	for n, i := range creates {
		if n > 0 {
			// Claiming the same key twice would wait for itself.
			if prev := ops[creates[n-1]]; prev.guard != nil && prev.Criteria.Canonical == ops[i].Criteria.Canonical {
				return &OpError{i, fault.New(fault.Invalid, "", "another entry of the transaction creates a %s under the same conditional criteria", ops[i].Type)}
			}
		}
		if err := s.resolveCreate(ctx, ops[i]); err != nil {
			return &OpError{i, err}
		}
	}
	return nil
}

// IsConditionalCreate reports whether Resolve settles op by claiming the
// guard of its criteria: a POST with criteria, or a PUT with criteria whose
// body has no id (as ConditionalUpdate: the match, else a create).
func (op *Op) IsConditionalCreate() bool {
	return op.Criteria != nil && (op.Method == "POST" || op.Method == "PUT" && op.Resource.ID() == "")
}

// resolve settles op, or reports that it is a conditional create, which
// resolveCreate settles.
func (s *Service) resolve(ctx context.Context, op *Op) (create bool, err error) {
	if op.IsConditionalCreate() {
		return true, nil
	}
	switch op.Method {
	case "POST":
		op.ID, op.fresh = NewID(), true
		op.Resource.SetID(op.ID)
		return false, nil
	case "PUT":
		if op.Criteria == nil {
			return false, checkBodyID(op.Type, op.ID, op.Resource)
		}
		found, err := s.single(ctx, op.Criteria)
		switch {
		case err != nil:
			return false, err
		case found != nil && found.Record.ID != op.Resource.ID():
			return false, fault.New(fault.Invalid, op.Type+".id", "the resource id %q is not the id of the resource the criteria match", op.Resource.ID())
		}
		op.ID = op.Resource.ID() // the match, or an update-as-create of the client's id
		return false, nil
	case "PATCH":
		return false, s.resolvePatch(ctx, op)
	case "DELETE":
		if op.Criteria == nil {
			return false, nil
		}
		found, err := s.single(ctx, op.Criteria)
		if err != nil {
			return false, err
		}
		if found == nil {
			op.Outcome = &Outcome{NoOp: true}
			return false, nil
		}
		op.ID = found.Record.ID
		return false, nil
	}
	return false, fault.New(fault.Invalid, "", "method %s cannot be part of a transaction write", op.Method)
}

// resolveCreate settles a conditional create: a POST that matches is
// decided (nothing to write), a PUT that matches updates the match, and
// otherwise op creates the id of the guard it now holds.
func (s *Service) resolveCreate(ctx context.Context, op *Op) error {
	found, g, err := s.claim(ctx, op.Criteria)
	switch {
	case err != nil:
		return err
	case found == nil:
		op.ID, op.fresh, op.guard = guardID(g), true, g
	case op.Method == "POST":
		op.Outcome = found
		return nil
	default:
		op.ID = found.Record.ID
	}
	op.Resource.SetID(op.ID)
	return nil
}

// Release gives up the guards that ops claimed in Resolve for creates
// that were not committed, so that competing creators go on at once. Apply
// keeps the guards of the creates it committed: they lead competitors to
// the new resources. Safe to call after a successful Apply (no-op).
func (s *Service) Release(ctx context.Context, ops []*Op) {
	for _, op := range ops {
		if op.guard != nil {
			s.release(ctx, op.guard)
			op.guard = nil
		}
	}
}

// resolvePatch applies a PATCH op's patch to the current version of its
// target (the one match of its criteria, if any): Apply then writes the
// result over that version only. Like a PATCH request, it needs an
// existing resource: one created by the same transaction is not one yet.
func (s *Service) resolvePatch(ctx context.Context, op *Op) error {
	if op.Criteria != nil {
		found, err := s.single(ctx, op.Criteria)
		if err != nil {
			return err
		}
		if found == nil {
			return fault.New(fault.NotFound, "", "no %s matches the criteria", op.Type)
		}
		op.ID = found.Record.ID
	}
	cur, err := s.Read(ctx, op.Type, op.ID)
	if err != nil {
		return err
	}
	if err := checkIfMatch(op.Type, op.ID, cur, op.IfMatch); err != nil {
		return err
	}
	if op.Resource, err = fhir.ApplyPatch([]byte(cur.Raw), op.Patch); err != nil {
		return err
	}
	op.IfMatch = &cur.VersionID
	return nil
}

func checkBodyID(typ, id string, res *fhir.Resource) error {
	if res.ID() == "" {
		return fault.New(fault.Invalid, typ+".id", "the resource has no id; update needs the id of the URL in the body")
	}
	if res.ID() != id {
		return fault.New(fault.Invalid, typ+".id", "the resource id %q does not match the URL id %q", res.ID(), id)
	}
	return nil
}

// load returns what op writes (nil: a delete) and lets op forget it, so
// that only the record built from it remains.
func (op *Op) load() (*fhir.Resource, error) {
	res, load := op.Resource, op.Load
	op.Resource, op.Load = nil, nil
	if load != nil {
		return load()
	}
	return res, nil
}

// OpError is the failure of one op of Apply.
type OpError struct {
	Op  int // index into the ops
	Err error
}

func (e *OpError) Error() string { return e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

// Apply writes the resolved ops that are not decided yet as one
// transaction: all versions become visible at once or none does
// (store.CommitTxn). Each resource may be written by one op only. Writers
// of the same resources in this process queue on their locks, taken in
// key order so that transactions cannot deadlock. A failure that belongs
// to one op comes back as an *OpError.
func (s *Service) Apply(ctx context.Context, ops []*Op) error {
	var todo []int
	keys := map[string]int{}
	for i, op := range ops {
		if op.Outcome != nil {
			continue
		}
		k := store.Key(op.Type, op.ID)
		if _, dup := keys[k]; dup {
			return &OpError{i, fault.New(fault.Invalid, "", "%s is written by two entries of the transaction", k)}
		}
		keys[k] = i
		todo = append(todo, i)
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		defer s.locks.lock(k)()
	}
	var changes []Change
	var written []int
	for _, i := range todo {
		op := ops[i]
		var prev *store.Record
		if !op.fresh {
			var err error
			if prev, err = s.store.Current(ctx, op.Type, op.ID); err != nil && !fault.Is(err, fault.NotFound) {
				return err
			}
		}
		if err := checkIfMatch(op.Type, op.ID, prev, op.IfMatch); err != nil {
			return &OpError{i, err}
		}
		if op.IfNoneMatch && prev != nil && !prev.Deleted {
			return &OpError{i, fault.New(fault.PreconditionFailed, "", "%s/%s exists already", op.Type, op.ID)}
		}
		res, err := op.load()
		if err == nil {
			err = s.checkSearchParameter(res)
		}
		if err != nil {
			return &OpError{i, err}
		}
		method := op.Method
		if res == nil {
			method = "DELETE"
		}
		// A transaction's versions get their search entries batch by
		// batch as the store makes them current: all at once they would
		// weigh several times the bundle.
		rec, noop := s.next(op.Type, op.ID, prev, res, method, false)
		if op.Type == "SearchParameter" {
			op.Resource = res
		}
		if noop {
			op.Outcome = &Outcome{Record: prev, NoOp: true}
			continue
		}
		op.Outcome = &Outcome{Record: rec, Created: prev == nil || prev.Deleted}
		changes = append(changes, Change{prev, rec})
		written = append(written, i)
	}
	if err := s.commitWith(ctx, changes, true); err != nil {
		for _, i := range written {
			ops[i].Outcome = nil
		}
		if errors.Is(err, store.ErrVersionTaken) {
			return fault.New(fault.Conflict, "", "a resource of the transaction was changed by another writer meanwhile; nothing was stored, try again")
		}
		return err
	}
	for _, c := range changes {
		trace(ctx, c.Next)
	}
	for _, op := range ops {
		op.guard = nil // committed: the guard stays with the resource
	}
	for _, i := range written {
		if ops[i].Type == "SearchParameter" {
			if err := s.searchParameterWritten(ctx, ops[i].Outcome.Record, ops[i].Resource); err != nil {
				return err
			}
		}
	}
	return nil
}

// Indexer computes the search entries of a stored version with reg, for
// the store to roll versions read back from history forward
// (store.Options.Indexer). A version that no longer parses gets none.
func Indexer(reg *fhir.Registry) func(*store.Record) *store.Index {
	return func(r *store.Record) *store.Index {
		res, err := fhir.ParseResource([]byte(r.Raw))
		if err != nil {
			return nil
		}
		return search.Index(reg, res)
	}
}
