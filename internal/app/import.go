package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/embedded"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/reindex"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Import loads the NDJSON files of dir into the configured store (the
// embedded one in KAPFHIR_DATA_DIR, which must not be in use by a server,
// or KAPFHIR_MONGODB_URI, which may be shared with running servers) and
// writes the summary to out.
func Import(ctx context.Context, cfg config.Config, dir string, out io.Writer, o Options) (*bulkimport.Report, error) {
	sources, skipped, err := bulkimport.DirSources(dir)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	uri := cfg.MongoURI
	if uri == "" {
		srv, err := embedded.Start(cfg.DataDir, o.ErrorLog)
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		uri = srv.URI()
	}
	st, err := store.Open(ctx, store.Options{URI: uri, Database: cfg.MongoDatabase, Embedded: cfg.MongoURI == "", Timeout: cfg.StoreTimeout})
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Close(context.Background()) }()
	reg := fhir.NewRegistry()
	// The custom search parameters index the imported resources too.
	if err := reindex.New(st, reg, metrics.New(prometheus.NewRegistry()), o.Logger, reindex.Options{}).Refresh(ctx); err != nil {
		return nil, fmt.Errorf("load custom search parameters: %w", err)
	}
	im := bulkimport.New(resource.New(st, reg, time.Now), reg, bulkimport.Options{MaxLineBytes: int(cfg.MaxBodyBytes)})
	start := time.Now()
	rep, err := im.Run(ctx, sources)
	if rep != nil {
		rep.Skipped = skipped
		rep.WriteSummary(out, time.Since(start))
	}
	return rep, err
}
