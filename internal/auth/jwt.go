package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Algorithms are the signature algorithms a token may use: asymmetric
// only. "none" and HMAC are refused before any key is looked at, so a
// token "signed" with a public key as an HMAC secret never verifies.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.PS256, jose.PS384, jose.ES256, jose.ES384}

// Options configure a JWT authenticator.
type Options struct {
	Issuers  []Issuer
	Audience string        // aud must contain it
	Leeway   time.Duration // allowed clock skew for exp, nbf and iat
	// Client fetches metadata and keys; nil: http.DefaultClient (each
	// fetch is bounded by FetchTimeout anyway).
	Client       *http.Client
	FetchTimeout time.Duration // 0: 5s
	MaxKeyBytes  int64         // largest metadata or key set document; 0: 1 MiB
	// RefetchInterval is the least time between two fetches of one
	// issuer's keys; 0: 1m.
	RefetchInterval time.Duration
	// MaxKeyAge is how long a fetched key set is used before it is
	// fetched again; 0: 1h.
	MaxKeyAge time.Duration
	Now       func() time.Time // nil: time.Now
}

// JWT verifies OAuth2 bearer tokens (RFC 6750) that are JWTs signed by a
// configured issuer.
type JWT struct {
	audience string
	leeway   time.Duration
	now      func() time.Time
	issuers  map[string]*keySource
}

// NewJWT returns an authenticator of the tokens of o.Issuers.
func NewJWT(o Options) (*JWT, error) {
	if len(o.Issuers) == 0 || o.Audience == "" {
		return nil, errors.New("auth: at least one issuer and an audience are required")
	}
	f := &fetcher{
		client: o.Client, timeout: o.FetchTimeout, maxBytes: o.MaxKeyBytes,
		refetch: o.RefetchInterval, maxAge: o.MaxKeyAge, now: o.Now,
	}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	defaultTo(&f.timeout, 5*time.Second)
	defaultTo(&f.refetch, time.Minute)
	defaultTo(&f.maxAge, time.Hour)
	if f.maxBytes == 0 {
		f.maxBytes = 1 << 20
	}
	if f.now == nil {
		f.now = time.Now
	}
	j := &JWT{audience: o.Audience, leeway: o.Leeway, now: f.now, issuers: map[string]*keySource{}}
	for _, is := range o.Issuers {
		j.issuers[is.URL] = &keySource{issuer: is, fetch: f, jwksURI: is.JWKSURI}
	}
	return j, nil
}

func defaultTo(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// ErrNoToken is the cause of the fault a request without a bearer token
// gets: RFC 6750 3.1 says its challenge carries no error code.
var ErrNoToken = errors.New("no bearer token")

// maxTokenBytes bounds the token a request may carry; real access tokens
// are a few KiB.
const maxTokenBytes = 16 << 10

// b64token is RFC 6750's token syntax.
var b64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// Authenticate verifies the request's bearer token.
func (j *JWT) Authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return nil, noToken()
	}
	scheme, token, _ := strings.Cut(h[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, say) is no bearer token at all.
		return nil, noToken()
	}
	token = strings.TrimSpace(token)
	if len(h) > 1 || len(token) > maxTokenBytes || !b64token.MatchString(token) {
		return nil, invalid("the Authorization header does not carry one well-formed bearer token")
	}
	return j.verify(r, token)
}

func noToken() error {
	e := fault.New(fault.Unauthorized, "", "this request needs a bearer token (Authorization: Bearer <token>)")
	e.Err = ErrNoToken
	return e
}

// invalid is the fault of a token that does not verify. Its text goes to
// the client (and into WWW-Authenticate): it never quotes the token.
func invalid(format string, args ...any) error {
	return fault.New(fault.Unauthorized, "", format, args...)
}

// claims are the token's claims this service reads, beyond the registered
// ones.
type claims struct {
	Scope        json.RawMessage `json:"scope"`
	Scp          json.RawMessage `json:"scp"`
	ClientID     string          `json:"client_id"`
	Azp          string          `json:"azp"`
	FHIRUser     string          `json:"fhirUser"`
	Patient      string          `json:"patient"`
	PurposeOfUse json.RawMessage `json:"purpose_of_use"`
}

