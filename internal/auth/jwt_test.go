package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/auth/authtest"
	"github.com/kapfhir/kapfhir/internal/fault"
)

const audience = "https://fhir.example.org/fhir"

// clock is a settable time for the refetch rate limit.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newJWT(t *testing.T, o auth.Options) *auth.JWT {
	t.Helper()
	if o.Audience == "" {
		o.Audience = audience
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	j, err := auth.NewJWT(o)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// A good token's claims become the Principal: scope as a string, client_id,
// fhirUser, the patient of the launch context and the purposes of use.
func TestGoodToken(t *testing.T) {
	is := authtest.New(t)
	for _, alg := range auth.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			is.AddKey(t, alg)
			// A fresh cache: within the refetch interval a new key would
			// not be looked for.
			j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}})
			tok := is.Token(t, with(is.Claims(audience),
				"aud", []string{"https://other.example", audience},
				"scope", "launch/patient patient/Observation.rs openid",
				"client_id", "app-1", "azp", "ignored", "fhirUser", "Practitioner/p1",
				"patient", "pat-9", "purpose_of_use", []string{"TREAT", "ETREAT"}))
			p, err := j.Authenticate(bearer(tok))
			if err != nil {
				t.Fatal(err)
			}
			want := &auth.Principal{
				Issuer: is.URL, Subject: "user-1", ClientID: "app-1", FHIRUser: "Practitioner/p1", Patient: "pat-9",
				Scopes: []string{"launch/patient", "patient/Observation.rs", "openid"}, PurposeOfUse: []string{"TREAT", "ETREAT"},
			}
			if d := cmp.Diff(want, p); d != "" {
				t.Errorf("principal (-want +got):\n%s", d)
			}
		})
	}
}

// The other claim forms: scp as an array, azp for the client, a single
// purpose as a string.
func TestClaimForms(t *testing.T) {
	is := authtest.New(t)
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL, JWKSURI: is.URL + "/jwks"}}})
	tok := is.Token(t, with(is.Claims(audience), "scope", nil, "scp", []string{"system/*.rs"}, "azp", "svc", "purpose_of_use", "HPAYMT"))
	p, err := j.Authenticate(bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	want := &auth.Principal{Issuer: is.URL, Subject: "user-1", ClientID: "svc", Scopes: []string{"system/*.rs"}, PurposeOfUse: []string{"HPAYMT"}}
	if d := cmp.Diff(want, p); d != "" {
		t.Errorf("principal (-want +got):\n%s", d)
	}
}

// Every bad token is a 401 fault with an invalid_token challenge that does
// not quote the token; a missing one has no error code.
func TestBadTokens(t *testing.T) {
	is := authtest.New(t)
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}})
	for _, tt := range authtest.BadTokens(t, is, audience) {
		t.Run(tt.Name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
			if tt.Header != "" {
				r.Header.Set("Authorization", tt.Header)
			}
			p, err := j.Authenticate(r)
			if p != nil || !fault.Is(err, fault.Unauthorized) {
				t.Fatalf("Authenticate: %v, %v; want a 401 fault", p, err)
			}
			if err := tt.CheckChallenge(auth.Challenge("kapfhir", err)); err != nil {
				t.Error(err)
			}
		})
	}
}

// Within the leeway, a token just expired or not quite valid yet passes.
func TestLeeway(t *testing.T) {
	is := authtest.New(t)
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}, Leeway: time.Minute})
	now := time.Now()
	for _, c := range []map[string]any{
		with(is.Claims(audience), "exp", now.Add(-20*time.Second).Unix()),
		with(is.Claims(audience), "nbf", now.Add(20*time.Second).Unix(), "iat", now.Add(20*time.Second).Unix()),
	} {
		if _, err := j.Authenticate(bearer(is.Token(t, c))); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
}

