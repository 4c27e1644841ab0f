package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/internal/auth/authtest"
	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/syncbuf"
)

// serve runs a until the test ends.
func serve(t *testing.T, a *App) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func do(t *testing.T, method, url, token, body string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// Without issuers the service refuses any address but loopback, before
// it opens anything.
func TestAuthOffRefusedOffLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8080", "[::]:0"} {
		cfg, err := config.Load(map[string]string{"KAPFHIR_HTTP_ADDR": addr, "KAPFHIR_DATA_DIR": t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		a, err := Start(context.Background(), cfg, testOptions())
		if a != nil || err == nil || !strings.Contains(err.Error(), "KAPFHIR_AUTH_ISSUERS") || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: Start = %v, %v; want a refusal naming KAPFHIR_AUTH_ISSUERS", addr, a, err)
		}
	}
}

// On loopback without issuers it starts, warns loudly, and serves without
// tokens.
func TestAuthOffOnLoopbackWarns(t *testing.T) {
	var logs syncbuf.Buffer
	o := testOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a, err := Start(context.Background(), testConfig(t, map[string]string{}), o)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "AUTHENTICATION IS OFF") || !strings.Contains(out, "set KAPFHIR_AUTH_ISSUERS") {
		t.Errorf("no loud warning in the start log:\n%s", out)
	}
	if code, _ := do(t, "GET", a.URL()+"/fhir/Patient", "", ""); code != http.StatusOK {
		t.Errorf("search without a token: %d, want 200", code)
	}
	if code, _ := do(t, "GET", a.URL()+"/fhir/.well-known/smart-configuration", "", ""); code != http.StatusNotFound {
		t.Errorf("smart-configuration with auth off: %d, want 404", code)
	}
}

// With an issuer configured, a real token signed by it (keys discovered
// from its metadata) reads through the real router and store; no token is
// a 401 with a challenge.
func TestAuthEndToEnd(t *testing.T) {
	is := authtest.New(t)
	const base = "https://fhir.example.org/fhir"
	a, err := Start(context.Background(), testConfig(t, map[string]string{
		"KAPFHIR_AUTH_ISSUERS": is.URL, "KAPFHIR_BASE_URL": base, "KAPFHIR_AUTH_TOKEN_URL": is.URL + "/token",
	}), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	token := is.Token(t, is.Claims(base))
	if code, _ := do(t, "PUT", a.URL()+"/fhir/Patient/p1", token, `{"resourceType":"Patient","id":"p1","active":true}`); code != http.StatusCreated {
		t.Fatalf("create with a token: %d", code)
	}
	if code, _ := do(t, "GET", a.URL()+"/fhir/Patient/p1", token, ""); code != http.StatusOK {
		t.Errorf("read with a token: %d, want 200", code)
	}
	code, h := do(t, "GET", a.URL()+"/fhir/Patient/p1", "", "")
	if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") != `Bearer realm="kapfhir"` {
		t.Errorf("read without a token: %d %q, want 401 with a challenge", code, h.Get("WWW-Authenticate"))
	}
	code, h = do(t, "GET", a.URL()+"/fhir/Patient/p1", is.Token(t, is.Claims("https://other.example/fhir")), "")
	if code != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("read with a token for another audience: %d %q, want 401 invalid_token", code, h.Get("WWW-Authenticate"))
	}
	if code, _ := do(t, "GET", a.URL()+"/fhir/.well-known/smart-configuration", "", ""); code != http.StatusOK {
		t.Errorf("smart-configuration: %d, want 200", code)
	}
	// The verified claims drive the scope checks: a patient/ token reads
	// its own patient only, and a token without a scope reads nothing.
	for _, tc := range []struct {
		scope, patient string
		want           int
	}{
		{"patient/Patient.r", "p1", http.StatusOK},
		{"patient/Patient.r", "p2", http.StatusForbidden},
		{"patient/Observation.rs", "p1", http.StatusForbidden},
		{"openid", "", http.StatusForbidden},
	} {
		claims := is.Claims(base)
		claims["scope"], claims["patient"] = tc.scope, tc.patient
		if code, _ := do(t, "GET", a.URL()+"/fhir/Patient/p1", is.Token(t, claims), ""); code != tc.want {
			t.Errorf("read with scope %q for patient %q: %d, want %d", tc.scope, tc.patient, code, tc.want)
		}
	}
}
