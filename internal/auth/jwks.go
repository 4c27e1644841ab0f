package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is one trusted token issuer: tokens whose iss is URL are verified
// with its keys.
type Issuer struct {
	URL string
	// JWKSURI is where its keys are; empty: discovered from
	// {URL}/.well-known/openid-configuration (or smart-configuration).
	JWKSURI string
}

// CheckURL accepts an https URL, or an http one on a loopback host (a
// development identity provider): keys and tokens fetched in the clear
// from anywhere else could be swapped on the way.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL without a fragment", raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
	default:
		return fmt.Errorf("%q must be https (http only on a loopback host)", raw)
	}
	return nil
}

// IsLoopback reports whether host (no port) names this machine only:
// localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// keySource is the cached key set of one issuer.
type keySource struct {
	issuer Issuer
	fetch  *fetcher

	mu      sync.Mutex
	jwksURI string            // configured or discovered
	keys    []jose.JSONWebKey // the last set fetched
	loaded  time.Time         // when keys were fetched; zero: never
	tried   time.Time         // the last fetch attempt, successful or not
	lastErr error             // of the last attempt
}

// lookup returns the keys that may have signed a token with kid (every
// key when kid is empty). The set is fetched on first use, when older than
// maxAge, and when kid is unknown (key rotation) — never more often than
// once per refetch interval, so tokens with made-up kids cannot make the
// service hammer the issuer.
func (s *keySource) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.fetch.now()
	mayFetch := s.tried.IsZero() || now.Sub(s.tried) >= s.fetch.refetch
	if mayFetch && (s.loaded.IsZero() || now.Sub(s.loaded) >= s.fetch.maxAge) {
		s.refresh(ctx, now)
		mayFetch = false
	}
	found := matching(s.keys, kid)
	if len(found) == 0 && mayFetch {
		s.refresh(ctx, now)
		found = matching(s.keys, kid)
	}
	if len(found) == 0 && s.lastErr != nil {
		return nil, s.lastErr
	}
	return found, nil
}

// refresh fetches the key set; on failure the old set stays in use (an
// identity provider's outage should not log everyone out at once).
func (s *keySource) refresh(ctx context.Context, now time.Time) {
	s.tried = now
	keys, err := s.fetchKeys(ctx)
	s.lastErr = err
	if err == nil {
		s.keys, s.loaded = keys, now
	}
}

func (s *keySource) fetchKeys(ctx context.Context) ([]jose.JSONWebKey, error) {
	if s.jwksURI == "" {
		u, err := s.fetch.discover(ctx, s.issuer.URL)
		if err != nil {
			return nil, err
		}
		s.jwksURI = u
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := s.fetch.getJSON(ctx, s.jwksURI, &set); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		// A key of a type this service does not use (say, an encryption
		// key) is skipped, not a reason to distrust the whole set.
		if k.UnmarshalJSON(raw) != nil || !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func matching(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// fetcher reads issuer metadata and key sets, bounded in time and size.
type fetcher struct {
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	refetch  time.Duration
	maxAge   time.Duration
	now      func() time.Time
}

// errKeys marks a failure to get an issuer's keys: the service's problem
// (or the issuer's), not the client's.
var errKeys = errors.New("issuer keys unavailable")

// discover finds the jwks_uri in the issuer's OpenID Connect metadata, or
// else in its SMART configuration.
func (f *fetcher) discover(ctx context.Context, issuer string) (string, error) {
	base := strings.TrimSuffix(issuer, "/")
	var errs []error
	for _, doc := range []string{"/.well-known/openid-configuration", "/.well-known/smart-configuration"} {
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		err := f.getJSON(ctx, base+doc, &meta)
		switch {
		case err != nil:
		case meta.Issuer != "" && meta.Issuer != issuer:
			// OpenID Connect Discovery 4.3: metadata naming another
			// issuer is not this issuer's.
			err = fmt.Errorf("%w: %s names issuer %q", errKeys, base+doc, meta.Issuer)
		case meta.JWKSURI == "":
			err = fmt.Errorf("%w: %s has no jwks_uri", errKeys, base+doc)
		default:
			if err = CheckURL(meta.JWKSURI); err == nil {
				return meta.JWKSURI, nil
			}
			err = fmt.Errorf("%w: jwks_uri of %s: %v", errKeys, base+doc, err)
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// getJSON GETs u and decodes its JSON body, at most maxBytes of it.
func (f *fetcher) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errKeys, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GET %s: %v", errKeys, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: status %d", errKeys, u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return fmt.Errorf("%w: GET %s: %v", errKeys, u, err)
	}
	if int64(len(b)) > f.maxBytes {
		return fmt.Errorf("%w: GET %s: larger than %d bytes", errKeys, u, f.maxBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: GET %s: %v", errKeys, u, err)
	}
	return nil
}
