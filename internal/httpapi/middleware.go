package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
)

const (
	requestIDHeader = "X-Request-Id"
	fhirJSON        = "application/fhir+json; charset=utf-8"
)

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID takes the caller's request id when it is a plain token, or
// makes one, and returns it in the response.
func (a *api) requestID(c *gin.Context) {
	id := c.GetHeader(requestIDHeader)
	if !validRequestID.MatchString(id) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Writer.Header().Set(requestIDHeader, id)
	c.Next()
}

// observe logs and counts each request. Only the route template, the
// resource type and the outcome are recorded: ids and query strings can
// identify a patient.
func (a *api) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	d := time.Since(start)
	route := c.FullPath()
	interaction := a.interactions[c.Request.Method+" "+route]
	if interaction == "" {
		interaction = "other"
	}
	if route == "" {
		route = "unmatched"
	}
	typ := c.Param("type")
	if !fhir.IsResourceType(typ) {
		typ = ""
	}
	status := c.Writer.Status()
	a.Metrics.ObserveRequest(interaction, typ, c.Request.Method, route, status, d)
	a.Logger.InfoContext(c.Request.Context(), "request",
		"request_id", c.Writer.Header().Get(requestIDHeader),
		"method", c.Request.Method, "route", route, "interaction", interaction, "type", typ,
		"status", status, "duration_ms", float64(d.Microseconds())/1000)
}

// recover turns a panic into a 500 OperationOutcome. The panic value is
// logged without the request body.
func (a *api) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			a.fail(c, fault.Wrap(fmt.Errorf("panic: %v", p), "request"))
			c.Abort()
		}
	}()
	c.Next()
}

// anonymous is the principal of every request while authentication is off.
var anonymous = &auth.Principal{Anonymous: true}

// realm names the protection space in WWW-Authenticate challenges.
const realm = "kapfhir"

// authenticate puts the request's principal in its context, or answers 401
// (429 once the remote address has used its rate limit).
// The entries of a batch or transaction are served with the bundle's
// request context, so they act for the same principal.
func (a *api) authenticate(c *gin.Context) {
	if p := auth.FromContext(c.Request.Context()); p != nil || a.public[c.FullPath()] {
		c.Next()
		return
	}
	p := anonymous
	if a.Auth != nil {
		var err error
		if p, err = a.Auth.Authenticate(c.Request); err != nil {
			c.Abort()
			if fault.Is(err, fault.Unauthorized) {
				// Refused credentials count against the address, as no
				// credentials would: a flood of bad tokens is throttled too.
				if !a.admit(c, addressKey(c)) {
					return
				}
				c.Header("WWW-Authenticate", auth.Challenge(realm, err))
			}
			a.fail(c, err)
			return
		}
	}
	c.Request = c.Request.WithContext(auth.NewContext(c.Request.Context(), p))
	c.Next()
}

// disclose puts the disclosure scope of the request's principal in its
// context (package disclosure): Consents are then read once per patient
// per request. The entries of a batch keep the bundle's scope.
func (a *api) disclose(c *gin.Context) {
	ctx := c.Request.Context()
	if p := auth.FromContext(ctx); p != nil && disclosure.FromContext(ctx) == nil {
		c.Request = c.Request.WithContext(disclosure.NewContext(ctx, a.policy.Scope(disclosure.RecipientOf(p))))
	}
	c.Next()
}

// negotiate enforces JSON: XML responses are 406, request bodies that are
// not FHIR JSON are 415, and bodies over the limit are 413.
func (a *api) negotiate(c *gin.Context) {
	if err := a.checkFormat(c); err != nil {
		a.fail(c, err)
		c.Abort()
		return
	}
	c.Next()
}

func (a *api) checkFormat(c *gin.Context) error {
	if f, ok := c.GetQuery("_format"); ok {
		if !jsonFormat(f) {
			return fault.New(fault.NotAcceptable, "", "_format %q is not supported; this server speaks FHIR JSON only", f)
		}
	} else if accept := c.GetHeader("Accept"); accept != "" && !accepts(accept, jsonFormat) &&
		!(c.FullPath() == exportFileRoute && accepts(accept, ndjsonFormat)) {
		return fault.New(fault.NotAcceptable, "", "Accept %q names no format this server produces; it speaks application/fhir+json", accept)
	}
	switch {
	case strings.HasSuffix(c.FullPath(), "/_search"):
		// Search parameters come as a form; searchPost checks its type.
	case c.Request.Method == http.MethodPatch:
		// Two formats; patch.Parse picks one by Content-Type or answers 415.
	case c.FullPath() == "/fhir/$import":
		// NDJSON; importNDJSON checks it.
	case strings.HasPrefix(c.FullPath(), "/admin/"):
		// The admin API reads no request body.
	case c.Request.Method == http.MethodPost, c.Request.Method == http.MethodPut:
		mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
		if err != nil || !jsonFormat(mt) {
			return fault.New(fault.UnsupportedMediaType, "", "Content-Type %q is not supported; send application/fhir+json", c.GetHeader("Content-Type"))
		}
	}
	return nil
}

func jsonFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

// exportFileRoute serves NDJSON, which its Accept may name.
const exportFileRoute = "/fhir/_export/:job/:file"

// ndjsonFormat reports an NDJSON media type (of an export file or an
// import body).
func ndjsonFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case ndjson, "application/ndjson", "application/x-ndjson":
		return true
	}
	return false
}

// accepts reports whether an Accept header allows a media type that ok
// approves (or any).
func accepts(accept string, ok func(string) bool) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		if mt == "*/*" || mt == "application/*" || ok(mt) {
			return true
		}
	}
	return false
}

// body reads the request body up to the configured limit.
func (a *api) body(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(a.bodyReader(c))
	if err != nil {
		return nil, a.bodyError(err)
	}
	return b, nil
}

// bodyReader is the request body, limited to the configured size, for
// handlers that stream it.
func (a *api) bodyReader(c *gin.Context) io.Reader {
	return http.MaxBytesReader(c.Writer, c.Request.Body, a.MaxBodyBytes)
}

// bodyError is the answer to an error reading the body: a body over the
// limit is 413, any other reader failure 400; a fault (the content was
// wrong) stays as it is.
func (a *api) bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var fe *fault.Error
	switch {
	case errors.As(err, &tooBig):
		return fault.New(fault.TooLarge, "", "the body is larger than %d bytes", a.MaxBodyBytes)
	case errors.As(err, &fe):
		return err
	}
	return fault.New(fault.Invalid, "", "the body could not be read")
}
