// Package config reads the service configuration from the environment.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/kapfhir/kapfhir/internal/auth"
)

// Config is every setting of the service; README.md lists them.
type Config struct {
	HTTPAddr        string        `env:"KAPFHIR_HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	DataDir         string        `env:"KAPFHIR_DATA_DIR" envDefault:"./data"`
	MongoURI        string        `env:"KAPFHIR_MONGODB_URI"`
	MongoDatabase   string        `env:"KAPFHIR_MONGODB_DATABASE" envDefault:"kapfhir"`
	BaseURL         string        `env:"KAPFHIR_BASE_URL"`
	MaxBodyBytes    int64         `env:"KAPFHIR_MAX_BODY_BYTES" envDefault:"10485760"`
	LogLevel        string        `env:"KAPFHIR_LOG_LEVEL" envDefault:"info"`
	StoreTimeout    time.Duration `env:"KAPFHIR_STORE_TIMEOUT" envDefault:"10s"`
	ShutdownTimeout time.Duration `env:"KAPFHIR_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// TxnDeadline: a transaction still pending after it was abandoned by
	// its writer; recovery aborts it then (and checks this often).
	TxnDeadline time.Duration `env:"KAPFHIR_TXN_DEADLINE" envDefault:"30s"`
	// CursorSecret signs search page links; empty: a random key per start.
	CursorSecret string `env:"KAPFHIR_CURSOR_SECRET"`
	// ExportRetention is how long bulk export files are kept after the
	// export finished.
	ExportRetention time.Duration `env:"KAPFHIR_EXPORT_RETENTION" envDefault:"24h"`
	// KAPRules is the clinic's rules file (kap.LoadRules); empty: the
	// defaults of docs/kap-rules.md.
	KAPRules string `env:"KAPFHIR_KAP_RULES"`
	// EHRConfig is the EHR endpoints file (ehr.Load: YAML or JSON,
	// secrets as env:/file: references); empty: no EHR sync.
	EHRConfig string `env:"KAPFHIR_EHR_CONFIG"`
	// SyncInstall names this installation in the identifier of every
	// resource sent to an EHR (urn:kapfhir:<SyncInstall>): two clinics
	// sending to one EHR need different names.
	SyncInstall string `env:"KAPFHIR_SYNC_INSTALL" envDefault:"kapfhir"`
	// SyncLease is how long an instance holds an EHR endpoint's outbound
	// delivery without progress: a dead instance's endpoints wait this
	// long before another (or its restart) takes them over. Keep it over
	// the EHR request timeout, or a slow answer lets a second instance in.
	SyncLease time.Duration `env:"KAPFHIR_SYNC_LEASE" envDefault:"90s"`
	// Subscriptions turns on the rest-hook Subscription notifier: off,
	// Subscriptions are stored (and checked) but stay requested.
	Subscriptions bool `env:"KAPFHIR_SUBSCRIPTIONS" envDefault:"false"`
	// AuthIssuers are the trusted token issuers, comma-separated, each
	// "issuer" (keys discovered) or "issuer|jwks_uri"; empty:
	// authentication is off, which internal/app allows only on loopback.
	// Read them with Issuers.
	AuthIssuers string `env:"KAPFHIR_AUTH_ISSUERS"`
	// AuthAudience must be in a token's aud; empty: BaseURL (see Audience).
	AuthAudience string `env:"KAPFHIR_AUTH_AUDIENCE"`
	// AuthAuthorizeURL and AuthTokenURL are the authorization server's
	// endpoints, advertised to SMART apps.
	AuthAuthorizeURL string `env:"KAPFHIR_AUTH_AUTHORIZE_URL"`
	AuthTokenURL     string `env:"KAPFHIR_AUTH_TOKEN_URL"`
	// AuthLeeway is the clock skew allowed for a token's exp, nbf and iat.
	AuthLeeway time.Duration `env:"KAPFHIR_AUTH_LEEWAY" envDefault:"30s"`
	// Audit (on or off) records an AuditEvent of every request and EHR
	// disclosure; AuditQueue is how many may wait to be written before
	// new ones are dropped (and counted).
	Audit      string `env:"KAPFHIR_AUDIT" envDefault:"on"`
	AuditQueue int    `env:"KAPFHIR_AUDIT_QUEUE" envDefault:"10000"`

	// Limits (docs/operations.md, "Limits"). MaxBundleEntries bounds the
	// entries of a batch or transaction; MaxQueryBytes the query string of
	// any request (414 over it); MaxSearchParams the parameter occurrences
	// of one search (URL and form together).
	MaxBundleEntries int `env:"KAPFHIR_MAX_BUNDLE_ENTRIES" envDefault:"10000"`
	MaxQueryBytes    int `env:"KAPFHIR_MAX_QUERY_BYTES" envDefault:"16384"`
	MaxSearchParams  int `env:"KAPFHIR_MAX_SEARCH_PARAMS" envDefault:"100"`
	// RequestTimeout is the deadline of a request's work (its context);
	// bulk import and export file downloads are exempt.
	RequestTimeout time.Duration `env:"KAPFHIR_REQUEST_TIMEOUT" envDefault:"60s"`
	// RateLimit is each client's sustained requests per second, RateBurst
	// how many it may send at once; 0 turns the limit off.
	RateLimit float64 `env:"KAPFHIR_RATE_LIMIT" envDefault:"50"`
	RateBurst int     `env:"KAPFHIR_RATE_BURST" envDefault:"100"`
	// CORSOrigins are the browser origins (SMART apps) allowed to call the
	// API, comma separated (scheme://host[:port]); empty: none.
	CORSOrigins []string `env:"KAPFHIR_CORS_ORIGINS" envSeparator:","`
	// TLSCertFile and TLSKeyFile (PEM): both set, the service speaks HTTPS
	// only (TLS 1.2 or later).
	TLSCertFile string `env:"KAPFHIR_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"KAPFHIR_TLS_KEY_FILE"`
}

