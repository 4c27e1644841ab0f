// Package httpapi is the HTTP adapter: Gin routes for the FHIR REST API and
// the operational endpoints. Handlers return errors; one renderer turns them
// into OperationOutcomes (see fault).
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/bulkexport"
	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/ehr/inbound"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/reindex"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
)

// Config is what the HTTP layer needs.
type Config struct {
	Resources *resource.Service
	Ready     func(context.Context) error // nil error: the store answers
	Metrics   *metrics.Metrics
	Gatherer  prometheus.Gatherer
	Logger    *slog.Logger
	// BaseURL is the FHIR base as clients see it (e.g. https://host/fhir);
	// empty: derived from each request's Host.
	BaseURL      string
	MaxBodyBytes int64
	Version      string
	Started      time.Time
	Cursors      *search.Cursors // signs search page links
	Registry     *fhir.Registry  // the search parameters, custom ones included
	Reindex      *reindex.Jobs   // the reindex jobs of custom parameters
	Importer     *bulkimport.Importer
	Exports      *bulkexport.Runner
	Kap          *kap.Service // the clinic's API, /kap/v1
	// Sync is the outbound EHR sync; nil: none configured.
	Sync *outbound.Engine
	// Pull is the inbound EHR pull, reloaded when an endpoint definition
	// changes through the API; nil: none.
	Pull *inbound.Puller
	// Auth verifies each request's credentials; nil: authentication is
	// off and every request acts as the anonymous local operator (the app
	// allows that only on loopback).
	Auth auth.Authenticator
	// SMART is what /fhir/.well-known/smart-configuration and the
	// CapabilityStatement's rest.security advertise of the authorization
	// server; nil (authentication off): neither does.
	SMART *auth.SMART
	// Audit records an AuditEvent of each request; nil: none.
	Audit *audit.Sink

	// Limits (zero: none). MaxBundleEntries: entries of a batch or
	// transaction (413); MaxQueryBytes: the query string (414);
	// MaxSearchParams: parameter occurrences of a search (400);
	// RequestTimeout: the deadline of a request's work.
	MaxBundleEntries int
	MaxQueryBytes    int
	MaxSearchParams  int
	RequestTimeout   time.Duration
	// RateLimit is each client's requests per second and RateBurst its
	// bucket; RateLimit 0: no limit.
	RateLimit float64
	RateBurst int
	// CORSOrigins are the browser origins allowed to call the API.
	CORSOrigins []string
	// TLS: the service is served over HTTPS (Strict-Transport-Security).
	TLS bool
}

// route is one FHIR REST route. The router and the CapabilityStatement are
// both generated from the routes table, so they cannot disagree.
type route struct {
	method, path string
	interaction  string // FHIR restful interaction codes, space separated
	level        string // "type" or "system": where the CapabilityStatement lists it
	// scope is what the route needs of the principal's SMART scopes (see
	// scopeRule).
	scope   string
	handler func(*api, *gin.Context) error
}

