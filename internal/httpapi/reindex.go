package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// param is one Parameters.parameter (or part), with one value at most.
type param struct {
	Name           string         `json:"name"`
	ValueString    string         `json:"valueString,omitempty"`
	ValueCode      string         `json:"valueCode,omitempty"`
	ValueURI       string         `json:"valueUri,omitempty"`
	ValueInstant   string         `json:"valueInstant,omitempty"`
	ValueInteger   *int64         `json:"valueInteger,omitempty"`
	ValueBoolean   *bool          `json:"valueBoolean,omitempty"`
	ValueDecimal   *kap.Decimal   `json:"valueDecimal,omitempty"`
	ValueDateTime  string         `json:"valueDateTime,omitempty"`
	ValueReference map[string]any `json:"valueReference,omitempty"`
	Part           []param        `json:"part,omitempty"`
}

// reindexStatus answers GET /fhir/$reindex: a Parameters resource with
// one job parameter per reindex job, oldest first, read from the store.
func (a *api) reindexStatus(c *gin.Context) error {
	jobs, err := a.Reindex.Current(c.Request.Context())
	if err != nil {
		return err
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Parameter    []param `json:"parameter,omitempty"`
	}{ResourceType: "Parameters"}
	for _, j := range jobs {
		out.Parameter = append(out.Parameter, param{Name: "job", Part: jobParts(j)})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fault.Wrap(err, "render reindex jobs")
	}
	c.Data(http.StatusOK, fhirJSON, pretty(c, b))
	return nil
}

func jobParts(j store.Job) []param {
	ps := []param{
		{Name: "searchParameter", ValueReference: map[string]any{"reference": j.ID}},
	}
	if j.URL != "" {
		ps = append(ps, param{Name: "url", ValueURI: j.URL})
	}
	if j.Code != "" {
		ps = append(ps, param{Name: "code", ValueString: j.Code})
	}
	for _, t := range j.Types {
		ps = append(ps, param{Name: "type", ValueCode: t})
	}
	ps = append(ps,
		param{Name: "state", ValueCode: j.State},
		param{Name: "processed", ValueInteger: &j.Done},
		param{Name: "total", ValueInteger: &j.Total},
	)
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"started", j.Started}, {"finished", j.Finished}} {
		if !t.at.IsZero() {
			ps = append(ps, param{Name: t.name, ValueInstant: t.at.UTC().Format(fhir.InstantLayout)})
		}
	}
	return ps
}

// reindexWarnings are the Bundle issues of a search by custom parameters
// whose reindex job this instance does not know finished: resources
// written before the parameter may be missing from the results.
func (a *api) reindexWarnings(req *search.Request) []fault.Issue {
	var out []fault.Issue
	for _, p := range req.Custom {
		j, unfinished := a.Reindex.Unfinished(p)
		if !unfinished {
			continue
		}
		progress := "not started"
		if j.Total > 0 || j.State == store.JobRunning {
			progress = fmt.Sprintf("%d of %d resources", j.Done, j.Total)
		}
		out = append(out, fault.Issue{Severity: "warning", Code: "incomplete",
			Diagnostics: fmt.Sprintf("the search parameter %s is being indexed (%s, job %s, progress: %s): resources written before it was defined may be missing; see GET [base]/$reindex",
				p.Code, strings.Join(p.Custom.Base, ", "), j.ID, progress)})
	}
	return out
}