// A token signed with a new key (unknown kid) makes the server fetch the
// key set again, at most once per refetch interval.
func TestKeyRotation(t *testing.T) {
	is := authtest.New(t)
	clk := &clock{t: time.Now()}
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}, Now: clk.now, RefetchInterval: time.Minute})
	if _, err := j.Authenticate(bearer(is.Token(t, is.Claims(audience)))); err != nil {
		t.Fatal(err)
	}
	if n := is.JWKSFetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches, want 1", n)
	}
	next := is.Unpublished(t, jose.ES256)
	tok := authtest.Sign(t, next, is.Claims(audience))
	// Unknown kid: refetched once (the rate limit allows it after the
	// interval) and still unknown.
	clk.add(2 * time.Minute)
	if _, err := j.Authenticate(bearer(tok)); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("unpublished key: %v, want 401", err)
	}
	if n := is.JWKSFetches.Load(); n != 2 {
		t.Fatalf("%d key set fetches, want 2", n)
	}
	// The issuer publishes it; within the interval the server does not
	// look again, so made-up kids cannot hammer the issuer.
	is.Publish(next)
	for range 3 {
		if _, err := j.Authenticate(bearer(tok)); !fault.Is(err, fault.Unauthorized) {
			t.Fatalf("within the refetch interval: %v, want 401", err)
		}
	}
	if n := is.JWKSFetches.Load(); n != 2 {
		t.Fatalf("%d key set fetches within the interval, want 2", n)
	}
	clk.add(2 * time.Minute)
	p, err := j.Authenticate(bearer(tok))
	if err != nil || p.Subject != "user-1" {
		t.Fatalf("rotated key after the interval: %v, %v", p, err)
	}
	if n := is.JWKSFetches.Load(); n != 3 {
		t.Errorf("%d key set fetches, want 3", n)
	}
}

// An issuer whose keys cannot be fetched (too large, too slow, down)
// answers 503, not 401: the token may well be good.
func TestKeysUnavailable(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 4096) + `]}`))
	}))
	t.Cleanup(big.Close)
	hangs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hangs.Close)
	for _, jwks := range []string{big.URL + "/jwks", hangs.URL + "/jwks", "http://127.0.0.1:1/jwks"} {
		is := authtest.New(t)
		j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL, JWKSURI: jwks}}, MaxKeyBytes: 1024, FetchTimeout: 100 * time.Millisecond})
		_, err := j.Authenticate(bearer(is.Token(t, is.Claims(audience))))
		if !fault.Is(err, fault.Unavailable) {
			t.Errorf("%s: %v, want 503", jwks, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://idp.example.org/realms/x": true,
		"http://127.0.0.1:9000":            true,
		"http://localhost/x":               true,
		"http://[::1]:80":                  true,
		"http://idp.example.org":           false,
		"ftp://idp.example.org":            false,
		"idp.example.org":                  false,
		"https://idp.example.org/#frag":    false,
	} {
		if err := auth.CheckURL(u); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", u, err, ok)
		}
	}
}

// Keys are discovered from the OpenID metadata, else from the SMART
// configuration; metadata naming another issuer is not trusted.
func TestDiscovery(t *testing.T) {
	is := authtest.New(t)
	for _, tt := range []struct {
		name   string
		openid string // the openid-configuration's issuer; empty: 404
		smart  string // the smart-configuration's issuer; empty: 404
		ok     bool   // else 503: the keys cannot be had
	}{
		{"smart-configuration only", "", "self", true},
		{"openid-configuration names another issuer", "https://idp.example.org", "", false},
		{"neither", "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var self string
			meta := func(iss string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if iss == "" {
						http.NotFound(w, r)
						return
					}
					if iss == "self" {
						iss = self
					}
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": is.URL + "/jwks"})
				}
			}
			mux := http.NewServeMux()
			mux.Handle("/.well-known/openid-configuration", meta(tt.openid))
			mux.Handle("/.well-known/smart-configuration", meta(tt.smart))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			self = srv.URL
			j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: srv.URL}}})
			// The issuer's keys (of is) signing for the issuer at srv.
			p, err := j.Authenticate(bearer(is.Token(t, with(is.Claims(audience), "iss", srv.URL))))
			switch {
			case tt.ok && (err != nil || p.Issuer != srv.URL):
				t.Errorf("Authenticate: %v, %v; want the principal", p, err)
			case !tt.ok && !fault.Is(err, fault.Unavailable):
				t.Errorf("Authenticate: %v; want 503", err)
			}
		})
	}
}

// A client that hangs up does not cancel the key fetch: otherwise its
// failure would hold every client off the keys for the refetch interval.
func TestFetchOutlivesTheRequest(t *testing.T) {
	is := authtest.New(t)
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Authenticate(bearer(is.Token(t, is.Claims(audience))).WithContext(ctx)); err != nil {
		t.Errorf("with the request cancelled: %v", err)
	}
}
