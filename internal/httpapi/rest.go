package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/patch"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

func (a *api) capabilities(c *gin.Context) error {
	c.Data(http.StatusOK, fhirJSON, pretty(c, capabilityStatement(a.Registry, a.levels, a.Version, a.Started, a.SMART)))
	return nil
}

// resourceType returns the :type of the URL, which must be a supported type.
func resourceType(c *gin.Context) (string, error) {
	typ := c.Param("type")
	if !fhir.IsResourceType(typ) {
		return "", fault.New(fault.NotFound, "", "resource type %q is not supported", typ)
	}
	return typ, nil
}

// target returns :type and :id of the URL.
func target(c *gin.Context) (string, string, error) {
	typ, err := resourceType(c)
	if err != nil {
		return "", "", err
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return "", "", fault.New(fault.Invalid, "", "%q is not a valid resource id (1-64 of A-Z a-z 0-9 - .)", id)
	}
	return typ, id, nil
}

func (a *api) read(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	sub, err := search.ParseSubset(typ, c.Request.URL.Query(), preferLenient(c))
	if err != nil {
		return err
	}
	rec, err := a.Resources.Read(c.Request.Context(), typ, id)
	if err != nil {
		return err
	}
	if err := a.checkRecord(c, rec); err != nil {
		return err
	}
	if err := a.mayDisclose(c, rec); err != nil {
		return err
	}
	if notModified(c, rec) {
		return fault.New(fault.NotModified, "", "not modified")
	}
	if err := subset(sub, []*store.Record{rec}); err != nil {
		return err
	}
	return a.send(c, http.StatusOK, rec)
}

func (a *api) vread(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	vid, err := strconv.ParseInt(c.Param("vid"), 10, 64)
	if err != nil || vid < 1 {
		return fault.New(fault.NotFound, "", "%s/%s has no version %q", typ, id, c.Param("vid"))
	}
	sub, err := search.ParseSubset(typ, c.Request.URL.Query(), preferLenient(c))
	if err != nil {
		return err
	}
	rec, err := a.Resources.VRead(c.Request.Context(), typ, id, vid)
	if err != nil {
		return err
	}
	if err := a.checkRecord(c, rec); err != nil {
		return err
	}
	if err := a.mayDisclose(c, rec); err != nil {
		return err
	}
	if err := subset(sub, []*store.Record{rec}); err != nil {
		return err
	}
	return a.send(c, http.StatusOK, rec)
}

// mayDisclose refuses a stored version the request's principal may not
// see (package disclosure) with a 403 that says nothing of its content.
func (a *api) mayDisclose(c *gin.Context, rec *store.Record) error {
	ctx := c.Request.Context()
	return disclosure.FromContext(ctx).Check(ctx, rec.Type, rec.ID, rec.Raw)
}

// parse reads and validates the body as a resource of the URL's type.
func (a *api) parse(c *gin.Context, typ string) (*fhir.Resource, error) {
	b, err := a.body(c)
	if err != nil {
		return nil, err
	}
	res, err := fhir.ParseResource(b)
	if err != nil {
		return nil, err
	}
	if res.Type() != typ {
		return nil, fault.New(fault.Invalid, "resourceType", "the body is a %s, but the URL is for %s", res.Type(), typ)
	}
	if err := checkContent(c, a.Registry, res); err != nil {
		return nil, err
	}
	if res.Type() == "Subscription" {
		p, err := principal(c)
		if err != nil {
			return nil, err
		}
		if err := checkSubscription(p, res.Bytes()); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (a *api) create(c *gin.Context) error {
	typ, err := resourceType(c)
	if err != nil {
		return err
	}
	res, err := a.parse(c, typ)
	if err != nil {
		return err
	}
	var out *resource.Outcome
	if q := c.GetHeader("If-None-Exist"); q != "" {
		if err := needAlso(c, auth.Search, typ); err != nil {
			return err
		}
		crit, err := a.compartmentCriteria(c, typ, strings.TrimPrefix(q, typ+"?"))
		if err != nil {
			return err
		}
		out, err = a.Resources.ConditionalCreate(c.Request.Context(), res, crit)
		if err != nil {
			return err
		}
	} else if out, err = a.Resources.Create(c.Request.Context(), res); err != nil {
		return err
	}
	return a.written(c, out)
}

func (a *api) update(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	cur, err := a.writeTarget(c, typ, id, true)
	if err != nil {
		return err
	}
	return a.write(c, a.written, func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error) {
		res, err := a.parse(c, typ)
		if err != nil {
			return nil, err
		}
		if ifMatch, err = checkedVersion(cur, ifMatch); err != nil {
			return nil, err
		}
		return a.Resources.Update(ctx, typ, id, res, ifMatch)
	})
}

func (a *api) conditionalUpdate(c *gin.Context) error {
	typ, crit, err := a.criteria(c)
	if err != nil {
		return err
	}
	return a.write(c, a.written, func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error) {
		res, err := a.parse(c, typ)
		if err != nil {
			return nil, err
		}
		return a.Resources.ConditionalUpdate(ctx, res, crit, ifMatch)
	})
}

