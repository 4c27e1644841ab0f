// Package smarttest is a SMART Backend Services token endpoint for tests.
// It verifies every client assertion the way an EHR's authorization server
// must (SMART App Launch 2.x): the signature with the registered public
// key (RS384 or ES384 in JOSE r||s form), iss = sub = client id, aud = its
// own URL, exp in the future and at most five minutes ahead, a jti never
// seen before, the grant and assertion types. It is written from the
// specification, independently of package smart's signing code.
package smarttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// MaxAssertionLifetime is the furthest ahead an assertion may expire.
const MaxAssertionLifetime = 5 * time.Minute

// Server is a token endpoint. Set its fields before the first request.
type Server struct {
	// URL is the token endpoint; assertions must name it as aud.
	URL string
	// ClientID is the one registered client.
	ClientID string
	// ExpiresIn is the lifetime given to tokens, in seconds (0: omitted).
	ExpiresIn int64
	// Now is the server's clock; default time.Now.
	Now func() time.Time

	mu       sync.Mutex
	keys     map[string]crypto.PublicKey
	jtis     map[string]bool
	issued   map[string]time.Time // token → expiry
	revoked  map[string]bool
	hits     int
	scopes   []string
	refusals []string
	hold     chan struct{}
	arrived  chan struct{}
}

// New starts a token endpoint for clientID on a local port; it stops when
// the test ends.
func New(t testing.TB, clientID string) *Server {
	s := &Server{
		ClientID: clientID, ExpiresIn: 300, Now: time.Now,
		keys: map[string]crypto.PublicKey{}, jtis: map[string]bool{},
		issued: map[string]time.Time{}, revoked: map[string]bool{},
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/token"
	return s
}

// Register publishes a public key under kid (the client's JWKS).
func (s *Server) Register(kid string, pub crypto.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = pub
}

// Hold makes token requests wait until release is called; arrived
// receives once per request that reached the endpoint while held.
func (s *Server) Hold() (arrived <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = make(chan struct{})
	s.arrived = make(chan struct{}, 100)
	h := s.hold
	return s.arrived, func() { close(h) }
}

// Hits is the number of token requests received.
func (s *Server) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// Scopes are the scope parameters of the requests received, in order.
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scopes...)
}

// Refusals are the reasons of the requests refused, in order.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

// Valid reports whether token was issued here, is not revoked and has not
// expired by the server's clock: what a FHIR endpoint behind this server
// would check.
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.issued[token]
	return ok && !s.revoked[token] && (s.ExpiresIn == 0 || s.Now().Before(exp))
}

// Revoke makes a token invalid before its expiry.
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[token] = true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits++
	hold, arrived := s.hold, s.arrived
	s.mu.Unlock()
	if hold != nil {
		arrived <- struct{}{}
		<-hold
	}
	token, reason := s.exchange(r)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if reason != "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": reason})
		return
	}
	resp := map[string]any{"access_token": token, "token_type": "bearer"}
	if s.ExpiresIn > 0 {
		resp["expires_in"] = s.ExpiresIn
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// exchange checks one token request and issues a token, or says why not.
func (s *Server) exchange(r *http.Request) (token, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refuse := func(format string, args ...any) (string, string) {
		why := fmt.Sprintf(format, args...)
		s.refusals = append(s.refusals, why)
		return "", why
	}
	if r.Method != http.MethodPost {
		return refuse("method %s", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		return refuse("content type %q", ct)
	}
	if err := r.ParseForm(); err != nil {
		return refuse("form: %v", err)
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		return refuse("grant_type %q", g)
	}
	if a := r.PostForm.Get("client_assertion_type"); a != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return refuse("client_assertion_type %q", a)
	}
	claims, why := s.verify(r.PostForm.Get("client_assertion"))
	if why != "" {
		return refuse("%s", why)
	}
	now := s.Now()
	switch {
	case claims.Iss != s.ClientID || claims.Sub != s.ClientID:
		return refuse("iss %q / sub %q is not the client id", claims.Iss, claims.Sub)
	case claims.Aud != s.URL:
		return refuse("aud %q is not the token URL", claims.Aud)
	case claims.Exp == 0 || !now.Before(time.Unix(claims.Exp, 0)):
		return refuse("assertion expired")
	case time.Unix(claims.Exp, 0).After(now.Add(MaxAssertionLifetime)):
		return refuse("exp more than 5 minutes ahead")
	case claims.Jti == "":
		return refuse("no jti")
	case s.jtis[claims.Jti]:
		return refuse("jti reused")
	}
	s.jtis[claims.Jti] = true
	s.scopes = append(s.scopes, r.PostForm.Get("scope"))
	token = fmt.Sprintf("token-%d", len(s.issued)+1)
	s.issued[token] = now.Add(time.Duration(s.ExpiresIn) * time.Second)
	return token, ""
}

type claims struct {
	Iss, Sub, Aud, Jti string
	Exp                int64
}

// verify checks the compact JWS against the key its kid names.
func (s *Server) verify(jws string) (claims, string) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return claims{}, "assertion is not a compact JWS"
	}
	dec := base64.RawURLEncoding
	var header struct{ Alg, Kid, Typ string }
	if raw, err := dec.DecodeString(parts[0]); err != nil || json.Unmarshal(raw, &header) != nil {
		return claims{}, "bad JWS header"
	}
	key, ok := s.keys[header.Kid]
	if !ok {
		return claims{}, fmt.Sprintf("unknown kid %q", header.Kid)
	}
	sig, err := dec.DecodeString(parts[2])
	if err != nil {
		return claims{}, "bad signature encoding"
	}
	digest := sha512.Sum384([]byte(parts[0] + "." + parts[1]))
	switch k := key.(type) {
	case *rsa.PublicKey:
		if header.Alg != "RS384" {
			return claims{}, fmt.Sprintf("alg %q for an RSA key", header.Alg)
		}
		if rsa.VerifyPKCS1v15(k, crypto.SHA384, digest[:], sig) != nil {
			return claims{}, "bad signature"
		}
	case *ecdsa.PublicKey:
		if header.Alg != "ES384" {
			return claims{}, fmt.Sprintf("alg %q for an EC key", header.Alg)
		}
		if len(sig) != 96 {
			return claims{}, fmt.Sprintf("ES384 signature of %d bytes, not r||s (96)", len(sig))
		}
		r, ss := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
		if !ecdsa.Verify(k, digest[:], r, ss) {
			return claims{}, "bad signature"
		}
	default:
		return claims{}, fmt.Sprintf("unsupported key %T", key)
	}
	var c struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Jti string `json:"jti"`
		Exp int64  `json:"exp"`
	}
	if raw, err := dec.DecodeString(parts[1]); err != nil || json.Unmarshal(raw, &c) != nil {
		return claims{}, "bad JWT claims"
	}
	return claims{Iss: c.Iss, Sub: c.Sub, Aud: c.Aud, Jti: c.Jti, Exp: c.Exp}, ""
}
