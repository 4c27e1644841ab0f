package ehr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/kapfhir/kapfhir/internal/ehr/smart"
)

// TokenSource supplies an endpoint's bearer tokens.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	// Invalidate drops a token the EHR refused (401) and reports whether
	// asking again may give a different one.
	Invalidate(token string) bool
}

// staticToken is the fixed token of AuthBearer.
type staticToken struct{ s Secret }

func (t staticToken) Token(context.Context) (string, error) { return t.s.Reveal(), nil }
func (t staticToken) Invalidate(string) bool                { return false }

// ClientOptions tune NewClient; the zero value is the production setting.
type ClientOptions struct {
	// Transport carries the requests (tests, a proxy); nil:
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds each request, token requests included; 0:
	// DefaultTimeout.
	Timeout time.Duration
	// Now is the clock of the token cache; nil: time.Now.
	Now func() time.Time
}

// DefaultTimeout bounds one request to an EHR.
const DefaultTimeout = 30 * time.Second

// NewClient is the HTTP client for requests to e: it authenticates them as
// e.Auth says and follows no redirects (a 3xx is the caller's to handle;
// following one could carry the token elsewhere).
func NewClient(e Endpoint, o ClientOptions) (*http.Client, error) {
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var tokens TokenSource
	switch e.Auth.Type {
	case AuthNone:
	case AuthBearer:
		tokens = staticToken{e.Auth.Token}
	case AuthSMARTBackend:
		c, err := smart.New(smart.Config{
			TokenURL: e.Auth.TokenURL, ClientID: e.Auth.ClientID, Key: e.Auth.Key, Scopes: e.Auth.Scopes,
			HTTP: &http.Client{Transport: base, Timeout: timeout}, Now: o.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", e.Name, err)
		}
		tokens = c
	default:
		return nil, fmt.Errorf("endpoint %s: unknown auth type %q", e.Name, e.Auth.Type)
	}
	rt := base
	if tokens != nil {
		u, err := url.Parse(e.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: base URL: %w", e.Name, err)
		}
		rt = &Transport{Base: base, Tokens: tokens, Scheme: u.Scheme, Host: u.Host}
	}
	return &http.Client{
		Transport: rt,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// Transport adds `Authorization: Bearer` to requests for one EHR. After a
// 401 it invalidates the token and repeats the request once with a new
// one, when the token source can give another and the body can be read
// again.
type Transport struct {
	Base   http.RoundTripper
	Tokens TokenSource
	// Scheme and Host are the EHR's origin: requests elsewhere get no
	// token.
	Scheme, Host string
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != t.Scheme || req.URL.Host != t.Host {
		return t.Base.RoundTrip(req)
	}
	resp, token, err := t.send(req, req.Body)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !t.Tokens.Invalidate(token) {
		return resp, err
	}
	body := req.Body
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	// The refused answer is dropped for the retry's.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp, _, err = t.send(req, body)
	return resp, err
}

// send makes one attempt with the current token; the request is cloned,
// as a RoundTripper must not change it.
func (t *Transport) send(req *http.Request, body io.ReadCloser) (*http.Response, string, error) {
	token, err := t.Tokens.Token(req.Context())
	if err == nil && token == "" {
		err = errors.New("empty token")
	}
	if err != nil {
		if body != nil {
			body.Close() // a RoundTripper closes the body, errors too
		}
		return nil, "", fmt.Errorf("authorization: %w", err)
	}
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := t.Base.RoundTrip(r)
	return resp, token, err
}