// patchBody reads the body as a patch in the format of its Content-Type.
func (a *api) patchBody(c *gin.Context) (fhir.Patch, error) {
	b, err := a.body(c)
	if err != nil {
		return nil, err
	}
	return patch.Parse(c.GetHeader("Content-Type"), b)
}

func (a *api) patchInstance(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	cur, err := a.writeTarget(c, typ, id, false)
	if err != nil {
		return err
	}
	return a.write(c, a.written, func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error) {
		p, err := a.patchBody(c)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			// A patient/ grant: the patched resource must stay in the
			// compartment, so it is patched here first.
			res, err := fhir.ApplyPatch([]byte(cur.Raw), p)
			if err != nil {
				return nil, err
			}
			if err := checkContent(c, a.Registry, res); err != nil {
				return nil, err
			}
		}
		if ifMatch, err = checkedVersion(cur, ifMatch); err != nil {
			return nil, err
		}
		return a.Resources.Patch(ctx, typ, id, p, ifMatch)
	})
}

func (a *api) conditionalPatch(c *gin.Context) error {
	_, crit, err := a.criteria(c)
	if err != nil {
		return err
	}
	return a.write(c, a.written, func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error) {
		p, err := a.patchBody(c)
		if err != nil {
			return nil, err
		}
		return a.Resources.ConditionalPatch(ctx, p, crit, ifMatch)
	})
}

func (a *api) delete(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	cur, err := a.writeTarget(c, typ, id, false)
	if err != nil {
		return err
	}
	return a.write(c, a.deleted, func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error) {
		ifMatch, err := checkedVersion(cur, ifMatch)
		if err != nil {
			return nil, err
		}
		return a.Resources.Delete(ctx, typ, id, ifMatch)
	})
}

func (a *api) conditionalDelete(c *gin.Context) error {
	_, crit, err := a.criteria(c)
	if err != nil {
		return err
	}
	out, err := a.Resources.ConditionalDelete(c.Request.Context(), crit)
	if err != nil {
		return err
	}
	return a.deleted(c, out)
}

// write is what the update, patch and delete handlers share: the If-Match
// precondition (checked before the body is read), the write, the response.
func (a *api) write(c *gin.Context, respond func(*gin.Context, *resource.Outcome) error, do func(ctx context.Context, ifMatch *int64) (*resource.Outcome, error)) error {
	ifMatch, err := parseIfMatch(c)
	if err != nil {
		return err
	}
	out, err := do(c.Request.Context(), ifMatch)
	if err != nil {
		return err
	}
	return respond(c, out)
}

func (a *api) deleted(c *gin.Context, out *resource.Outcome) error {
	c.Status(deletedReply(c.Writer.Header(), out))
	return nil
}

// deletedReply sets the headers of a delete's response and returns its
// status (there is no body).
func deletedReply(h http.Header, out *resource.Outcome) int {
	if out.Record != nil && !out.NoOp {
		setVersionHeaders(h, out.Record)
	}
	return http.StatusNoContent
}

// criteria parses the query of a conditional update, patch or delete.
func (a *api) criteria(c *gin.Context) (string, *search.Request, error) {
	typ, err := resourceType(c)
	if err != nil {
		return "", nil, err
	}
	if c.Request.URL.RawQuery == "" {
		return "", nil, fault.New(fault.Invalid, "", "a conditional %s on %s needs search criteria in the URL", strings.ToLower(c.Request.Method), typ)
	}
	crit, err := a.compartmentCriteria(c, typ, stripControl(c.Request.URL.RawQuery))
	return typ, crit, err
}

// compartmentCriteria parses the criteria of a conditional write; under a
// patient/ grant they match only in the patient's compartment, so that a
// match elsewhere is neither changed nor revealed.
func (a *api) compartmentCriteria(c *gin.Context, typ, query string) (*search.Request, error) {
	crit, err := search.ParseCriteria(a.Registry, typ, query)
	if err != nil {
		return nil, err
	}
	if patient, ok := compartmentPatient(c); ok {
		if err := restrictToCompartment(crit, patient); err != nil {
			return nil, err
		}
	}
	return crit, nil
}

// checkedVersion ties a write to cur, the version writeTarget checked
// (nil: none was), so that a version written meanwhile is not changed
// unchecked: the write's If-Match becomes cur's version, and a different
// If-Match fails as it would against cur.
func checkedVersion(cur *store.Record, ifMatch *int64) (*int64, error) {
	switch {
	case cur == nil:
		return ifMatch, nil
	case ifMatch != nil && *ifMatch != cur.VersionID:
		return nil, fault.New(fault.PreconditionFailed, "", "If-Match W/\"%d\" is not the current version", *ifMatch)
	}
	return &cur.VersionID, nil
}