var routes = append([]route{
	{"GET", "/fhir/metadata", "capabilities", "", "public", (*api).capabilities},
	{"GET", smartConfigRoute, "smart-configuration", "", "public", (*api).smartConfiguration},
	// Both system interactions, by the Bundle's type; metrics say the first.
	{"POST", "/fhir", "transaction batch", "system", "handler", (*api).bundleInteraction},
	{"GET", "/fhir", "search-system", "system", "handler", (*api).searchType},
	{"POST", "/fhir/_search", "search-system", "", "handler", (*api).searchPost},
	{"GET", "/fhir/_history", "history-system", "system", "handler", (*api).historySystem},
	{"GET", "/fhir/$reindex", "operation", "", "system/SearchParameter.r", (*api).reindexStatus},
	{"POST", "/fhir/$import", "operation", "system", "system/*.cu", (*api).importNDJSON},
	// Bulk Data export: kick-off at system, Patient and Group level, then
	// the job's status and files under /fhir/_export/{job}. Patient and
	// Group are matched by the handlers: a static segment there would
	// shadow the :type routes in gin's tree.
	{"GET", "/fhir/$export", "operation", "system", "handler", (*api).exportSystem},
	{"POST", "/fhir/$export", "operation", "system", "handler", (*api).exportSystem},
	{"GET", "/fhir/:type/$export", "operation", "type", "handler", (*api).exportType},
	{"POST", "/fhir/:type/$export", "operation", "type", "handler", (*api).exportType},
	{"GET", "/fhir/:type/:id/$export", "operation", "type", "handler", (*api).exportInstance},
	{"POST", "/fhir/:type/:id/$export", "operation", "type", "handler", (*api).exportInstance},
	{"GET", "/fhir/_export/:job", "operation", "", "handler", (*api).exportStatus},
	{"DELETE", "/fhir/_export/:job", "operation", "", "handler", (*api).exportCancel},
	{"GET", "/fhir/_export/:job/:file", "operation", "", "handler", (*api).exportFile},
	{"GET", "/fhir/:type", "search-type", "type", ":type.s patient", (*api).searchType},
	{"POST", "/fhir/:type/_search", "search-type", "", ":type.s patient", (*api).searchPost},
	{"POST", "/fhir/:type", "create", "type", ":type.c patient", (*api).create},
	{"PUT", "/fhir/:type", "update", "", ":type.cus patient", (*api).conditionalUpdate},
	{"DELETE", "/fhir/:type", "delete", "", ":type.ds patient", (*api).conditionalDelete},
	{"PATCH", "/fhir/:type", "patch", "", ":type.us patient", (*api).conditionalPatch},
	{"GET", "/fhir/:type/_history", "history-type", "type", ":type.s patient", (*api).historyType},
	{"GET", "/fhir/:type/:id", "read", "type", ":type.r patient", (*api).read},
	{"PUT", "/fhir/:type/:id", "update", "type", ":type.u patient", (*api).update},
	{"DELETE", "/fhir/:type/:id", "delete", "type", ":type.d patient", (*api).delete},
	{"PATCH", "/fhir/:type/:id", "patch", "type", ":type.u patient", (*api).patchInstance},
	{"GET", "/fhir/:type/:id/_history", "history-instance", "type", ":type.r patient", (*api).historyInstance},
	// Operations ($name segments, static beside :id and :ctype; see
	// operationDefs for what the CapabilityStatement says of them).
	{"POST", "/fhir/:type/$validate", "operation", "type", ":type.c patient", (*api).validateType},
	{"POST", "/fhir/:type/:id/$validate", "operation", "type", ":type.u patient", (*api).validateInstance},
	{"GET", "/fhir/:type/:id/$everything", "operation", "type", ":type.rs patient", (*api).everything},
	{"POST", "/fhir/:type/:id/$everything", "operation", "type", ":type.rs patient", (*api).everythingPost},
	// Compartment search: :ctype resources in the compartment of :type/:id.
	{"GET", "/fhir/:type/:id/:ctype", "search-type", "", ":ctype.s patient", (*api).searchType},
	{"POST", "/fhir/:type/:id/:ctype/_search", "search-type", "", ":ctype.s patient", (*api).searchPost},
	{"GET", "/fhir/:type/:id/_history/:vid", "vread", "type", ":type.r patient", (*api).vread},
	{"GET", "/fhir/:type/:id/$kap-summary", "operation", "type", ":type.r Encounter.r Observation.r MedicationAdministration.r", (*api).kapSummaryOperation},
	// The outbound EHR sync's admin API (plain JSON; see sync.go).
	{"GET", "/admin/sync/endpoints", "admin", "", "system/Endpoint.r", (*api).syncEndpoints},
	{"GET", "/admin/sync/endpoints/:name", "admin", "", "system/Endpoint.r", (*api).syncStatus},
	{"PUT", "/admin/sync/endpoints/:name", "admin", "", "system/Endpoint.u", (*api).syncPutEndpoint},
	{"DELETE", "/admin/sync/endpoints/:name", "admin", "", "system/Endpoint.d", (*api).syncDeleteEndpoint},
	{"GET", "/admin/sync/endpoints/:name/dead-letters", "admin", "", "system/Endpoint.r", (*api).syncDeadLetters},
	{"GET", "/admin/sync/endpoints/:name/dead-letters/:type/:id/:version", "admin", "", "system/Endpoint.r", (*api).syncDeadLetter},
	{"POST", "/admin/sync/endpoints/:name/dead-letters/:type/:id/:version/replay", "admin", "", "system/Endpoint.u", (*api).syncReplay},
}, kapRoutes...)

