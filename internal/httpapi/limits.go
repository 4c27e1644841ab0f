package httpapi

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// Hardening of every response and the limits of every request
// (docs/operations.md, "Limits"; docs/architecture.md, "Middleware").

// secure sets the security headers of every response. The API serves
// JSON only, so nothing may be framed, run as a script or sniffed as
// HTML, no Referer leaks a URL (ids are PHI), and nothing is cached.
func (a *api) secure(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if a.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.Next()
}

// The CORS answers for the configured origins (SMART apps in a browser
// send their token in Authorization, so no credentials mode is needed).
const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, Prefer, X-Request-Id"
	corsExpose  = "ETag, Location, Content-Location, Last-Modified, X-Request-Id, Retry-After, WWW-Authenticate"
	corsMaxAge  = "600"
)

// cors answers the preflight of an allowed origin (204, before routing and
// without credentials: browsers send none) and marks the responses to it
// as shareable. Any other origin gets no CORS header, and its preflight
// falls through to the router (405).
func (a *api) cors(c *gin.Context) {
	if len(a.CORSOrigins) == 0 {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Add("Vary", "Origin")
	origin := c.GetHeader("Origin")
	if origin == "" || !slices.Contains(a.CORSOrigins, origin) {
		c.Next()
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	h.Set("Access-Control-Expose-Headers", corsExpose)
	c.Next()
}

// untimed are the routes whose work may outlast the request timeout: a
// bulk import's body and an export file stream for as long as they are.
var untimed = map[string]bool{"/fhir/$import": true, exportFileRoute: true}

// limit refuses a query string over the limit (414) and gives the
// request's work its deadline. Past it the store calls fail, which the
// client sees as a 503 (transient): it may try again.
func (a *api) limit(c *gin.Context) {
	if a.MaxQueryBytes > 0 && len(c.Request.URL.RawQuery) > a.MaxQueryBytes {
		a.fail(c, fault.New(fault.URITooLong, "", "the query string is longer than %d bytes; POST a search as a form instead", a.MaxQueryBytes))
		c.Abort()
		return
	}
	if a.RequestTimeout > 0 && !untimed[c.FullPath()] {
		ctx, cancel := context.WithTimeout(c.Request.Context(), a.RequestTimeout)
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()
}

// checkSearchParams refuses a search with more parameter occurrences than
// the limit: each becomes a store condition.
func (a *api) checkSearchParams(params map[string][]string) error {
	if a.MaxSearchParams <= 0 {
		return nil
	}
	n := 0
	for _, vs := range params {
		n += len(vs)
	}
	if n > a.MaxSearchParams {
		return fault.New(fault.Invalid, "", "the search has %d parameters; at most %d are allowed", n, a.MaxSearchParams).WithCode("too-costly")
	}
	return nil
}

// throttledKey marks a request context the rate limit has counted: the
// entries of a batch or transaction, served with the bundle's context,
// are part of the one request.
type throttledKey struct{}

// throttle applies the per-client rate limit (after authenticate): 429
// with Retry-After once the client's bucket is empty.
func (a *api) throttle(c *gin.Context) {
	ctx := c.Request.Context()
	if a.limiter == nil || ctx.Value(throttledKey{}) != nil {
		c.Next()
		return
	}
	c.Request = c.Request.WithContext(context.WithValue(ctx, throttledKey{}, true))
	if !a.admit(c, clientKey(c)) {
		c.Abort()
		return
	}
	c.Next()
}

// admit takes a token from key's bucket; without one it answers 429 with
// Retry-After and reports false. Without a rate limit it admits all.
func (a *api) admit(c *gin.Context, key string) bool {
	if a.limiter == nil {
		return true
	}
	wait, ok := a.limiter.allow(key)
	if !ok {
		a.Metrics.Throttled()
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		a.fail(c, fault.New(fault.TooManyRequests, "", "too many requests from this client; retry after the time in Retry-After"))
	}
	return ok
}

// clientKey names the client a rate limit bucket belongs to: the
// authenticated client (issuer and client id), else the remote address.
func clientKey(c *gin.Context) string {
	if p := auth.FromContext(c.Request.Context()); p != nil && !p.Anonymous {
		id := p.ClientID
		if id == "" {
			id = "sub:" + p.Subject
		}
		return "client\x00" + p.Issuer + "\x00" + id
	}
	return addressKey(c)
}

// addressKey names the bucket of the remote address: unauthenticated
// clients, and the requests whose credentials were refused.
func addressKey(c *gin.Context) string {
	return "ip\x00" + c.ClientIP()
}

// maxBuckets bounds the limiter's memory: a new client at the bound
// pushes out an arbitrary one (which starts afresh when it comes back: a
// little more lenient, never unbounded).
const maxBuckets = 100_000

// limiter is a token bucket per client. A bucket that has refilled is the
// same as a new one, so dropping it loses nothing: sweeps drop those.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}, lastSweep: now()}
}

// allow takes a token from key's bucket; without one it reports how long
// until there is.
func (l *limiter) allow(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) >= l.refill() {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		for k := range l.buckets { // at the bound: one goes, at random
			if len(l.buckets) < maxBuckets {
				break
			}
			delete(l.buckets, k)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
}

// refill is how long an empty bucket takes to fill (at least a second).
func (l *limiter) refill() time.Duration {
	return max(time.Second, time.Duration(l.burst/l.rate*float64(time.Second)))
}

// sweep drops the full buckets. It runs at most once per refill time, so
// its cost is spread over the requests in between.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// clients is the number of buckets held, for tests.
func (l *limiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