// TLS reports whether the service serves HTTPS.
func (c Config) TLS() bool { return c.TLSCertFile != "" }

// originPattern is one CORS origin as browsers send it: no path, no
// trailing slash, no wildcard.
var originPattern = regexp.MustCompile(`^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// maxRequestTimeout stays under the HTTP server's write timeout
// (internal/app), so a request's answer can still be written.
const maxRequestTimeout = 110 * time.Second

// maxLeeway bounds KAPFHIR_AUTH_LEEWAY: more would let expired tokens
// live on noticeably.
const maxLeeway = 5 * time.Minute

// installPattern keeps the install name a plain URN segment.
var installPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// maxBody keeps a stored version under MongoDB's 16 MiB document limit,
// with room for its index values.
const maxBody = 15 << 20

// The bounds of KAPFHIR_SYNC_LEASE: under a second the lease would expire
// between two saves of a busy worker; over an hour a dead instance's
// endpoints stall for longer than any outage worth waiting out.
const (
	minSyncLease = time.Second
	maxSyncLease = time.Hour
)

// Load reads the configuration from environ (os.Environ form).
func Load(environ map[string]string) (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return c, fmt.Errorf("configuration: %w", named(err))
	}
	if c.MaxBodyBytes < 1 || c.MaxBodyBytes > maxBody {
		return c, fmt.Errorf("configuration: KAPFHIR_MAX_BODY_BYTES must be between 1 and %d", maxBody)
	}
	if c.TxnDeadline <= 0 || c.TxnDeadline >= time.Minute {
		// Under the change log's gap grace (store.GapGrace), so readers
		// never skip the numbers of a transaction that still commits.
		return c, fmt.Errorf("configuration: KAPFHIR_TXN_DEADLINE must be positive and under 1m")
	}
	if c.ExportRetention <= 0 {
		return c, fmt.Errorf("configuration: KAPFHIR_EXPORT_RETENTION must be positive")
	}
	if !installPattern.MatchString(c.SyncInstall) {
		return c, fmt.Errorf("configuration: KAPFHIR_SYNC_INSTALL must match %s", installPattern)
	}
	if c.SyncLease < minSyncLease || c.SyncLease > maxSyncLease {
		return c, fmt.Errorf("configuration: KAPFHIR_SYNC_LEASE must be between %v and %v", minSyncLease, maxSyncLease)
	}
	if err := c.checkAuth(); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if err := c.checkLimits(); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if c.Audit != "on" && c.Audit != "off" {
		return c, fmt.Errorf("configuration: KAPFHIR_AUDIT must be on or off")
	}
	if c.AuditQueue < 1 {
		return c, fmt.Errorf("configuration: KAPFHIR_AUDIT_QUEUE must be positive")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return c, fmt.Errorf("configuration: KAPFHIR_LOG_LEVEL must be debug, info, warn or error")
	}
	return c, nil
}

// checkAuth validates the KAPFHIR_AUTH_ variables together.
func (c Config) checkAuth() error {
	if c.AuthLeeway < 0 || c.AuthLeeway > maxLeeway {
		return fmt.Errorf("KAPFHIR_AUTH_LEEWAY must be between 0s and %v", maxLeeway)
	}
	issuers, err := c.issuers()
	if err != nil {
		return err
	}
	if len(issuers) == 0 {
		// A setting without issuers would be silently ignored: most
		// likely KAPFHIR_AUTH_ISSUERS was forgotten or misspelt.
		for _, v := range [][2]string{{"KAPFHIR_AUTH_AUDIENCE", c.AuthAudience}, {"KAPFHIR_AUTH_AUTHORIZE_URL", c.AuthAuthorizeURL}, {"KAPFHIR_AUTH_TOKEN_URL", c.AuthTokenURL}} {
			if v[1] != "" {
				return fmt.Errorf("%s is set but KAPFHIR_AUTH_ISSUERS is empty", v[0])
			}
		}
		return nil
	}
	if c.Audience() == "" {
		return errors.New("KAPFHIR_AUTH_ISSUERS is set: set KAPFHIR_AUTH_AUDIENCE (or KAPFHIR_BASE_URL, its default) to the audience tokens are issued for")
	}
	if c.AuthTokenURL == "" {
		return errors.New("KAPFHIR_AUTH_ISSUERS is set: set KAPFHIR_AUTH_TOKEN_URL to the token endpoint SMART clients are told about")
	}
	for _, v := range [][2]string{{"KAPFHIR_AUTH_AUTHORIZE_URL", c.AuthAuthorizeURL}, {"KAPFHIR_AUTH_TOKEN_URL", c.AuthTokenURL}} {
		if err := auth.CheckURL(v[1]); v[1] != "" && err != nil {
			return fmt.Errorf("%s: %v", v[0], err)
		}
	}
	return nil
}

// checkLimits checks the limits, rate limit, CORS and TLS settings.
func (c Config) checkLimits() error {
	switch {
	case c.MaxBundleEntries < 1:
		return errors.New("KAPFHIR_MAX_BUNDLE_ENTRIES must be at least 1")
	case c.MaxQueryBytes < 256:
		return errors.New("KAPFHIR_MAX_QUERY_BYTES must be at least 256")
	case c.MaxSearchParams < 1:
		return errors.New("KAPFHIR_MAX_SEARCH_PARAMS must be at least 1")
	case c.RequestTimeout <= 0 || c.RequestTimeout > maxRequestTimeout:
		return fmt.Errorf("KAPFHIR_REQUEST_TIMEOUT must be positive and at most %v", maxRequestTimeout)
	case c.RateLimit < 0 || c.RateBurst < 0:
		return errors.New("KAPFHIR_RATE_LIMIT and KAPFHIR_RATE_BURST must not be negative")
	case c.RateLimit > 0 && c.RateBurst < 1:
		return errors.New("KAPFHIR_RATE_BURST must be at least 1 when KAPFHIR_RATE_LIMIT is set")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("KAPFHIR_TLS_CERT_FILE and KAPFHIR_TLS_KEY_FILE go together")
	}
	for _, o := range c.CORSOrigins {
		if !originPattern.MatchString(o) {
			return fmt.Errorf("KAPFHIR_CORS_ORIGINS: %q is not an origin (scheme://host[:port])", o)
		}
	}
	return nil
}

// Issuers are the trusted token issuers of KAPFHIR_AUTH_ISSUERS (Load
// has checked them); none: authentication is off.
func (c Config) Issuers() []auth.Issuer {
	is, _ := c.issuers()
	return is
}

func (c Config) issuers() ([]auth.Issuer, error) {
	var out []auth.Issuer
	seen := map[string]bool{}
	for i, entry := range strings.Split(c.AuthIssuers, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		iss, jwks, _ := strings.Cut(entry, "|")
		is := auth.Issuer{URL: strings.TrimSpace(iss), JWKSURI: strings.TrimSpace(jwks)}
		if err := auth.CheckURL(is.URL); err != nil || strings.Contains(is.URL, "?") {
			return nil, fmt.Errorf("KAPFHIR_AUTH_ISSUERS entry %d: the issuer must be an https URL without query or fragment (http only on loopback): %q", i+1, is.URL)
		}
		if err := auth.CheckURL(is.JWKSURI); is.JWKSURI != "" && err != nil {
			return nil, fmt.Errorf("KAPFHIR_AUTH_ISSUERS entry %d: jwks_uri: %v", i+1, err)
		}
		if seen[is.URL] {
			return nil, fmt.Errorf("KAPFHIR_AUTH_ISSUERS entry %d: issuer %q is listed twice", i+1, is.URL)
		}
		seen[is.URL] = true
		out = append(out, is)
	}
	return out, nil
}

// Audience is what a token's aud must contain: KAPFHIR_AUTH_AUDIENCE, or
// else the FHIR base URL.
func (c Config) Audience() string {
	if c.AuthAudience != "" {
		return c.AuthAudience
	}
	return c.BaseURL
}

// named rewrites parse errors to name the environment variable, which is
// what an operator sets, instead of the Go field.
func named(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name); ok {
				msgs = append(msgs, fmt.Sprintf("%s: cannot read it as %s: %v", f.Tag.Get("env"), pe.Type, pe.Err))
				continue
			}
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
