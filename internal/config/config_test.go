package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/auth"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		HTTPAddr: "127.0.0.1:8080", DataDir: "./data", MongoDatabase: "kapfhir", MaxBodyBytes: 10 << 20,
		LogLevel: "info", StoreTimeout: 10 * time.Second, ShutdownTimeout: 20 * time.Second, TxnDeadline: 30 * time.Second,
		ExportRetention: 24 * time.Hour, SyncInstall: "kapfhir", SyncLease: 90 * time.Second, AuthLeeway: 30 * time.Second,
		Audit: "on", AuditQueue: 10000,
		MaxBundleEntries: 10000, MaxQueryBytes: 16384, MaxSearchParams: 100, RequestTimeout: time.Minute,
		RateLimit: 50, RateBurst: 100,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KAPFHIR_MAX_BODY_BYTES": "lots"}, "KAPFHIR_MAX_BODY_BYTES: cannot read it as int64"},
		{map[string]string{"KAPFHIR_SHUTDOWN_TIMEOUT": "soon"}, "KAPFHIR_SHUTDOWN_TIMEOUT: cannot read it as time.Duration"},
		{map[string]string{"KAPFHIR_TXN_DEADLINE": "5m"}, "KAPFHIR_TXN_DEADLINE must be positive and under 1m"},
		{map[string]string{"KAPFHIR_MAX_BODY_BYTES": "0"}, "KAPFHIR_MAX_BODY_BYTES must be between"},
		{map[string]string{"KAPFHIR_LOG_LEVEL": "loud"}, "KAPFHIR_LOG_LEVEL must be"},
		{map[string]string{"KAPFHIR_EXPORT_RETENTION": "0s"}, "KAPFHIR_EXPORT_RETENTION must be positive"},
		{map[string]string{"KAPFHIR_SYNC_INSTALL": "Clinic A"}, "KAPFHIR_SYNC_INSTALL must match"},
		{map[string]string{"KAPFHIR_SYNC_LEASE": "500ms"}, "KAPFHIR_SYNC_LEASE must be between 1s and 1h0m0s"},
		{map[string]string{"KAPFHIR_SYNC_LEASE": "2h"}, "KAPFHIR_SYNC_LEASE must be between"},
		{map[string]string{"KAPFHIR_AUTH_LEEWAY": "1h"}, "KAPFHIR_AUTH_LEEWAY must be between 0s and 5m0s"},
		{map[string]string{"KAPFHIR_AUTH_AUDIENCE": "x"}, "KAPFHIR_AUTH_AUDIENCE is set but KAPFHIR_AUTH_ISSUERS is empty"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "http://idp.example.org", "KAPFHIR_BASE_URL": "https://f/fhir", "KAPFHIR_AUTH_TOKEN_URL": "https://idp/t"}, "KAPFHIR_AUTH_ISSUERS entry 1: the issuer must be an https URL"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a, https://b?x=1", "KAPFHIR_BASE_URL": "https://f/fhir", "KAPFHIR_AUTH_TOKEN_URL": "https://idp/t"}, "KAPFHIR_AUTH_ISSUERS entry 2"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a|ftp://keys", "KAPFHIR_BASE_URL": "https://f/fhir", "KAPFHIR_AUTH_TOKEN_URL": "https://idp/t"}, "KAPFHIR_AUTH_ISSUERS entry 1: jwks_uri"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a,https://a", "KAPFHIR_BASE_URL": "https://f/fhir", "KAPFHIR_AUTH_TOKEN_URL": "https://idp/t"}, "listed twice"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a", "KAPFHIR_AUTH_TOKEN_URL": "https://idp/t"}, "set KAPFHIR_AUTH_AUDIENCE (or KAPFHIR_BASE_URL"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a", "KAPFHIR_BASE_URL": "https://f/fhir"}, "set KAPFHIR_AUTH_TOKEN_URL"},
		{map[string]string{"KAPFHIR_AUTH_ISSUERS": "https://a", "KAPFHIR_BASE_URL": "https://f/fhir", "KAPFHIR_AUTH_TOKEN_URL": "http://idp/t"}, "KAPFHIR_AUTH_TOKEN_URL: \"http://idp/t\" must be https"},
		{map[string]string{"KAPFHIR_MAX_BUNDLE_ENTRIES": "0"}, "KAPFHIR_MAX_BUNDLE_ENTRIES must be at least 1"},
		{map[string]string{"KAPFHIR_MAX_QUERY_BYTES": "10"}, "KAPFHIR_MAX_QUERY_BYTES must be at least 256"},
		{map[string]string{"KAPFHIR_MAX_SEARCH_PARAMS": "0"}, "KAPFHIR_MAX_SEARCH_PARAMS must be at least 1"},
		{map[string]string{"KAPFHIR_REQUEST_TIMEOUT": "0s"}, "KAPFHIR_REQUEST_TIMEOUT must be positive"},
		{map[string]string{"KAPFHIR_REQUEST_TIMEOUT": "5m"}, "KAPFHIR_REQUEST_TIMEOUT must be positive and at most"},
		{map[string]string{"KAPFHIR_RATE_LIMIT": "-1"}, "must not be negative"},
		{map[string]string{"KAPFHIR_RATE_BURST": "0"}, "KAPFHIR_RATE_BURST must be at least 1"},
		{map[string]string{"KAPFHIR_TLS_CERT_FILE": "/c.pem"}, "KAPFHIR_TLS_CERT_FILE and KAPFHIR_TLS_KEY_FILE go together"},
		{map[string]string{"KAPFHIR_CORS_ORIGINS": "https://app.example.org/"}, `KAPFHIR_CORS_ORIGINS: "https://app.example.org/" is not an origin`},
		{map[string]string{"KAPFHIR_CORS_ORIGINS": "*"}, "is not an origin"},
		{map[string]string{"KAPFHIR_AUDIT": "true"}, "KAPFHIR_AUDIT must be on or off"},
		{map[string]string{"KAPFHIR_AUDIT_QUEUE": "0"}, "KAPFHIR_AUDIT_QUEUE must be positive"},
	} {
		_, err := Load(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v) = %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}

