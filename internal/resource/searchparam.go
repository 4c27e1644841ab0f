package resource

import (
	"context"
	"slices"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

// An active SearchParameter is a custom search parameter: it is checked
// before it is stored, registered once it is, and a reindex job brings the
// existing resources of its bases up to date (package reindex runs it).

// Check applies the rules a write checks beyond the parser's, without
// writing ($validate).
func (s *Service) Check(res *fhir.Resource) error {
	if err := s.checkSearchParameter(res); err != nil {
		return err
	}
	return s.checkSubscription(res)
}

// checkSearchParameter rejects an active SearchParameter the registry
// cannot serve; res nil (a delete) and other types pass.
func (s *Service) checkSearchParameter(res *fhir.Resource) error {
	if res == nil || res.Type() != "SearchParameter" {
		return nil
	}
	c, active, err := fhir.SearchParameterOf(res, 0)
	if err != nil || !active {
		return err
	}
	return s.reg.Check(c)
}

// searchParameterWritten updates the registry after a SearchParameter
// version committed and records the reindex job it needs: for its new
// bases and the ones it leaves. Other instances pick both up from the
// store (package reindex).
func (s *Service) searchParameterWritten(ctx context.Context, rec *store.Record, res *fhir.Resource) error {
	job := &store.Job{ID: store.ReindexJobID(rec.ID, rec.VersionID), Param: rec.ID, Version: rec.VersionID, Created: s.now().UTC()}
	var types []string
	for _, c := range s.reg.Custom() {
		if c.ID == rec.ID {
			types = append(types, c.Base...)
			job.URL, job.Code = c.URL, c.Code
		}
	}
	c, active := fhir.CustomParam{}, false
	if res != nil {
		var err error
		if c, active, err = fhir.SearchParameterOf(res, rec.VersionID); err != nil {
			return err
		}
	}
	if active {
		// Checked before the commit; a concurrent writer of another
		// SearchParameter may have taken the code since. The registry
		// then keeps the first, as every instance's refresh will.
		if err := s.reg.Put(c); err != nil {
			return nil
		}
		types = append(types, c.Base...)
		job.URL, job.Code = c.URL, c.Code
	} else {
		if len(types) == 0 {
			return nil // it served nothing, so nothing is indexed by it
		}
		s.reg.Remove(rec.ID)
	}
	slices.Sort(types)
	job.Types = slices.Compact(types)
	return s.store.CreateJob(context.WithoutCancel(ctx), job)
}
