package ehr

import (
	"context"
	"log/slog"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kapfhir/kapfhir/internal/store"
)

// StoredDef is an endpoint defined through the admin API as the store
// holds it (store.EndpointDef): its name and its definition in JSON, which
// tells a changed definition from an unchanged one.
type StoredDef struct {
	Name string
	Def  string
}

// Parse checks and resolves d as ParseEndpoint does.
func (d StoredDef) Parse(src Sources) (Endpoint, error) {
	ep, _, err := ParseEndpoint(d.Name, []byte(d.Def), src)
	return ep, err
}

// StoredDefs reads the endpoints defined through the admin API, by name,
// leaving out those fileHas names (the file wins on a name clash). Both
// the outbound engine and the inbound puller run them, every instance
// re-reading them periodically. A definition that cannot be read is
// logged and left out.
func StoredDefs(ctx context.Context, st *store.Store, fileHas func(name string) bool, log *slog.Logger) ([]StoredDef, error) {
	defs, err := st.EndpointDefs(ctx)
	if err != nil {
		return nil, err
	}
	var out []StoredDef
	for _, d := range defs {
		if fileHas(d.Name) {
			continue
		}
		js, err := bson.MarshalExtJSON(d.Definition, false, false)
		if err != nil {
			log.Error("EHR sync: endpoint definition", "endpoint", d.Name, "error", err.Error())
			continue
		}
		out = append(out, StoredDef{Name: d.Name, Def: string(js)})
	}
	return out, nil
}
