// Package authtest is a token issuer for tests: it generates signing keys,
// serves their JWKS and OpenID metadata from a loopback server, and signs
// tokens with them.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is a test identity provider.
type Issuer struct {
	URL string // its issuer identifier (the server's base URL)
	// JWKSFetches counts the requests for the key set.
	JWKSFetches atomic.Int64

	mu   sync.Mutex
	keys []jose.JSONWebKey // private; the last one signs by default
	n    int
}

// New starts an issuer with one RSA key (kid "k1").
func New(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"issuer": is.URL, "jwks_uri": is.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.JWKSFetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		writeJSON(w, set)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.URL = srv.URL
	is.AddKey(t, jose.RS256)
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// AddKey generates a key for alg (RS*/PS* RSA, ES256 P-256, ES384 P-384),
// publishes it and makes it the signing key; it returns its kid.
func (is *Issuer) AddKey(t testing.TB, alg jose.SignatureAlgorithm) string {
	t.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.n++
	kid := "k" + strconv.Itoa(is.n)
	is.keys = append(is.keys, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	return kid
}

// Unpublished returns a key signing with alg that the JWKS does not list
// (a rotation the server has not seen yet, when published later with
// Publish).
func (is *Issuer) Unpublished(t testing.TB, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	kid := is.AddKey(t, alg)
	is.mu.Lock()
	defer is.mu.Unlock()
	k := is.keys[len(is.keys)-1]
	is.keys = is.keys[:len(is.keys)-1]
	if k.KeyID != kid {
		t.Fatal("authtest: keys changed concurrently")
	}
	return k
}

// Publish adds k to the JWKS.
func (is *Issuer) Publish(k jose.JSONWebKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
}

// Key is the current signing key.
func (is *Issuer) Key() jose.JSONWebKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[len(is.keys)-1]
}

// Claims are a valid token's claims for audience: iss, sub, aud, iat, exp
// an hour ahead, and a scope.
func (is *Issuer) Claims(audience string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.URL, "sub": "user-1", "aud": audience, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "scope": "system/*.cruds",
	}
}

// Token signs claims with the current key.
func (is *Issuer) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	return Sign(t, is.Key(), claims)
}

// Sign signs claims with key (its alg and kid in the header).
func Sign(t testing.TB, key jose.JSONWebKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Forged returns a token with header alg, signed (for HS*) with secret as
// the HMAC key, or unsigned for "none": what an attacker sends to try
// algorithm confusion.
func Forged(t testing.TB, alg, kid string, secret []byte, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	if alg == "none" {
		return input + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// PublicJWK is the JSON of the public half of k, as the JWKS serves it.
func PublicJWK(t testing.TB, k jose.JSONWebKey) []byte {
	t.Helper()
	b, err := k.Public().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BadToken is an Authorization header that must not authenticate.
type BadToken struct {
	Name   string
	Header string // empty: none sent
	// Desc is a phrase of the error_description; empty: no token was
	// sent, so the challenge has no error code.
	Desc string
}

// CheckChallenge checks a WWW-Authenticate value (realm "kapfhir") for b:
// no error code without a token, else invalid_token saying Desc and not
// quoting the token.
func (b BadToken) CheckChallenge(ch string) error {
	if b.Desc == "" {
		if ch != `Bearer realm="kapfhir"` {
			return fmt.Errorf("%s: challenge %s, want no error code", b.Name, ch)
		}
		return nil
	}
	if !strings.HasPrefix(ch, `Bearer realm="kapfhir", error="invalid_token", error_description="`) || !strings.Contains(ch, b.Desc) {
		return fmt.Errorf("%s: challenge %s, want invalid_token saying %q", b.Name, ch, b.Desc)
	}
	if tok := strings.TrimPrefix(b.Header, "Bearer "); len(tok) > 8 && strings.Contains(ch, tok) {
		return fmt.Errorf("%s: challenge quotes the token: %s", b.Name, ch)
	}
	return nil
}

// BadTokens are the ways a token fails for a server trusting is with
// audience: missing, expired, not yet valid, wrong issuer or audience, bad
// signature, algorithm confusion (none, HS256 keyed with the public key),
// malformed, and claims of the wrong type.
func BadTokens(t testing.TB, is *Issuer, audience string) []BadToken {
	t.Helper()
	other := New(t)
	now := time.Now()
	good := func() map[string]any { return is.Claims(audience) }
	set := func(c map[string]any, k string, v any) map[string]any {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	signing := is.Key()
	der, err := x509.MarshalPKIXPublicKey(signing.Public().Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	stranger := other.Key()
	stranger.KeyID = signing.KeyID // same kid, another key: the signature cannot verify
	parts := strings.Split(is.Token(t, good()), ".")
	tampered := parts[0] + "." + strings.Split(is.Token(t, set(good(), "sub", "admin")), ".")[1] + "." + parts[2]
	return []BadToken{
		{"missing", "", ""},
		{"other scheme", "Basic dXNlcjpwYXNz", ""},
		{"expired", "Bearer " + is.Token(t, set(good(), "exp", now.Add(-time.Hour).Unix())), "expired"},
		{"no exp", "Bearer " + is.Token(t, set(good(), "exp", nil)), "no expiry"},
		{"not yet valid", "Bearer " + is.Token(t, set(good(), "nbf", now.Add(time.Hour).Unix())), "not valid yet"},
		{"issued in the future", "Bearer " + is.Token(t, set(good(), "iat", now.Add(time.Hour).Unix())), "not valid yet"},
		{"wrong iss", "Bearer " + is.Token(t, set(good(), "iss", other.URL)), "issuer is not trusted"},
		{"wrong aud", "Bearer " + is.Token(t, set(good(), "aud", "https://elsewhere.example/fhir")), "not meant for this server"},
		{"no aud", "Bearer " + is.Token(t, set(good(), "aud", nil)), "not meant for this server"},
		{"bad signature", "Bearer " + Sign(t, stranger, good()), "signature does not verify"},
		{"tampered payload", "Bearer " + tampered, "signature does not verify"},
		{"alg none", "Bearer " + Forged(t, "none", signing.KeyID, nil, good()), "not a JWT signed with one of"},
		{"HS256 with the PEM public key", "Bearer " + Forged(t, "HS256", signing.KeyID, pubPEM, good()), "not a JWT signed with one of"},
		{"HS256 with the JWK", "Bearer " + Forged(t, "HS256", signing.KeyID, PublicJWK(t, signing), good()), "not a JWT signed with one of"},
		{"malformed", "Bearer not.a.jwt", "not a JWT"},
		{"not base64", "Bearer ab$cd", "well-formed bearer token"},
		{"empty bearer", "Bearer ", "well-formed bearer token"},
		{"scope a number", "Bearer " + is.Token(t, set(good(), "scope", 7)), "scope claim"},
		{"purpose an object", "Bearer " + is.Token(t, set(good(), "purpose_of_use", map[string]string{"a": "b"})), "purpose_of_use claim"},
		{"client_id a number", "Bearer " + is.Token(t, set(good(), "client_id", 7)), "claims are malformed"},
	}
}
