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
	_, mapper, err := clinicRules(cfg)
	if err != nil {
		return nil, err
	}
	st, reg, closeStore, err := openOffline(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	// Imported records of KAP clients join their indexes.
	svc := resources(st, reg, mapper)
	im := bulkimport.New(svc, reg, bulkimport.Options{MaxLineBytes: int(cfg.MaxBodyBytes)})
	start := time.Now()
	rep, err := im.Run(ctx, sources)
	if rep != nil {
		rep.Skipped = skipped
		rep.WriteSummary(out, time.Since(start))
	}
	return rep, err
}

// openOffline opens the configured store for a command that runs without
// HTTP (import, seed): the embedded server when no MongoDB URI is set (its
// data directory lock keeps a server out meanwhile), with the custom
// search parameters loaded so that what the command writes is indexed by
// them too. close releases both.
func openOffline(ctx context.Context, cfg config.Config, o Options) (*store.Store, *fhir.Registry, func(), error) {
	uri := cfg.MongoURI
	var srv *embedded.Server
	if uri == "" {
		var err error
		if srv, err = embedded.Start(cfg.DataDir, o.ErrorLog); err != nil {
			return nil, nil, nil, err
		}
		uri = srv.URI()
	}
	closeEmbedded := func() {
		if srv != nil {
			srv.Close()
		}
	}
	reg := fhir.NewRegistry()
	st, err := store.Open(ctx, store.Options{
		URI: uri, Database: cfg.MongoDatabase, Embedded: srv != nil, Timeout: cfg.StoreTimeout,
		Indexer: resource.Indexer(reg), TxnDeadline: cfg.TxnDeadline, Owner: owner(),
		AfterIndexes: idIndexes(srv),
	})
	if err != nil {
		closeEmbedded()
		return nil, nil, nil, err
	}
	closeAll := func() {
		_ = st.Close(context.Background())
		closeEmbedded()
	}
	if err := reindex.New(st, reg, metrics.New(prometheus.NewRegistry()), o.Logger, reindex.Options{}).Refresh(ctx); err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("load custom search parameters: %w", err)
	}
	return st, reg, closeAll, nil
}

// idIndexes is the store's AfterIndexes on the embedded server srv: the
// index its _id lookups use; nil on MongoDB.
func idIndexes(srv *embedded.Server) func(context.Context, string) error {
	if srv == nil {
		return nil
	}
	return srv.IndexIDs
}