func (j *JWT) verify(r *http.Request, token string) (*Principal, error) {
	sig, err := jose.ParseSignedCompact(token, Algorithms)
	if err != nil {
		return nil, invalid("the bearer token is not a JWT signed with one of %s", algorithmList())
	}
	var unverified jwt.Claims
	if err := json.Unmarshal(sig.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, invalid("the bearer token's claims are malformed")
	}
	src := j.issuers[unverified.Issuer]
	if src == nil {
		return nil, invalid("the bearer token's issuer is not trusted by this server")
	}
	hdr := sig.Signatures[0].Header
	// The fetch outlives a client that hangs up (it is bounded by its own
	// timeout): a cancelled fetch would count as a failure and hold every
	// client off the keys for the refetch interval.
	keys, err := src.lookup(context.WithoutCancel(r.Context()), hdr.KeyID)
	if err != nil {
		e := fault.New(fault.Unavailable, "", "the keys of the bearer token's issuer cannot be fetched; try again later")
		e.Err = err
		return nil, e
	}
	payload, ok := verifyWith(sig, jose.SignatureAlgorithm(hdr.Algorithm), keys)
	if !ok {
		return nil, invalid("the bearer token's signature does not verify with the issuer's keys")
	}
	var std jwt.Claims
	var c claims
	if json.Unmarshal(payload, &std) != nil || json.Unmarshal(payload, &c) != nil {
		return nil, invalid("the bearer token's claims are malformed")
	}
	if err := j.checkClaims(std); err != nil {
		return nil, err
	}
	return principal(std, c)
}

// verifyWith checks the signature with each key that fits alg.
func verifyWith(sig *jose.JSONWebSignature, alg jose.SignatureAlgorithm, keys []jose.JSONWebKey) ([]byte, bool) {
	for _, k := range keys {
		if (k.Algorithm != "" && k.Algorithm != string(alg)) || !fits(k.Key, alg) {
			continue
		}
		if payload, err := sig.Verify(k.Key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// fits reports whether key is of the kind alg needs (RSA for RS/PS, the
// matching curve for ES), so a key is only ever used the way it is meant.
func fits(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS")
	case *ecdsa.PublicKey:
		return (alg == jose.ES256 && k.Curve == elliptic.P256()) || (alg == jose.ES384 && k.Curve == elliptic.P384())
	}
	return false
}

func (j *JWT) checkClaims(std jwt.Claims) error {
	if std.Expiry == nil {
		return invalid("the bearer token has no expiry (exp)")
	}
	err := std.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{j.audience}, Time: j.now()}, j.leeway)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrExpired):
		return invalid("the bearer token has expired")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return invalid("the bearer token is not valid yet")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return invalid("the bearer token is not meant for this server (aud)")
	}
	return invalid("the bearer token's claims do not validate")
}

// principal maps verified claims to the Principal.
func principal(std jwt.Claims, c claims) (*Principal, error) {
	scopes, err := stringList(c.Scope)
	if err == nil && c.Scope == nil {
		scopes, err = stringList(c.Scp)
	}
	if err != nil {
		return nil, invalid("the bearer token's scope claim is neither a string nor an array of strings")
	}
	purposes, err := stringList(c.PurposeOfUse)
	if err != nil {
		return nil, invalid("the bearer token's purpose_of_use claim is neither a string nor an array of strings")
	}
	p := &Principal{
		Issuer: std.Issuer, Subject: std.Subject, ClientID: c.ClientID,
		FHIRUser: c.FHIRUser, Patient: c.Patient, Scopes: scopes, PurposeOfUse: purposes,
	}
	if p.ClientID == "" {
		p.ClientID = c.Azp
	}
	return p, nil
}

// stringList reads a claim that is a space-separated string or an array
// of strings; absent or null is none.
func stringList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.Fields(s), nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	return list, nil
}

func algorithmList() string {
	names := make([]string, len(Algorithms))
	for i, a := range Algorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// Challenge is the WWW-Authenticate value of a 401 (RFC 6750 3): no error
// code when the request had no token, invalid_token with the fault's text
// otherwise.
func Challenge(realm string, err error) string {
	c := fmt.Sprintf("Bearer realm=%q", quotable(realm))
	if errors.Is(err, ErrNoToken) {
		return c
	}
	desc := ""
	var fe *fault.Error
	if errors.As(err, &fe) && len(fe.Issues) > 0 {
		desc = fe.Issues[0].Diagnostics
	}
	return c + fmt.Sprintf(`, error="invalid_token", error_description=%q`, quotable(desc))
}

// quotable keeps what RFC 6750 allows in a quoted attribute (printable
// ASCII but " and \).
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
