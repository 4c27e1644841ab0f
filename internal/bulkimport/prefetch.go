package bulkimport

import (
	"context"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// maxWanted bounds the distinct conditional references remembered for
// prefetch; beyond it the others are resolved one search each.
const maxWanted = 100_000

// prefetchChunk is how many identifiers one prefetch search asks for.
const prefetchChunk = 200

// prefetch resolves the wanted conditional references of the form
// Type?identifier=system|value (what bulk exports and Synthea write) with
// one search per type and chunk of identifiers instead of one per
// reference: on the embedded store every search reads the whole
// collection. A reference it cannot settle (no system, escapes, several
// matches, a chunk with too many results) is left to resolve, which runs
// the search of its own criteria; one that matched nothing goes to missing.
func (r *run) prefetch(ctx context.Context, missing map[string]bool) error {
	byType := map[string][]string{}
	for ref := range r.wanted {
		if _, done := r.resolved[ref]; done {
			continue
		}
		typ, criteria, _ := fhir.ConditionalReference(ref)
		v, ok := strings.CutPrefix(criteria, "identifier=")
		sys, val, found := strings.Cut(v, "|")
		if ok && found && sys != "" && val != "" && !strings.ContainsAny(v, `,\&`) && !strings.Contains(val, "|") {
			byType[typ] = append(byType[typ], v)
		}
	}
	for typ, values := range byType {
		slices.Sort(values)
		for chunk := range slices.Chunk(values, prefetchChunk) {
			if err := r.prefetchChunk(ctx, typ, chunk, missing); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *run) prefetchChunk(ctx context.Context, typ string, values []string, missing map[string]bool) error {
	req, err := search.ParseCriteria(r.im.reg, typ, "identifier="+strings.Join(values, ","))
	if err != nil {
		return nil // left to resolve, which reports it per reference
	}
	recs, more, err := r.im.svc.Search(ctx, &store.Query{Type: typ, And: req.Conds, Limit: 2 * len(values)})
	if err != nil || more {
		return err
	}
	hits := map[string][]string{}
	for _, rec := range recs {
		res, err := fhir.ParseResource([]byte(rec.Raw))
		if err != nil {
			continue
		}
		for _, id := range res.Identifiers() {
			v := id.System + "|" + id.Value
			if ids := hits[v]; len(ids) == 0 || ids[len(ids)-1] != rec.ID {
				hits[v] = append(ids, rec.ID)
			}
		}
	}
	for _, v := range values {
		ref := typ + "?identifier=" + v
		switch ids := hits[v]; len(ids) {
		case 0:
			missing[ref] = true
		case 1:
			r.resolved[ref] = typ + "/" + ids[0]
		}
	}
	return nil
}