type api struct {
	Config
	interactions map[string]string // "METHOD route" -> interaction, for metrics
	levels       interactionLevels
	engine       http.Handler // the router, for the entries of a batch or transaction
	// public are the routes whose scope rule is "public": they answer
	// without credentials (a client discovers how to authenticate there).
	public  map[string]bool
	policy  *disclosure.Policy
	limiter *limiter // nil: no rate limit
}

// New returns the HTTP handler of the whole service.
func New(cfg Config) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	a := &api{Config: cfg, interactions: map[string]string{}, public: map[string]bool{}, levels: levelsOf(routes),
		policy: disclosure.New(cfg.Resources, cfg.Registry, time.Now)}
	if cfg.RateLimit > 0 {
		a.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst, time.Now)
	}

	r := gin.New()
	r.HandleMethodNotAllowed = true
	_ = r.SetTrustedProxies(nil) // no proxy headers are trusted unless configured
	// Order matters (docs/architecture.md, "Middleware"): every response,
	// errors and preflights included, carries the request id and the
	// security headers and is logged; CORS preflights are answered before
	// routing and authentication.
	r.Use(a.requestID, a.secure, a.observe, a.recover, a.cors, a.limit)
	r.NoRoute(a.wrap(func(c *gin.Context) error {
		return fault.New(fault.NotFound, "", "no route for %s", c.Request.URL.Path)
	}))
	r.NoMethod(a.wrap(func(c *gin.Context) error {
		return fault.New(fault.MethodNotAllowed, "", "method %s is not allowed here", c.Request.Method)
	}))

	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	r.GET("/readyz", a.wrap(a.readyz))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))

	f := r.Group("", a.recordAudit, a.negotiate, a.authenticate, a.throttle, a.disclose)
	for _, rt := range routes {
		a.interactions[rt.method+" "+rt.path] = strings.Fields(rt.interaction)[0]
		h := rt.handler
		rule, err := parseScopeRule(rt.scope)
		if err != nil {
			panic("httpapi: routes table: " + rt.method + " " + rt.path + ": " + err.Error()) // a defect of the table
		}
		if rule.public {
			a.public[rt.path] = true
		}
		f.Handle(rt.method, rt.path, a.wrap(func(c *gin.Context) error {
			if err := a.enforce(c, rule); err != nil {
				return err
			}
			return h(a, c)
		}))
	}
	a.engine = r
	return r
}

func (a *api) readyz(c *gin.Context) error {
	if err := a.Ready(c.Request.Context()); err != nil {
		return err
	}
	c.String(http.StatusOK, "ready\n")
	return nil
}

// wrap adapts a handler that returns an error; errors become
// OperationOutcomes with the status of their kind.
func (a *api) wrap(h func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			a.fail(c, err)
		}
	}
}

func (a *api) fail(c *gin.Context, err error) {
	fe := fault.As(err)
	if fe.Kind == fault.NotModified {
		c.Status(http.StatusNotModified)
		return
	}
	if fe.Kind == fault.Internal || fe.Kind == fault.Unavailable {
		// The cause stays in the log; the client gets the kind only.
		a.Logger.ErrorContext(c.Request.Context(), "request failed",
			"request_id", c.Writer.Header().Get(requestIDHeader), "route", c.FullPath(), "error", fe.Error())
	}
	c.Data(fault.Status(fe), fhirJSON, pretty(c, fault.Outcome(fe)))
}
