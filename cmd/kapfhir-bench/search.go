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
// effective dates in 2024).
func searchQuery(name string, i int) url.Values {
	q := url.Values{"subject": {fmt.Sprintf("Patient/bench-patient-%d", i%500)}}
	switch name {
	case "search-patient-code":
		q.Set("code", "http://loinc.org|29463-7")
	case "search-patient-date":
		q["date"] = []string{"ge2024-03-01", "lt2024-09-01"}
		q.Set("_sort", "-_lastUpdated")
	}
	return q
}

func httpSearch(name string) func(*httpSide, context.Context, int) error {
	return func(h *httpSide, ctx context.Context, i int) error {
		_, err := h.do(ctx, http.MethodGet, h.base+"/Observation?"+searchQuery(name, i).Encode(), nil, http.StatusOK)
		return err
	}
}

// rawSearch runs the store query the service compiles for the same
// parameters, with the bare driver, on the bench collection.
func rawSearch(name string) func(*rawSide, context.Context, int) error {
	return func(r *rawSide, ctx context.Context, i int) error {
		req, err := search.Parse(r.params, "Observation", searchQuery(name, i), false)
		if err != nil {
			return err
		}
		filter, opts, err := store.FindArgs(&store.Query{Type: "Observation", And: req.Conds, Sort: req.Sort, Limit: req.Count})
		if err != nil {
			return err
		}
		cctx, cancel := r.op(ctx)
		defer cancel()
		cur, err := r.resources.Find(cctx, filter, opts)
		if err != nil {
			return err
		}
		var docs []store.Record
		return cur.All(cctx, &docs)
	}
}
