package auth_test

import (
	"crypto/x509"
	"encoding/pem"
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
	other := authtest.New(t)
	j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}})
	now := time.Now()
	good := func() map[string]any { return is.Claims(audience) }
	signing := is.Key()
	pemKey, err := x509.MarshalPKIXPublicKey(signing.Public().Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemKey})
	stranger := other.Key()
	stranger.KeyID = is.Key().KeyID // same kid, another key: the signature cannot verify
	valid := is.Token(t, good())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + strings.Split(is.Token(t, with(good(), "sub", "admin")), ".")[1] + "." + parts[2]

	tests := []struct {
		name, header, desc string
	}{
		{"missing", "", ""},
		{"other scheme", "Basic dXNlcjpwYXNz", ""},
		{"expired", "Bearer " + is.Token(t, with(good(), "exp", now.Add(-time.Hour).Unix())), "expired"},
		{"no exp", "Bearer " + is.Token(t, with(good(), "exp", nil)), "no expiry"},
		{"not yet valid", "Bearer " + is.Token(t, with(good(), "nbf", now.Add(time.Hour).Unix())), "not valid yet"},
		{"issued in the future", "Bearer " + is.Token(t, with(good(), "iat", now.Add(time.Hour).Unix())), "not valid yet"},
		{"wrong iss", "Bearer " + is.Token(t, with(good(), "iss", other.URL)), "issuer is not trusted"},
		{"wrong aud", "Bearer " + is.Token(t, with(good(), "aud", "https://elsewhere.example/fhir")), "not meant for this server"},
		{"no aud", "Bearer " + is.Token(t, with(good(), "aud", nil)), "not meant for this server"},
		{"bad signature", "Bearer " + authtest.Sign(t, stranger, good()), "signature does not verify"},
		{"tampered payload", "Bearer " + tampered, "signature does not verify"},
		{"alg none", "Bearer " + authtest.Forged(t, "none", "k1", nil, good()), "not a JWT signed with one of"},
		{"HS256 with the PEM public key", "Bearer " + authtest.Forged(t, "HS256", "k1", pubPEM, good()), "not a JWT signed with one of"},
		{"HS256 with the JWK", "Bearer " + authtest.Forged(t, "HS256", "k1", authtest.PublicJWK(t, is.Key()), good()), "not a JWT signed with one of"},
		{"malformed", "Bearer not.a.jwt", "not a JWT"},
		{"not base64", "Bearer ab$cd", "well-formed bearer token"},
		{"empty bearer", "Bearer ", "well-formed bearer token"},
		{"scope a number", "Bearer " + is.Token(t, with(good(), "scope", 7)), "scope claim"},
		{"purpose an object", "Bearer " + is.Token(t, with(good(), "purpose_of_use", map[string]string{"a": "b"})), "purpose_of_use claim"},
		{"client_id a number", "Bearer " + is.Token(t, with(good(), "client_id", 7)), "claims are malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/fhir/Patient", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			p, err := j.Authenticate(r)
			if p != nil || !fault.Is(err, fault.Unauthorized) {
				t.Fatalf("Authenticate: %v, %v; want a 401 fault", p, err)
			}
			ch := auth.Challenge("kapfhir", err)
			if tt.desc == "" {
				if ch != `Bearer realm="kapfhir"` {
					t.Errorf("challenge %s, want no error code", ch)
				}
				return
			}
			if !strings.HasPrefix(ch, `Bearer realm="kapfhir", error="invalid_token", error_description="`) || !strings.Contains(ch, tt.desc) {
				t.Errorf("challenge %s, want invalid_token saying %q", ch, tt.desc)
			}
			if tok := strings.TrimPrefix(tt.header, "Bearer "); len(tok) > 8 && strings.Contains(ch, tok) {
				t.Errorf("challenge quotes the token: %s", ch)
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

// An issuer whose keys cannot be fetched answers 503, not 401: the token
// may well be good.
func TestKeysUnavailable(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 4096) + `]}`))
	}))
	t.Cleanup(big.Close)
	for _, jwks := range []string{big.URL + "/jwks", "http://127.0.0.1:1/jwks"} {
		is := authtest.New(t)
		j := newJWT(t, auth.Options{Issuers: []auth.Issuer{{URL: is.URL, JWKSURI: jwks}}, MaxKeyBytes: 1024})
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
