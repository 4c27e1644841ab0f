// Package app assembles the service from its parts: store, FHIR rules, HTTP
// and metrics. cmd/kapfhir and the load tool both start it this way.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/bulkexport"
	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/inbound"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/embedded"
	"github.com/kapfhir/kapfhir/internal/httpapi"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/reindex"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/subscription"
	"github.com/kapfhir/kapfhir/mappings"
)

// App is a started service.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	embedded *embedded.Server
	store    *store.Store
	listener net.Listener
	server   *http.Server
	reindex  *reindex.Jobs
	exports  *bulkexport.Runner
	sync     *outbound.Engine
	pull     *inbound.Puller
	notifier *subscription.Notifier // nil: KAPFHIR_SUBSCRIPTIONS off
	audit    *audit.Sink            // nil: KAPFHIR_AUDIT off
	mongoURI string
}

// Options are the parts a caller may supply.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Monitor, if set, also sees every store command (tests count them).
	Monitor *event.CommandMonitor
	// ErrorLog receives the embedded server's error-level log.
	ErrorLog io.Writer
}

// Start opens the store (embedded unless a MongoDB URI is configured),
// binds the listener and builds the HTTP handler. Serve runs it.
func Start(ctx context.Context, cfg config.Config, o Options) (*App, error) {
	a := &App{cfg: cfg, log: o.Logger, mongoURI: cfg.MongoURI}
	// Whether requests need a token is settled before anything opens.
	authn, smart, err := authentication(cfg, o.Logger)
	if err != nil {
		return nil, err
	}
	// The clinic's rules are checked before anything starts.
	rules, mapper, err := clinicRules(cfg)
	if err != nil {
		return nil, err
	}
	m := metrics.New(o.Registry)
	// A bad EHR configuration stops the start before anything opens.
	var ehrCfg ehr.Config
	if cfg.EHRConfig != "" {
		var err error
		if ehrCfg, err = ehr.Load(cfg.EHRConfig, ehr.DefaultSources()); err != nil {
			return nil, err
		}
	}
	tlsConfig, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	storeKind := "mongodb"
	if a.mongoURI == "" {
		srv, err := embedded.Start(cfg.DataDir, o.ErrorLog)
		if err != nil {
			return nil, err
		}
		a.embedded, a.mongoURI, storeKind = srv, srv.URI(), "embedded-ferretdb"
	}
	reg := fhir.NewRegistry()
	st, err := store.Open(ctx, store.Options{
		URI: a.mongoURI, Database: cfg.MongoDatabase, Embedded: a.embedded != nil,
		Monitor: m.CommandMonitor(o.Monitor), Timeout: cfg.StoreTimeout,
		Indexer: resource.Indexer(reg), TxnDeadline: cfg.TxnDeadline, Owner: owner(),
		AfterIndexes: idIndexes(a.embedded),
	})
	if err != nil {
		a.closeEmbedded()
		return nil, err
	}
	a.store = st
	// Every write keeps the KAP clients' indexes (docs/architecture.md).
	svc := resources(st, reg, mapper)
	if cfg.Audit == "on" {
		a.audit = audit.New(svc, o.Registry, audit.Options{Queue: cfg.AuditQueue, Observer: cfg.SyncInstall, Logger: o.Logger})
	}
	a.reindex = reindex.New(st, reg, m, o.Logger, reindex.Options{})
	a.exports = bulkexport.New(st, o.Logger, bulkexport.Options{Retention: cfg.ExportRetention})
	// The engine runs even without file endpoints: endpoints may be
	// defined through the admin API at any time.
	if a.sync, err = newSync(st, reg, ehrCfg, m, o.Logger, outbound.Options{Install: cfg.SyncInstall, Holder: syncHolder(cfg), Audit: a.audit}); err != nil {
		a.closeStore()
		return nil, err
	}
	// The custom search parameters are served from the first request on.
	if err := a.reindex.Refresh(ctx); err != nil {
		a.closeStore()
		return nil, fmt.Errorf("load custom search parameters: %w", err)
	}
	// With the custom parameters known, finish the transactions of writers
	// that died (their versions are indexed when rolled forward).
	if err := st.RecoverTxns(ctx); err != nil {
		a.closeStore()
		return nil, fmt.Errorf("recover transactions: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		a.closeStore()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	a.listener = ln
	if err := a.startPullAndNotify(st, svc, reg, ehrCfg, m); err != nil {
		a.closeStore()
		return nil, err
	}
	cursors := search.NewCursors(cfg.CursorSecret)
	kapSvc := kap.NewService(kap.Deps{
		Resources: svc, Registry: reg, Mapper: mapper, Rules: rules,
		Overrides: kap.NewOverrideCounter(o.Registry), Now: time.Now, Cursors: cursors,
	})
	// CodeSystem/kap and OperationDefinition/kap-summary are served like
	// any resource; a new version only when this build changed them.
	if err := kapSvc.PublishDefinitions(ctx); err != nil {
		ln.Close()
		a.closeStore()
		return nil, fmt.Errorf("publish the KAP definitions: %w", err)
	}
	handler := httpapi.New(httpapi.Config{
		Resources:    svc,
		Importer:     bulkimport.New(svc, reg, bulkimport.Options{MaxLineBytes: int(cfg.MaxBodyBytes)}),
		Registry:     reg,
		Reindex:      a.reindex,
		Exports:      a.exports,
		Sync:         a.sync,
		Pull:         a.pull,
		Ready:        st.Ping,
		Metrics:      m,
		Gatherer:     o.Registry,
		Logger:       o.Logger,
		BaseURL:      cfg.BaseURL,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Version:      Version(),
		Started:      time.Now(),
		Cursors:      cursors,
		Kap:          kapSvc,
		Auth:         authn,
		SMART:        smart,
		Audit:        a.audit,

		MaxBundleEntries: cfg.MaxBundleEntries,
		MaxQueryBytes:    cfg.MaxQueryBytes,
		MaxSearchParams:  cfg.MaxSearchParams,
		RequestTimeout:   cfg.RequestTimeout,
		RateLimit:        cfg.RateLimit,
		RateBurst:        cfg.RateBurst,
		CORSOrigins:      cfg.CORSOrigins,
		TLS:              cfg.TLS(),
	})
	// The body of a bulk import or bundle may take a while to arrive, and
	// an export file to leave; a client that stalls headers or idles is
	// cut off sooner. KAPFHIR_REQUEST_TIMEOUT bounds the work in between
	// and stays under WriteTimeout (internal/config).
	a.server = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	where := "embedded FerretDB in " + cfg.DataDir
	if a.embedded == nil {
		where = "MongoDB database " + cfg.MongoDatabase
	}
	o.Logger.Info("kapfhir listening", "addr", ln.Addr().String(), "fhir_base", a.URL()+"/fhir",
		"store", storeKind, "store_location", where, "version", Version(), "auth", authn != nil)
	return a, nil
}

// URL is the http:// (https:// with TLS) address the service listens on.
func (a *App) URL() string { return scheme(a.cfg.TLS()) + "://" + a.listener.Addr().String() }

func scheme(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// serverTLS is the TLS configuration of KAPFHIR_TLS_CERT_FILE and
// KAPFHIR_TLS_KEY_FILE (nil: plain HTTP). The files are read at start: a
// new certificate takes a restart (a rolling one with several replicas).
func serverTLS(cfg config.Config) (*tls.Config, error) {
	if !cfg.TLS() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate (KAPFHIR_TLS_CERT_FILE, KAPFHIR_TLS_KEY_FILE): %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// MongoURI is the store's address (the embedded server's when embedded).
func (a *App) MongoURI() string { return a.mongoURI }

// Database is the store's database name.
func (a *App) Database() string { return a.cfg.MongoDatabase }

// Serve serves (and runs the reindex and export jobs) until ctx is cancelled, then
// shuts down gracefully: it stops accepting, drains requests in flight,
// stops the jobs, and closes the store last.
func (a *App) Serve(ctx context.Context) error {
	jctx, stopJobs := context.WithCancel(ctx)
	jobsDone := make(chan struct{})
	var runners sync.WaitGroup
	runners.Go(func() { a.reindex.Run(jctx) })
	runners.Go(func() { a.exports.Run(jctx) })
	runners.Go(func() { a.sync.Run(jctx) })
	runners.Go(func() { a.pull.Run(jctx) })
	if a.notifier != nil {
		runners.Go(func() { a.notifier.Run(jctx) })
	}
	go func() {
		defer close(jobsDone)
		runners.Wait()
	}()
	recoverDone := make(chan struct{})
	go func() {
		defer close(recoverDone)
		a.recoverTxns(jctx)
	}()
	errc := make(chan error, 1)
	go func() {
		if a.server.TLSConfig != nil {
			errc <- a.server.ServeTLS(a.listener, "", "")
			return
		}
		errc <- a.server.Serve(a.listener)
	}()
	select {
	case err := <-errc:
		stopJobs()
		<-jobsDone
		<-recoverDone
		a.closeStore()
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err := a.server.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	stopJobs()
	<-jobsDone
	<-recoverDone
	a.closeStore()
	a.log.Info("stopped")
	return err
}

// authentication is the verifier of the tokens of the configured issuers.
// With none, authentication is off: every request acts as the local
// operator, which is allowed only while listening on loopback (the
// zero-config first run), with a warning; anywhere else the start fails.
func authentication(cfg config.Config, log *slog.Logger) (auth.Authenticator, *auth.SMART, error) {
	issuers := cfg.Issuers()
	if len(issuers) == 0 {
		host, _, err := net.SplitHostPort(cfg.HTTPAddr)
		if err != nil || !auth.IsLoopback(host) {
			return nil, nil, fmt.Errorf("configuration: authentication is off (KAPFHIR_AUTH_ISSUERS is empty), which is allowed only on a loopback address, "+
				"and KAPFHIR_HTTP_ADDR is %q: set KAPFHIR_AUTH_ISSUERS and KAPFHIR_AUTH_TOKEN_URL (see docs/operations.md, Authentication), "+
				"or listen on 127.0.0.1", cfg.HTTPAddr)
		}
		log.Warn("AUTHENTICATION IS OFF: every request acts as the local operator with full access; allowed only because KAPFHIR_HTTP_ADDR is a loopback address. "+
			"To require OAuth2 bearer tokens set KAPFHIR_AUTH_ISSUERS and KAPFHIR_AUTH_TOKEN_URL (see docs/operations.md, Authentication)",
			"addr", cfg.HTTPAddr)
		return nil, nil, nil
	}
	j, err := auth.NewJWT(auth.Options{Issuers: issuers, Audience: cfg.Audience(), Leeway: cfg.AuthLeeway})
	if err != nil {
		return nil, nil, err
	}
	log.Info("authentication on: OAuth2 bearer tokens required", "issuers", len(issuers), "audience", cfg.Audience())
	// Discovery names the first issuer: SMART has room for one.
	smart := &auth.SMART{Issuer: issuers[0].URL, JWKSURI: issuers[0].JWKSURI, AuthorizeURL: cfg.AuthAuthorizeURL, TokenURL: cfg.AuthTokenURL}
	return j, smart, nil
}

// newSync builds the outbound EHR sync engine (its workers start in
// Serve).
func newSync(st *store.Store, reg *fhir.Registry, cfg ehr.Config, m *metrics.Metrics, log *slog.Logger, o outbound.Options) (*outbound.Engine, error) {
	mp, err := mappings.New(mappings.Config{})
	if err != nil {
		return nil, err
	}
	e, err := outbound.New(st, reg, mp, cfg, m, log, o)
	if err != nil {
		return nil, fmt.Errorf("EHR sync: %w", err)
	}
	log.Info("EHR sync configured", "file_endpoints", len(cfg.Endpoints))
	return e, nil
}

// startPullAndNotify builds the inbound EHR pull (of the endpoints with
// pull types, the file's and the admin API's) and the Subscription notifier (when enabled); both run in Serve.
func (a *App) startPullAndNotify(st *store.Store, svc *resource.Service, reg *fhir.Registry, cfg ehr.Config, m *metrics.Metrics) error {
	p, err := inbound.New(st, svc, reg, cfg, m, a.log, inbound.Options{Install: a.cfg.SyncInstall, Holder: syncHolder(a.cfg)})
	if err != nil {
		return fmt.Errorf("EHR pull: %w", err)
	}
	// Always built: endpoints with pull types may be defined through the
	// admin API at any time.
	a.pull = p
	a.log.Info("EHR pull configured", "file_endpoints", p.Endpoints())
	if a.cfg.Subscriptions {
		base := a.cfg.BaseURL // the FHIR base as clients see it
		if base == "" {
			base = a.URL() + "/fhir"
		}
		if a.notifier, err = subscription.New(st, svc, reg, m, a.log, subscription.Options{BaseURL: base, Holder: lease.Holder{Owner: owner()}}); err != nil {
			return fmt.Errorf("subscriptions: %w", err)
		}
	}
	return nil
}

// recoverTxns finishes, every TxnDeadline, the transactions of writers
// (in any instance) that died, until ctx ends.
func (a *App) recoverTxns(ctx context.Context) {
	t := time.NewTicker(a.cfg.TxnDeadline)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.store.RecoverTxns(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("transaction recovery", "error", err.Error())
		}
	}
}

// owner names this instance in its transaction records (host and process).
// syncHolder is the EHR sync's and pull's lease settings: this instance,
// holding an endpoint for cfg.SyncLease.
func syncHolder(cfg config.Config) lease.Holder {
	return lease.Holder{Owner: owner(), Lease: cfg.SyncLease}
}

func owner() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}

// closeStore writes the queued AuditEvents (the requests and the sync are
// stopped by then), then closes the store and the embedded server.
func (a *App) closeStore() {
	if a.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		if err := a.audit.Close(ctx); err != nil {
			a.log.Error("audit events not all written before shutdown", "error", err)
		}
		cancel()
	}
	if a.store != nil {
		_ = a.store.Close(context.Background())
	}
	a.closeEmbedded()
}

func (a *App) closeEmbedded() {
	if a.embedded != nil {
		a.embedded.Close()
	}
}

// Version is the module version the binary was built from.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// clinicRules reads the clinic's rules (KAPFHIR_KAP_RULES) and the mapper
// they configure.
func clinicRules(cfg config.Config) (kap.Rules, *mappings.Mapper, error) {
	rules, err := kap.LoadRules(cfg.KAPRules)
	if err != nil {
		return kap.Rules{}, nil, err
	}
	mapper, err := kap.NewMapper(rules)
	return rules, mapper, err
}

// resources is the FHIR write path over st: every write, whatever its
// door (API, import, seed), keeps the KAP client indexes.
func resources(st *store.Store, reg *fhir.Registry, mapper *mappings.Mapper) *resource.Service {
	return resource.New(st, reg, time.Now).WithKeeper(kap.NewIndexKeeper(mapper))
}
