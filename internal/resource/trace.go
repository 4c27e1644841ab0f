package resource

import (
	"context"
	"strconv"
	"sync"

	"github.com/kapfhir/kapfhir/internal/store"
)

// Trace collects the versions the Service read or wrote for one piece of
// work whose context carries it (WithTrace): a KAP request, whose
// AuditEvent then names the FHIR resources behind its answer.
type Trace struct {
	mu    sync.Mutex
	refs  []string
	seen  map[string]bool
	extra int // versions beyond the limit, counted only
}

// traceLimit bounds what one trace keeps: a long list reads thousands.
const traceLimit = 100

type traceKey struct{}

// WithTrace returns ctx carrying a new Trace.
func WithTrace(ctx context.Context) (context.Context, *Trace) {
	t := &Trace{seen: map[string]bool{}}
	return context.WithValue(ctx, traceKey{}, t), t
}

// trace records recs in ctx's Trace, if any.
func trace(ctx context.Context, recs ...*store.Record) {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range recs {
		if r == nil {
			continue
		}
		ref := r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
		switch {
		case t.seen[ref]:
		case len(t.refs) == traceLimit:
			t.extra++
		default:
			t.seen[ref] = true
			t.refs = append(t.refs, ref)
		}
	}
}

// Refs returns the versions traced (Type/id/_history/v, in order, each
// once, at most 100) and how many more there were.
func (t *Trace) Refs() ([]string, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.refs...), t.extra
}
