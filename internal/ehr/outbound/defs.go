package outbound

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Endpoints defined through the admin API live in the store
// (store.EndpointDef), so every instance runs the same set: the instance
// that takes a PUT or DELETE reloads at once, the others within
// Options.Reload. A worker keeps its lease semantics, so only one instance
// delivers to an endpoint whichever instances run a worker for it; a
// stopped worker gives its lease up and leaves the cursor, the id map and
// the dead letters, so defining the endpoint again resumes where it was.

// PutEndpoint creates (true) or replaces the endpoint name defined through
// the admin API from body, a configuration file's entry in JSON whose
// secrets are references; errors are fault.Invalid with the field path as
// the expression, fault.Conflict for an endpoint of the file.
func (e *Engine) PutEndpoint(ctx context.Context, name string, body []byte) (EndpointInfo, bool, error) {
	if err := e.checkAPIName(name); err != nil {
		return EndpointInfo{}, false, err
	}
	ep, def, err := ehr.ParseEndpoint(name, body, e.o.Sources)
	if err != nil {
		return EndpointInfo{}, false, definitionError(err)
	}
	var doc bson.Raw
	if err := bson.UnmarshalExtJSON(def, false, &doc); err != nil {
		return EndpointInfo{}, false, fault.Wrap(err, "store the endpoint definition")
	}
	created, err := e.st.PutEndpointDef(ctx, &store.EndpointDef{Name: name, Definition: doc, Updated: e.o.Now().UTC()})
	if err != nil {
		return EndpointInfo{}, false, err
	}
	return infoOf(ep), created, e.Reload(ctx)
}

// DeleteEndpoint removes the endpoint name defined through the admin API
// and stops its worker; its delivery state stays (see above).
func (e *Engine) DeleteEndpoint(ctx context.Context, name string) error {
	if err := e.checkAPIName(name); err != nil {
		return err
	}
	ok, err := e.st.DeleteEndpointDef(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return notConfigured(name)
	}
	return e.Reload(ctx)
}

func (e *Engine) checkAPIName(name string) error {
	if !ehr.NamePattern.MatchString(name) {
		return fault.New(fault.Invalid, "name", "the endpoint name must match %s", ehr.NamePattern)
	}
	if w := e.worker(name); w != nil && w.ep.Source == ehr.SourceFile {
		return fault.New(fault.Conflict, "name", "endpoint %q is defined in the configuration file (KAPFHIR_EHR_CONFIG); change it there", name)
	}
	return nil
}

// definitionError is a 400 with one issue per field error; the messages
// never repeat a secret (package ehr).
func definitionError(err error) error {
	var fe ehr.FieldErrors
	if !errors.As(err, &fe) {
		return fault.New(fault.Invalid, "", "the body is not an endpoint definition: %v", err)
	}
	out := &fault.Error{Kind: fault.Invalid}
	for _, f := range fe {
		is := fault.New(fault.Invalid, f.Path, "%s: %s", f.Path, f.Message).WithCode("value").Issues[0]
		out.Issues = append(out.Issues, is)
	}
	return out
}

// Reload reads the endpoint definitions of the store and makes the API
// endpoints' workers match (ehr.Workers.Reload).
func (e *Engine) Reload(ctx context.Context) error { return e.workers.Reload(ctx) }

// newWorker is the worker of an API definition.
func (e *Engine) newWorker(d ehr.StoredDef) (*worker, bool, error) {
	ep, err := d.Parse(e.o.Sources)
	if err != nil {
		return nil, false, err
	}
	c, err := e.o.Client(ep)
	if err != nil {
		return nil, false, fmt.Errorf("client: %w", err)
	}
	return &worker{e: e, ep: ep, client: c, def: d.Def}, true, nil
}
