package bulkimport

import (
	"context"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
)

// conditional is the second pass: it reads again the lines set aside for
// their conditional references, resolves them against the store (which
// now holds everything else of the import) and stores the resources. A
// resource whose criteria match nothing may refer to another resource
// set aside, so it waits for the next round; rounds go on while one
// stores something. What still matches nothing then fails, as does
// criteria that match several resources or cannot be searched: a
// reference left conditional would never resolve.
func (r *run) conditional(ctx context.Context, sources []Source) error {
	for len(r.pending) > 0 {
		r.progress = false
		retry := map[int][]int{}
		waiting := map[[2]int]failure{}
		missing := map[string]bool{} // criteria that matched nothing this round
		if err := r.prefetch(ctx, missing); err != nil {
			return err
		}
		for i := range sources {
			lines := r.pending[i]
			if len(lines) == 0 {
				continue
			}
			err := r.im.each(sources[i], lines, func(line int, b []byte, tooLong bool) error {
				res, err := r.im.parse(sources[i], b, tooLong)
				if err != nil { // the input changed since the first pass
					r.fail(sources[i], line, sources[i].Type, err)
					return nil
				}
				unmatched, err := r.resolve(ctx, res, missing)
				switch {
				case fatal(err):
					return err
				case err != nil:
					r.fail(sources[i], line, res.Type(), err)
				case unmatched != nil:
					retry[i] = append(retry[i], line)
					waiting[[2]int{i, line}] = failure{res.Type(), unmatched}
				default:
					return r.add(ctx, sources, item{src: i, line: line, res: res})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if err := r.flush(ctx, sources); err != nil {
			return err
		}
		r.pending = retry
		if !r.progress {
			for i := range sources {
				for _, line := range retry[i] {
					f := waiting[[2]int{i, line}]
					r.fail(sources[i], line, f.typ, f.err)
				}
			}
			return nil
		}
	}
	return nil
}

type failure struct {
	typ string
	err error
}

// resolve rewrites the conditional references of res that match exactly
// one resource to its Type/id. unmatched reports one that matched none
// (the resource may come later); err one that cannot be resolved at all.
func (r *run) resolve(ctx context.Context, res *fhir.Resource, missing map[string]bool) (unmatched, err error) {
	err = res.RewriteReferences(func(path, ref string) (string, error) {
		expr := res.Type() + "." + path
		typ, criteria, ok := fhir.ConditionalReference(ref)
		if !ok {
			return ref, nil
		}
		if id, ok := r.resolved[ref]; ok {
			return id, nil
		}
		if missing[ref] {
			unmatched = noMatch(expr, typ)
			return ref, nil
		}
		req, err := search.ParseCriteria(r.im.reg, typ, criteria)
		if err != nil {
			return ref, at(err, expr)
		}
		m, err := r.im.svc.Match(ctx, req)
		switch {
		case err != nil:
			return ref, err
		case len(m) == 0:
			missing[ref] = true
			unmatched = noMatch(expr, typ)
			return ref, nil
		case len(m) > 1:
			return ref, fault.New(fault.PreconditionFailed, expr, "the conditional reference matches more than one %s", typ)
		}
		id := typ + "/" + m[0].ID
		r.resolved[ref] = id
		return id, nil
	})
	return unmatched, err
}

func noMatch(expr, typ string) error {
	return fault.New(fault.Unprocessable, expr, "no %s matches the conditional reference", typ)
}

// at points every issue of err at expr: criteria errors name a search
// parameter, the line's reader needs the reference.
func at(err error, expr string) error {
	fe := fault.As(err)
	for i := range fe.Issues {
		fe.Issues[i].Expression = []string{expr}
	}
	return fe
}

// fatal tells a store that cannot be reached, which stops the import,
// from a problem of one line.
func fatal(err error) bool {
	return err != nil && (fault.Is(err, fault.Unavailable) || fault.Is(err, fault.Internal))
}