func TestLoadPaths(t *testing.T) {
	c, err := Load(map[string]string{"KAPFHIR_EHR_CONFIG": "/etc/kapfhir/ehr.yaml", "KAPFHIR_KAP_RULES": "/etc/kapfhir/rules.json"})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{c.EHRConfig, c.KAPRules}; !cmp.Equal(got, []string{"/etc/kapfhir/ehr.yaml", "/etc/kapfhir/rules.json"}) {
		t.Errorf("paths %v", got)
	}
}

func TestLoadAuth(t *testing.T) {
	c, err := Load(map[string]string{
		"KAPFHIR_AUTH_ISSUERS":       " https://idp.example.org/realms/clinic , http://127.0.0.1:9000|http://127.0.0.1:9000/keys",
		"KAPFHIR_BASE_URL":           "https://fhir.example.org/fhir",
		"KAPFHIR_AUTH_TOKEN_URL":     "https://idp.example.org/realms/clinic/token",
		"KAPFHIR_AUTH_AUTHORIZE_URL": "https://idp.example.org/realms/clinic/auth",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []auth.Issuer{{URL: "https://idp.example.org/realms/clinic"}, {URL: "http://127.0.0.1:9000", JWKSURI: "http://127.0.0.1:9000/keys"}}
	if d := cmp.Diff(want, c.Issuers()); d != "" {
		t.Errorf("issuers (-want +got):\n%s", d)
	}
	if c.Audience() != "https://fhir.example.org/fhir" {
		t.Errorf("audience %q, want the base URL", c.Audience())
	}
	c.AuthAudience = "api://kapfhir"
	if c.Audience() != "api://kapfhir" {
		t.Errorf("audience %q, want KAPFHIR_AUTH_AUDIENCE", c.Audience())
	}
	if off, err := Load(map[string]string{}); err != nil || off.Issuers() != nil {
		t.Errorf("no issuers: %v, %v", off.Issuers(), err)
	}
}

func TestLoadLimits(t *testing.T) {
	c, err := Load(map[string]string{
		"KAPFHIR_CORS_ORIGINS": "https://app.example.org,http://localhost:3000",
		"KAPFHIR_RATE_LIMIT":   "0", "KAPFHIR_RATE_BURST": "0",
		"KAPFHIR_TLS_CERT_FILE": "/c.pem", "KAPFHIR_TLS_KEY_FILE": "/k.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.org", "http://localhost:3000"}; !cmp.Equal(c.CORSOrigins, want) {
		t.Errorf("origins %v, want %v", c.CORSOrigins, want)
	}
	if !c.TLS() || c.RateLimit != 0 {
		t.Errorf("TLS %v, rate limit %v", c.TLS(), c.RateLimit)
	}
}
