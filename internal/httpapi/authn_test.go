package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/auth/authtest"
	"github.com/kapfhir/kapfhir/internal/metrics"
)

const authnAudience = "https://fhir.example.org/fhir"

// authnHandler is the router with the real JWT authenticator trusting is
// (nil: authentication off) and no store: requests that pass
// authentication reach handlers that fail before the store.
func authnHandler(t *testing.T, is *authtest.Issuer, jwksURI string) http.Handler {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Metrics: metrics.New(reg), Gatherer: reg, Registry: fhir.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(context.Context) error { return nil }, MaxBodyBytes: 1 << 20, Version: "test",
	}
	if is != nil {
		j, err := auth.NewJWT(auth.Options{Issuers: []auth.Issuer{{URL: is.URL, JWKSURI: jwksURI}}, Audience: authnAudience})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = j
		cfg.SMART = &auth.SMART{Issuer: is.URL, JWKSURI: jwksURI, AuthorizeURL: is.URL + "/authorize", TokenURL: is.URL + "/token"}
	}
	return New(cfg)
}

func authnGet(h http.Handler, path, authorization string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Each bad token is a 401 OperationOutcome (issue code login) with the
// RFC 6750 challenge, on the FHIR, KAP and admin APIs alike; a good one
// gets through to the handler.
func TestAuthnBadTokens(t *testing.T) {
	is := authtest.New(t)
	h := authnHandler(t, is, "")
	for _, tt := range authtest.BadTokens(t, is, authnAudience) {
		for _, path := range []string{"/fhir/Patient/1", "/kap/v1/clients", "/admin/sync/endpoints", "/fhir/_export/x"} {
			w := authnGet(h, path, tt.Header)
			var oo struct {
				ResourceType string
				Issue        []struct{ Severity, Code string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || w.Code != http.StatusUnauthorized ||
				oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "login" {
				t.Errorf("%s %s: %d %s, want a 401 OperationOutcome with code login", tt.Name, path, w.Code, w.Body)
			}
			if err := tt.CheckChallenge(w.Header().Get("WWW-Authenticate")); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
	}
	// A good token passes: the handler answers (404, the type is unknown).
	w := authnGet(h, "/fhir/Nothing/1", "Bearer "+is.Token(t, is.Claims(authnAudience)))
	if w.Code != http.StatusNotFound || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("good token: %d %s", w.Code, w.Body)
	}
}

// An issuer whose keys cannot be fetched is the server's trouble: 503,
// no challenge.
func TestAuthnKeysUnavailable(t *testing.T) {
	is := authtest.New(t)
	h := authnHandler(t, is, "http://127.0.0.1:1/jwks")
	w := authnGet(h, "/fhir/Patient/1", "Bearer "+is.Token(t, is.Claims(authnAudience)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("%d %v %s, want 503 without a challenge", w.Code, w.Header(), w.Body)
	}
}

// The discovery document and the CapabilityStatement are public and say
// how to get a token; without authentication there is nothing to discover.
func TestAuthnDiscovery(t *testing.T) {
	is := authtest.New(t)
	h := authnHandler(t, is, is.URL+"/jwks")
	w := authnGet(h, "/fhir/.well-known/smart-configuration", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("smart-configuration: %d %s", w.Code, w.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + "/jwks",
		"authorization_endpoint":                is.URL + "/authorize",
		"token_endpoint":                        is.URL + "/token",
		"grant_types_supported":                 []any{"authorization_code", "client_credentials"},
		"token_endpoint_auth_methods_supported": []any{"private_key_jwt"},
		"response_types_supported":              []any{"code"},
		"code_challenge_methods_supported":      []any{"S256"},
		"scopes_supported": []any{"openid", "fhirUser", "launch/patient", "offline_access",
			"system/*.cruds", "system/*.read", "system/*.write", "user/*.cruds", "user/*.read", "user/*.write",
			"patient/*.cruds", "patient/*.read", "patient/*.write"},
		"capabilities": []any{"launch-standalone", "context-standalone-patient", "client-confidential-asymmetric",
			"permission-v1", "permission-v2", "permission-patient", "permission-user"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("smart-configuration (-want +got):\n%s", d)
	}

	w = authnGet(h, "/fhir/metadata", "")
	var cs struct {
		Rest []struct {
			Security json.RawMessage `json:"security"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &cs); w.Code != http.StatusOK || err != nil || len(cs.Rest) != 1 {
		t.Fatalf("metadata: %d %v", w.Code, err)
	}
	wantSec := `{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris","extension":[` +
		`{"url":"authorize","valueUri":"` + is.URL + `/authorize"},{"url":"token","valueUri":"` + is.URL + `/token"}]}],` +
		`"service":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/restful-security-service","code":"SMART-on-FHIR"}],"text":"OAuth2 bearer tokens (SMART App Launch)"}],` +
		`"description":"Every interaction but metadata and .well-known/smart-configuration needs an OAuth2 bearer token (a JWT) from the issuer ` + is.URL + `; see .well-known/smart-configuration."}`
	if d := cmp.Diff(wantSec, string(cs.Rest[0].Security)); d != "" {
		t.Errorf("rest.security (-want +got):\n%s", d)
	}

	off := authnHandler(t, nil, "")
	if w := authnGet(off, "/fhir/.well-known/smart-configuration", ""); w.Code != http.StatusNotFound {
		t.Errorf("smart-configuration without auth: %d, want 404", w.Code)
	}
	w = authnGet(off, "/fhir/metadata", "")
	var plain map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &plain); w.Code != http.StatusOK || err != nil {
		t.Fatalf("metadata without auth: %d %v", w.Code, err)
	}
	if sec, ok := plain["rest"].([]any)[0].(map[string]any)["security"]; ok {
		t.Errorf("metadata without auth has security %v", sec)
	}
}
