package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Client gets access tokens from one token endpoint and caches them. It is
// safe for concurrent use: callers that find no valid token share one
// request to the endpoint.
type Client struct {
	cfg Config

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	inflight  *fetch
}

// Config is what a Client needs.
type Config struct {
	TokenURL string
	ClientID string
	Key      Key
	// Scopes are requested space-separated (SMART v2 syntax, e.g.
	// "system/Observation.c"); empty: no scope parameter.
	Scopes []string
	// HTTP does the token requests; nil: a client with FetchTimeout.
	HTTP *http.Client
	// Now is the clock (tests inject one); nil: time.Now.
	Now func() time.Time
}

// FetchTimeout bounds one token request when Config.HTTP is nil.
const FetchTimeout = 30 * time.Second

// RefreshMargin: a cached token is replaced this long before it expires
// (or at half its lifetime, if that is shorter), so a request never leaves
// with a token that expires on the way.
const RefreshMargin = 30 * time.Second

// maxResponse bounds a token endpoint answer.
const maxResponse = 1 << 20

// The form values of SMART Backend Services.
const (
	grantType     = "client_credentials"
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

type fetch struct {
	done    chan struct{}
	waiters int // callers waiting on done; tests observe it
	token   string
	err     error
}

// New checks cfg and returns a client with an empty cache.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.TokenURL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("token URL %q is not an absolute URL", cfg.TokenURL)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("client id is empty")
	}
	if cfg.Key.m == nil {
		return nil, errors.New("no signing key")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: FetchTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg}, nil
}

// Token returns a valid access token, from the cache or from a new token
// request. ctx bounds this caller's wait only: a request already under
// way completes for the other callers.
func (c *Client) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.token != "" && c.cfg.Now().Before(c.refreshAt) {
		t := c.token
		c.mu.Unlock()
		return t, nil
	}
	f := c.inflight
	if f == nil {
		f = &fetch{done: make(chan struct{})}
		c.inflight = f
		go c.run(context.WithoutCancel(ctx), f)
	}
	f.waiters++
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Invalidate drops token from the cache after the EHR refused it (401).
// Only the token the caller used is dropped, so several requests refused
// with the same token cause one new token request, not one each. It
// reports true: a new token may be accepted where the old one was not.
func (c *Client) Invalidate(token string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == token {
		c.token = ""
	}
	return true
}

func (c *Client) run(ctx context.Context, f *fetch) {
	start := c.cfg.Now()
	token, lifetime, err := c.request(ctx, start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.token = token
		// Counted from before the request: the endpoint's clock started
		// the lifetime no earlier than that.
		c.refreshAt = start.Add(lifetime - min(RefreshMargin, lifetime/2))
	}
	f.token, f.err = token, err
	c.inflight = nil
	close(f.done)
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// request posts one token request; the returned lifetime is 0 when the
// endpoint gave no expires_in (the token is then used once, not cached).
func (c *Client) request(ctx context.Context, now time.Time) (string, time.Duration, error) {
	assertion, err := NewAssertion(c.cfg.ClientID, c.cfg.TokenURL, now)
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	jws, err := assertion.Sign(c.cfg.Key)
	if err != nil {
		return "", 0, fmt.Errorf("token request: signing the client assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {grantType},
		"client_assertion_type": {assertionType},
		"client_assertion":      {jws},
	}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: %w", c.cfg.TokenURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: reading the answer: %w", c.cfg.TokenURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("token request to %s: %s%s", c.cfg.TokenURL, resp.Status, oauthError(body))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return "", 0, fmt.Errorf("token request to %s: answer is %q, not application/json", c.cfg.TokenURL, mt)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("token request to %s: answer is not a token response: %w", c.cfg.TokenURL, err)
	}
	switch {
	case tr.AccessToken == "":
		return "", 0, fmt.Errorf("token request to %s: answer has no access_token", c.cfg.TokenURL)
	case !strings.EqualFold(tr.TokenType, "bearer"):
		return "", 0, fmt.Errorf("token request to %s: token_type %q is not bearer", c.cfg.TokenURL, tr.TokenType)
	case tr.ExpiresIn < 0:
		return "", 0, fmt.Errorf("token request to %s: negative expires_in", c.cfg.TokenURL)
	}
	return tr.AccessToken, time.Duration(tr.ExpiresIn) * time.Second, nil
}

// maxDescription bounds how much of the endpoint's error_description an
// error repeats.
const maxDescription = 200

// oauthError is the RFC 6749 §5.2 error of a refused token request, for
// the error message.
func oauthError(body []byte) string {
	var e errorResponse
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	s := ": " + e.Error
	if d := e.Description; d != "" {
		if len(d) > maxDescription {
			d = strings.ToValidUTF8(d[:maxDescription], "") + "…"
		}
		s += " (" + d + ")"
	}
	return s
}
