package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// searchQuery is the query of search scenario name for operation i, over
// the Observations the create scenario made (subjects bench-patient-0..499,
// effective dates in 2024). The create scenario makes no Patients, so
// search-include sends its include query and finds nothing.
func searchQuery(name string, i int) url.Values {
	q := url.Values{"subject": {fmt.Sprintf("Patient/bench-patient-%d", i%500)}}
	switch name {
	case "search-patient-code":
		q.Set("code", "http://loinc.org|29463-7")
	case "search-patient-date":
		q["date"] = []string{"ge2024-03-01", "lt2024-09-01"}
		q.Set("_sort", "-date")
	case "search-include":
		q.Set("_include", "Observation:subject")
	}
	return q
}

func httpSearch(name string) func(*httpSide, context.Context, int) error {
	return func(h *httpSide, ctx context.Context, i int) error {
		_, err := h.do(ctx, http.MethodGet, h.base+"/Observation?"+searchQuery(name, i).Encode(), nil, http.StatusOK)
		return err
	}
}

// rawSearch runs the store queries the service compiles for the same
// parameters (the search, then the include queries), with the bare driver,
// on the bench collection.
func rawSearch(name string) func(*rawSide, context.Context, int) error {
	return func(r *rawSide, ctx context.Context, i int) error {
		req, err := search.Parse(r.params, "Observation", searchQuery(name, i), false)
		if err != nil {
			return err
		}
		recs, _, err := r.Search(ctx, &store.Query{Type: "Observation", And: req.Conds, Sort: req.Sort, Limit: req.Count})
		if err != nil {
			return err
		}
		_, _, err = search.Includes(ctx, r, req, recs)
		return err
	}
}

// Search is search.Searcher with the bare driver: the find store.Search
// sends.
func (r *rawSide) Search(ctx context.Context, q *store.Query) ([]*store.Record, bool, error) {
	filter, opts, err := store.FindArgs(q)
	if err != nil {
		return nil, false, err
	}
	cctx, cancel := r.op(ctx)
	defer cancel()
	cur, err := r.resources.Find(cctx, filter, opts)
	if err != nil {
		return nil, false, err
	}
	var docs []*store.Record
	if err := cur.All(cctx, &docs); err != nil {
		return nil, false, err
	}
	more := len(docs) > q.Limit
	if more {
		docs = docs[:q.Limit]
	}
	return docs, more, nil
}