// writeTarget checks the resource an update, patch or delete by id
// changes. An update that creates needs c beside u (mayCreate). Under a
// patient/ grant the current version must be in the compartment; it is
// returned then (nil when there is none, or no patient/ grant).
func (a *api) writeTarget(c *gin.Context, typ, id string, mayCreate bool) (*store.Record, error) {
	p, err := principal(c)
	if err != nil {
		return nil, err
	}
	_, restricted := compartmentPatient(c)
	needCreate := mayCreate && p.Grant(auth.Create, typ) == auth.None
	if !restricted && !needCreate {
		return nil, nil
	}
	rec, err := a.Resources.Read(c.Request.Context(), typ, id)
	switch {
	case fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone):
		if needCreate {
			return nil, forbidden(auth.Missing(auth.None, auth.Create, typ) + " to create")
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	if err := a.checkRecord(c, rec); err != nil {
		return nil, err
	}
	if !restricted {
		return nil, nil
	}
	return rec, nil
}

// stripControl removes the parameters that steer the response, not the match.
func stripControl(q string) string {
	var keep []string
	for _, p := range strings.Split(q, "&") {
		if !strings.HasPrefix(p, "_format=") && !strings.HasPrefix(p, "_pretty=") {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "&")
}

// parseIfMatch reads If-Match: W/"3" or "3".
func parseIfMatch(c *gin.Context) (*int64, error) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return nil, nil
	}
	v, ok := parseETag(h)
	if !ok {
		return nil, fault.New(fault.Invalid, "", "If-Match %q is not a version ETag such as W/\"3\"", h)
	}
	return &v, nil
}

func parseETag(h string) (int64, bool) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "W/")
	if len(h) < 3 || h[0] != '"' || h[len(h)-1] != '"' {
		return 0, false
	}
	v, err := strconv.ParseInt(h[1:len(h)-1], 10, 64)
	return v, err == nil && v > 0
}

// notModified evaluates If-None-Match and, failing that, If-Modified-Since.
func notModified(c *gin.Context, rec *store.Record) bool {
	if inm := c.GetHeader("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if strings.TrimSpace(tag) == "*" {
				return true
			}
			if v, ok := parseETag(tag); ok && v == rec.VersionID {
				return true
			}
		}
		return false
	}
	if ims := c.GetHeader("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil {
			return !rec.LastUpdated.Truncate(time.Second).After(t)
		}
	}
	return false
}

func setVersionHeaders(h http.Header, rec *store.Record) {
	h.Set("ETag", `W/"`+strconv.FormatInt(rec.VersionID, 10)+`"`)
	h.Set("Last-Modified", rec.LastUpdated.UTC().Format(http.TimeFormat))
}

// send writes a stored version as the response body.
func (a *api) send(c *gin.Context, status int, rec *store.Record) error {
	setVersionHeaders(c.Writer.Header(), rec)
	c.Data(status, fhirJSON, pretty(c, []byte(rec.Raw)))
	return nil
}

// written answers a create or update, honouring Prefer: return=.
func (a *api) written(c *gin.Context, out *resource.Outcome) error {
	prefer := preferReturn(c)
	if prefer == "representation" && !out.Created && a.mayDisclose(c, out.Record) != nil {
		// An update or patch of data the principal may not read answers
		// without the resource, as return=OperationOutcome would.
		prefer = "OperationOutcome"
	}
	status, body := a.writtenReply(c.Writer.Header(), a.base(c), prefer, out)
	if body == nil {
		c.Status(status)
		return nil
	}
	c.Data(status, fhirJSON, pretty(c, body))
	return nil
}

// writtenReply sets the headers of a create's or update's response and
// returns its status and body (nil: none) for prefer, the Prefer return=
// value; base is the FHIR base URL of Location.
func (a *api) writtenReply(h http.Header, base, prefer string, out *resource.Outcome) (int, []byte) {
	rec := out.Record
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
		h.Set("Location", base+"/"+rec.Type+"/"+rec.ID+"/_history/"+strconv.FormatInt(rec.VersionID, 10))
	}
	setVersionHeaders(h, rec)
	switch prefer {
	case "minimal":
		return status, nil
	case "OperationOutcome":
		msg := "updated"
		switch {
		case out.Created:
			msg = "created"
		case out.NoOp:
			msg = "unchanged: no new version"
		}
		return status, fault.OutcomeOf([]fault.Issue{{Severity: "information", Code: "informational",
			Diagnostics: rec.Type + "/" + rec.ID + " version " + strconv.FormatInt(rec.VersionID, 10) + " " + msg}})
	}
	return status, []byte(rec.Raw)
}

func preferReturn(c *gin.Context) string {
	for _, pref := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.Split(pref, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "return="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	return "representation"
}

// base is the FHIR base URL clients use.
func (a *api) base(c *gin.Context) string {
	if a.BaseURL != "" {
		return strings.TrimSuffix(a.BaseURL, "/")
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host + "/fhir"
}

// pretty indents b when the client asked for _pretty=true. Indenting keeps
// number lexemes as they are.
func pretty(c *gin.Context, b []byte) []byte {
	if c.Query("_pretty") != "true" {
		return b
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return b
	}
	return out.Bytes()
}
