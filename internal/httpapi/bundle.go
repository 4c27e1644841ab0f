package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/patch"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// POST /fhir: a batch or transaction Bundle (see docs/fhir-behaviour.md).
// Entries run in the spec's order: DELETE, POST, PUT/PATCH, GET/HEAD.
// The body is decoded as it is read; each entry's resource is held as
// compact JSON and parsed only while its op is resolved and while its
// record is built (docs/architecture.md). A transaction's writes are
// prepared in full, then committed as one store transaction; a batch
// commits its plain creates, updates and deletes in groups the same way;
// the other entries (reads, conditional writes, patches of a batch) are
// served by dispatching the entry as a request through the router.

// entry is one parsed entry: its place, its request and its resource.
type entry struct {
	index    int
	expr     string // Bundle.entry[i]
	fullURL  string
	method   string
	path     string // the URL path below the base: Patient, Patient/1
	query    string // the raw query, criteria of a conditional write
	req      *fhir.BundleRequest
	resource *fhir.Compact
	op       *resource.Op // a transaction's write
	resp     []byte       // the response entry, rendered
	// patchType and patchBody are a PATCH entry's patch, as a PATCH
	// request would carry it.
	patchType string
	patchBody []byte
}

// methodRank is the processing order of the spec's batch/transaction rules.
var methodRank = map[string]int{"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}

func (a *api) bundleInteraction(c *gin.Context) error {
	b, err := fhir.DecodeBundle(a.bodyReader(c), fhir.BundleOptions{ConditionalReferences: true, MaxEntries: a.MaxBundleEntries})
	if err != nil {
		return a.bodyError(err)
	}
	typ := b.Type
	var entries []*entry
	switch typ {
	case "transaction":
		if entries, err = a.transaction(c, b); err != nil {
			return err
		}
	case "batch":
		c.Set(auditInteraction, "batch")
		entries = a.batch(c, b)
	default:
		return fault.New(fault.Invalid, "Bundle.type", "POST to the base takes a Bundle of type batch or transaction, not %q", typ)
	}
	out := bundle(typ+"-response", -1, nil, len(entries), func(buf *bytes.Buffer, i int) {
		buf.Write(entries[i].resp)
	})
	c.Data(http.StatusOK, fhirJSON, pretty(c, out))
	return nil
}

// parseEntries parses each entry of b; err[i] is entry i's problem. The
// entries take over the resources: b is left without them, so that each
// compact resource has one holder, which lets it go once it is written.
func (a *api) parseEntries(c *gin.Context, b *fhir.Bundle) ([]*entry, []error) {
	entries, errs := make([]*entry, len(b.Entries)), make([]error, len(b.Entries))
	for i := range b.Entries {
		entries[i], errs[i] = a.parseEntry(c, i, &b.Entries[i])
	}
	b.Entries = nil
	return entries, errs
}

// parseEntry checks an entry's request and splits its URL.
func (a *api) parseEntry(c *gin.Context, i int, be *fhir.BundleEntry) (*entry, error) {
	e := &entry{index: i, expr: "Bundle.entry[" + strconv.Itoa(i) + "]", fullURL: be.FullURL, req: be.Request, resource: be.Resource}
	if be.Err != nil {
		return e, be.Err
	}
	if be.Request == nil {
		return e, fault.New(fault.Invalid, e.expr+".request", "the entry has no request")
	}
	e.method = be.Request.Method
	if _, ok := methodRank[e.method]; !ok {
		return e, fault.New(fault.Invalid, e.expr+".request.method", "method %q is not supported", e.method)
	}
	raw := strings.TrimPrefix(be.Request.URL, a.base(c)+"/")
	u, err := url.Parse(raw)
	if err != nil || u.IsAbs() || u.Host != "" || strings.HasPrefix(u.Path, "/") || u.Path == "" {
		return e, fault.New(fault.Invalid, e.expr+".request.url", "%q is not a URL relative to this server's base", be.Request.URL)
	}
	e.path, e.query = u.Path, u.RawQuery
	typ, id, _ := strings.Cut(e.path, "/")
	if e.method == "GET" || e.method == "HEAD" {
		return e, nil
	}
	if !fhir.IsResourceType(typ) {
		return e, fault.New(fault.Invalid, e.expr+".request.url", "%q does not name a resource type", typ)
	}
	if e.method != "DELETE" {
		if e.resource == nil {
			return e, fault.New(fault.Invalid, e.expr+".resource", "a %s entry needs a resource", e.method)
		}
		if e.method == "PATCH" {
			if err := e.readPatch(); err != nil {
				return e, err
			}
		} else if e.resource.Type() != typ {
			return e, fault.New(fault.Invalid, e.expr+".resource.resourceType", "the resource is a %s, but the URL is for %s", e.resource.Type(), typ)
		}
	}
	switch {
	case e.method == "POST" && (id != "" || e.query != ""):
		return e, fault.New(fault.Invalid, e.expr+".request.url", "a create names the type only; use ifNoneExist for a conditional create")
	case e.method != "POST" && id == "" && e.query == "":
		return e, fault.New(fault.Invalid, e.expr+".request.url", "%s needs an id or search criteria", e.method)
	case id != "" && (strings.Contains(id, "/") || !fhir.ValidID(id)):
		return e, fault.New(fault.Invalid, e.expr+".request.url", "%q is not Type/id", e.path)
	}
	return e, nil
}

// readPatch takes a PATCH entry's patch from its resource: a Binary with
// the patch document (JSON Patch: contentType application/json-patch+json,
// base64 data), or a Parameters resource (FHIRPath Patch).
func (e *entry) readPatch() error {
	switch e.resource.Type() {
	case "Parameters":
		e.patchType, e.patchBody = patch.FHIRJSON, e.resource.Bytes()
		return nil
	case "Binary":
		var bin struct {
			ContentType string `json:"contentType"`
			Data        string `json:"data"`
		}
		if err := json.Unmarshal(e.resource.Bytes(), &bin); err != nil {
			return fault.New(fault.Invalid, e.expr+".resource", "the Binary cannot be read: %v", err)
		}
		data, err := base64.StdEncoding.DecodeString(bin.Data)
		if err != nil {
			return fault.New(fault.Invalid, e.expr+".resource.data", "the Binary data is not base64")
		}
		e.patchType, e.patchBody = bin.ContentType, data
		return nil
	}
	return fault.New(fault.Invalid, e.expr+".resource", "a PATCH entry holds a Binary (JSON Patch) or a Parameters resource (FHIRPath Patch), not a %s", e.resource.Type())
}

// order returns the entries in processing order (stable within a method).
func order(entries []*entry) []*entry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(x, y *entry) int { return methodRank[x.method] - methodRank[y.method] })
	return sorted
}

// transaction prepares every write, commits them at once, then serves the
// reads. Any failure fails the whole bundle with an error naming the entry.
func (a *api) transaction(c *gin.Context, b *fhir.Bundle) ([]*entry, error) {
	ctx := c.Request.Context()
	entries, errs := a.parseEntries(c, b)
	for i, err := range errs {
		if err != nil {
			return nil, locate(err, entries[i].expr)
		}
	}
	if err := transactionScopes(c, entries); err != nil {
		return nil, err
	}
	sorted := order(entries)
	refs := &resolver{a: a, ctx: ctx, ids: map[string]string{}, cache: map[string]string{}}
	var ops []*resource.Op
	var writes, creates []*entry
	// Conditional creates hold guards from Resolve until the commit; a
	// transaction that fails gives them back (a committed one keeps them).
	defer func() { a.Resources.Release(ctx, ops) }()
	fullURLs := map[string]bool{}
	for _, e := range sorted {
		if e.method == "GET" || e.method == "HEAD" {
			continue
		}
		op, err := a.opOf(e)
		if err != nil {
			return nil, locate(err, e.expr)
		}
		e.resource, e.patchBody = nil, nil // op holds what is written now
		if e.fullURL != "" && e.method != "DELETE" {
			if fullURLs[e.fullURL] {
				return nil, fault.New(fault.Invalid, e.expr+".fullUrl", "fullUrl %q appears twice", e.fullURL)
			}
			fullURLs[e.fullURL] = true
		}
		e.op = op
		ops = append(ops, op)
		writes = append(writes, e)
		if op.IsConditionalCreate() {
			// Resolved together below, so that their guards are claimed
			// in criteria order.
			creates = append(creates, e)
			continue
		}
		// The other entries are resolved one at a time, so that only one
		// parsed resource is held at once.
		if err := a.resolve(ctx, []*entry{e}, refs); err != nil {
			return nil, err
		}
	}
	if err := a.resolve(ctx, creates, refs); err != nil {
		return nil, err
	}
	for _, e := range writes {
		if e.fullURL != "" && e.method != "DELETE" {
			id := e.op.ID
			if e.op.Outcome != nil && e.op.Outcome.Record != nil {
				id = e.op.Outcome.Record.ID // a conditional create that matched
			}
			refs.ids[e.fullURL] = e.op.Type + "/" + id
		}
	}
	refs.writes = writes
	if err := a.Resources.Apply(ctx, ops); err != nil {
		return nil, opFailure(err, writes)
	}
	for _, e := range writes {
		e.resp = a.writeResponse(c, e.op)
		a.auditCommitted(c, e.method, e.op.Outcome)
	}
	for _, e := range sorted {
		if e.method == "GET" || e.method == "HEAD" {
			e.resp = a.dispatch(c, e)
		}
	}
	return entries, nil
}

// resolve settles the targets of the entries' ops (Service.Resolve), then
// holds each op's resource compact until Apply loads it to build its
// record; the references are rewritten by refs then, when every entry's
// target is known. refs is nil for a batch, whose references stay.
func (a *api) resolve(ctx context.Context, es []*entry, refs *resolver) error {
	ops := make([]*resource.Op, len(es))
	for i, e := range es {
		ops[i] = e.op
	}
	if err := a.Resources.Resolve(ctx, ops); err != nil {
		return opFailure(err, es)
	}
	for _, e := range es {
		op, expr := e.op, e.expr
		if op.Resource != nil && op.Outcome == nil {
			held := op.Resource.Compact()
			op.Load = func() (*fhir.Resource, error) {
				res, err := held.Resource()
				if err == nil && refs != nil {
					err = res.RewriteReferences(func(path, ref string) (string, error) {
						return refs.resolve(expr+".resource."+path, ref)
					})
				}
				return res, err
			}
		}
		op.Resource = nil
	}
	return nil
}

// opFailure names the entry of an *resource.OpError.
func opFailure(err error, writes []*entry) error {
	if oe, ok := err.(*resource.OpError); ok {
		return locate(oe.Err, writes[oe.Op].expr)
	}
	return err
}

// opOf turns a write entry into an op; a resource to write is parsed.
func (a *api) opOf(e *entry) (*resource.Op, error) {
	typ, id, _ := strings.Cut(e.path, "/")
	op := &resource.Op{Method: e.method, Type: typ, ID: id}
	switch e.method {
	case "PATCH":
		p, err := patch.Parse(e.patchType, e.patchBody)
		if err != nil {
			return nil, at(err, e.expr+".resource")
		}
		op.Patch = p
	case "POST", "PUT":
		res, err := e.resource.Resource()
		if err != nil {
			return nil, err
		}
		op.Resource = res
	}
	if e.req.IfMatch != "" {
		v, ok := parseETag(e.req.IfMatch)
		if !ok {
			return nil, fault.New(fault.Invalid, e.expr+".request.ifMatch", "%q is not a version ETag such as W/\"3\"", e.req.IfMatch)
		}
		op.IfMatch = &v
	}
	criteria, where := e.query, ".request.url"
	if e.method == "POST" && e.req.IfNoneExist != "" {
		criteria, where = strings.TrimPrefix(e.req.IfNoneExist, typ+"?"), ".request.ifNoneExist"
	}
	if criteria != "" {
		crit, err := search.ParseCriteria(a.Registry, typ, criteria)
		if err != nil {
			return nil, at(err, e.expr+where)
		}
		op.Criteria = crit
	}
	return op, nil
}

// resolver rewrites the references of a transaction's resources: fullUrls
// of its entries (urn:uuid:, urn:oid:, absolute URLs) to their Type/id,
// conditional references to their one match (an entry of the bundle with
// the same conditional criteria, else the store).
type resolver struct {
	a      *api
	ctx    context.Context
	ids    map[string]string
	writes []*entry
	cache  map[string]string
}

func (r *resolver) resolve(path, ref string) (string, error) {
	if id, ok := r.ids[ref]; ok {
		return id, nil
	}
	if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
		return "", fault.New(fault.Invalid, path, "%s is not the fullUrl of an entry of the transaction", ref)
	}
	typ, query, ok := fhir.ConditionalReference(ref)
	if !ok {
		return ref, nil
	}
	if id, ok := r.cache[ref]; ok {
		return id, nil
	}
	crit, err := search.ParseCriteria(r.a.Registry, typ, query)
	if err != nil {
		return "", at(err, path)
	}
	for _, e := range r.writes {
		if e.op.Criteria != nil && e.op.Type == typ && e.op.Criteria.Canonical == crit.Canonical && e.method != "DELETE" {
			id := e.op.ID
			if e.op.Outcome != nil && e.op.Outcome.Record != nil {
				id = e.op.Outcome.Record.ID
			}
			r.cache[ref] = typ + "/" + id
			return typ + "/" + id, nil
		}
	}
	m, err := r.a.Resources.Match(r.ctx, crit)
	switch {
	case err != nil:
		return "", err
	case len(m) == 0:
		return "", fault.New(fault.Invalid, path, "the conditional reference %s matches no resource", ref)
	case len(m) > 1:
		return "", fault.New(fault.PreconditionFailed, path, "the conditional reference %s matches more than one resource", ref)
	}
	r.cache[ref] = typ + "/" + m[0].ID
	return r.cache[ref], nil
}

// writeResponse renders the response entry of a transaction's write.
func (a *api) writeResponse(c *gin.Context, op *resource.Op) []byte {
	out := op.Outcome
	status := "200 OK"
	switch {
	case op.Method == "DELETE":
		status = "204 No Content"
	case out.Created && !out.NoOp:
		status = "201 Created"
	}
	var b bytes.Buffer
	rec := out.Record
	if rec != nil && !rec.Deleted && preferReturn(c) == "representation" && c.GetHeader("Prefer") != "" {
		b.WriteString(`{"resource":`)
		b.WriteString(rec.Raw)
		b.WriteString(`,"response":{"status":`)
	} else {
		b.WriteString(`{"response":{"status":`)
	}
	writeJSON(&b, status)
	if rec != nil {
		b.WriteString(`,"location":`)
		writeJSON(&b, rec.Type+"/"+rec.ID+"/_history/"+strconv.FormatInt(rec.VersionID, 10))
		versionFields(&b, rec)
	}
	b.WriteString("}}")
	return b.Bytes()
}

func versionFields(b *bytes.Buffer, rec *store.Record) {
	b.WriteString(`,"etag":`)
	writeJSON(b, `W/"`+strconv.FormatInt(rec.VersionID, 10)+`"`)
	b.WriteString(`,"lastModified":`)
	writeJSON(b, rec.LastUpdated.UTC().Format(fhir.InstantLayout))
}

// batch runs each entry as its own interaction, in processing order; a
// failing entry gets its OperationOutcome and the others go on. Plain
// creates, updates and deletes are committed in groups (commitGroup),
// with the response each would have got alone.
func (a *api) batch(c *gin.Context, b *fhir.Bundle) []*entry {
	entries, errs := a.parseEntries(c, b)
	for i, e := range entries {
		err := errs[i]
		if err == nil && e.resource != nil {
			err = noConditionalReferences(e)
		}
		if err != nil {
			e.resp = errorEntry(locate(err, e.expr))
		}
	}
	var group []*entry
	written := map[string]bool{} // Type/id of the group's updates and deletes
	flush := func() {
		a.commitGroup(c, group)
		group = nil
		clear(written)
	}
	for _, e := range order(entries) {
		switch {
		case e.resp != nil:
		case plainWrite(e) && entryGranted(c, e):
			// Two versions of one resource: one after the other.
			if len(group) == groupSize || e.method != "POST" && written[e.path] {
				flush()
			}
			if e.method != "POST" {
				written[e.path] = true
			}
			group = append(group, e)
		default:
			flush()
			e.resp = a.dispatch(c, e)
		}
	}
	flush()
	return entries
}

// noConditionalReferences rejects a batch entry's conditional references:
// resolving them is a transaction's business.
func noConditionalReferences(e *entry) error {
	res, err := e.resource.Resource()
	if err != nil {
		return err
	}
	return res.RewriteReferences(func(path, ref string) (string, error) {
		if _, _, ok := fhir.ConditionalReference(ref); ok {
			return "", fault.New(fault.Invalid, e.expr+".resource."+path, "conditional references are resolved in transactions only")
		}
		return ref, nil
	})
}

// entryScope is the permission on a resource type an entry needs: for a
// write, all it may need (a PUT may create); for a read or search, r or s
// on the type its URL starts with (the router checks the rest when the
// entry is dispatched). typ is "" for a GET of no type (system search).
func entryScope(e *entry) (auth.Perm, string) {
	typ, id, _ := strings.Cut(e.path, "/")
	if !fhir.IsResourceType(typ) {
		return 0, ""
	}
	var perm auth.Perm
	switch e.method {
	case "GET", "HEAD":
		if id == "" {
			return auth.Search, typ
		}
		return auth.Read, typ
	case "POST":
		perm = auth.Create
		if e.req.IfNoneExist != "" {
			perm |= auth.Search
		}
	case "PUT":
		perm = auth.Update | auth.Create
	case "DELETE":
		perm = auth.Delete
	case "PATCH":
		perm = auth.Update
	}
	if e.query != "" {
		perm |= auth.Search
	}
	return perm, typ
}

// transactionScopes checks every entry of a transaction before anything is
// written: one the scopes do not grant fails the whole transaction (403,
// naming the entry). Writes need a user/ or system/ grant: a transaction
// commits its writes without the per-request compartment checks that a
// patient/ grant needs.
func transactionScopes(c *gin.Context, entries []*entry) error {
	p, err := principal(c)
	if err != nil || p.Anonymous {
		return err
	}
	for _, e := range entries {
		perm, typ := entryScope(e)
		if typ == "" {
			continue // dispatched through the router, which checks it
		}
		switch g := p.Grant(perm, typ); {
		case g == auth.None:
			return locate(forbidden(auth.Missing(auth.None, p.Lacking(perm, typ), typ)), e.expr)
		case g == auth.PatientContext && e.method != "GET" && e.method != "HEAD":
			return locate(fault.New(fault.Forbidden, "", "patient/ scopes do not write through a transaction; it needs user/ or system/ %s.%s", typ, perm), e.expr)
		case e.resource != nil && e.resource.Type() == "Subscription":
			if err := checkSubscription(p, e.resource.Bytes()); err != nil {
				return locate(err, e.expr)
			}
		}
	}
	return nil
}

// entryGranted reports whether a batch's plain write may be committed in
// a group: its scopes grant it beyond the patient compartment. Any other
// is dispatched through the router alone, which answers it (403 when it is
// not granted, the compartment checks under a patient/ grant).
func entryGranted(c *gin.Context, e *entry) bool {
	p, err := principal(c)
	if err != nil {
		return false
	}
	perm, typ := entryScope(e)
	// A Subscription's criteria are checked on the single interaction.
	return typ != "" && typ != "Subscription" && p.Grant(perm, typ) >= auth.UserContext
}

// plainWrite reports whether a batch entry is a create, update or delete
// without conditions on the current state other than If-Match: one that a
// group commit gives exactly the outcome of the single interaction.
func plainWrite(e *entry) bool {
	switch e.method {
	case "POST":
		return e.req.IfNoneExist == ""
	case "PUT", "DELETE":
		return e.query == ""
	}
	return false
}

// groupSize bounds the entries of a batch committed together: their
// versions are held until the commit, and a group that fails is retried.
const groupSize = 100

// groupAttempts bounds how often a batch group is committed again without
// the entries that failed it before its entries are served one by one.
const groupAttempts = 3

// commitGroup writes a batch's plain writes as one store transaction (a
// few store commands instead of several per entry). An entry that fails
// on its own (a stale If-Match, an update whose body id does not match)
// is served alone through the router, which answers it as before, and the
// group is committed again without it; when the commit fails as a whole,
// or keeps failing, the entries are served one by one.
func (a *api) commitGroup(c *gin.Context, group []*entry) {
	ctx := c.Request.Context()
	for attempt := 0; len(group) > 0; attempt++ {
		var ops []*resource.Op
		var ready []*entry
		for _, e := range group {
			op, err := a.opOf(e)
			if err == nil {
				e.op = op
				err = a.resolve(ctx, []*entry{e}, nil)
			}
			if err != nil {
				e.resp = a.dispatch(c, e)
				continue
			}
			ops, ready = append(ops, op), append(ready, e)
		}
		err := a.Resources.Apply(ctx, ops)
		if err == nil {
			for i, e := range ready {
				e.resp = a.groupResponse(c, e, ops[i].Outcome)
				a.auditCommitted(c, e.method, ops[i].Outcome)
				e.resource = nil
			}
			return
		}
		var oe *resource.OpError
		if !errors.As(err, &oe) || attempt+1 == groupAttempts {
			for _, e := range ready {
				e.resp = a.dispatch(c, e)
			}
			return
		}
		ready[oe.Op].resp = a.dispatch(c, ready[oe.Op])
		group = slices.Delete(ready, oe.Op, oe.Op+1)
	}
}

// groupResponse renders the response entry of a write committed in a
// group as dispatching it would have: the same status, headers and body.
func (a *api) groupResponse(c *gin.Context, e *entry, out *resource.Outcome) []byte {
	rw := &recorder{header: http.Header{}}
	if e.method == "DELETE" {
		rw.status = deletedReply(rw.header, out)
	} else {
		var body []byte
		rw.status, body = a.writtenReply(rw.header, a.base(c), preferReturn(c), out)
		rw.body.Write(body)
	}
	return a.responseEntry(c, e, rw)
}

func errorEntry(err error) []byte {
	var b bytes.Buffer
	b.WriteString(`{"response":{"status":`)
	writeJSON(&b, strconv.Itoa(fault.Status(err))+" "+http.StatusText(fault.Status(err)))
	b.WriteString(`,"outcome":`)
	b.Write(fault.Outcome(err))
	b.WriteString("}}")
	return b.Bytes()
}

// dispatch serves an entry through the router as the request it
// describes and renders the response entry.
func (a *api) dispatch(c *gin.Context, e *entry) []byte {
	target := "/fhir/" + e.path
	if e.query != "" {
		target += "?" + e.query
	}
	body, contentType := bytes.NewReader(nil), "application/fhir+json"
	switch {
	case e.method == "PATCH":
		body, contentType = bytes.NewReader(e.patchBody), e.patchType
	case e.resource != nil && e.method != "GET" && e.method != "HEAD" && e.method != "DELETE":
		body = bytes.NewReader(e.resource.Bytes())
	}
	method := e.method
	if method == "HEAD" {
		method = "GET" // the body is left out of the response entry
	}
	req, err := http.NewRequestWithContext(c.Request.Context(), method, target, body)
	if err != nil {
		return errorEntry(fault.New(fault.Invalid, e.expr+".request.url", "%q is not a valid URL", e.path))
	}
	req.Host = c.Request.Host
	req.TLS = c.Request.TLS
	req.Header.Set("Content-Type", contentType)
	for h, v := range map[string]string{"If-Match": e.req.IfMatch, "If-None-Match": e.req.IfNoneMatch,
		"If-Modified-Since": e.req.IfModifiedSince, "If-None-Exist": e.req.IfNoneExist} {
		if v != "" {
			req.Header.Set(h, v)
		}
	}
	for _, p := range c.Request.Header.Values("Prefer") {
		req.Header.Add("Prefer", p)
	}
	rw := &recorder{header: http.Header{}, status: http.StatusOK}
	a.engine.ServeHTTP(rw, req)
	return a.responseEntry(c, e, rw)
}

// responseEntry turns a recorded response into a response entry.
func (a *api) responseEntry(c *gin.Context, e *entry, rw *recorder) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	isJSON := rw.body.Len() > 0 && rw.body.Bytes()[0] == '{'
	if rw.status < 300 && isJSON && e.method != "HEAD" {
		b.WriteString(`"resource":`)
		b.Write(rw.body.Bytes())
		b.WriteByte(',')
	}
	b.WriteString(`"response":{"status":`)
	writeJSON(&b, strconv.Itoa(rw.status)+" "+http.StatusText(rw.status))
	if loc := rw.header.Get("Location"); loc != "" {
		b.WriteString(`,"location":`)
		writeJSON(&b, strings.TrimPrefix(loc, a.base(c)+"/"))
	}
	if et := rw.header.Get("ETag"); et != "" {
		b.WriteString(`,"etag":`)
		writeJSON(&b, et)
	}
	if lm, err := http.ParseTime(rw.header.Get("Last-Modified")); err == nil {
		b.WriteString(`,"lastModified":`)
		writeJSON(&b, lm.UTC().Format(time.RFC3339))
	}
	if rw.status >= 400 && isJSON {
		b.WriteString(`,"outcome":`)
		b.Write(rw.body.Bytes())
	}
	b.WriteString("}}")
	return b.Bytes()
}

// recorder is the http.ResponseWriter of a dispatched entry.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(status int)      { r.status = status }

// locate names where in the bundle err happened: issues without an
// expression get expr; an expression rooted at the resource type
// (Patient.id) is moved below the entry's resource.
func locate(err error, expr string) error {
	fe := fault.As(err)
	for i := range fe.Issues {
		is := &fe.Issues[i]
		switch {
		case len(is.Expression) == 0:
			is.Expression = []string{expr}
		case strings.HasPrefix(is.Expression[0], "Bundle."):
		default:
			first, rest, _ := strings.Cut(is.Expression[0], ".")
			if fhir.IsResourceType(first) && rest != "" {
				is.Expression[0] = expr + ".resource." + rest
			} else {
				is.Expression[0] = expr
			}
		}
	}
	return fe
}

// at puts every issue of err at expr (a search criteria's place, say).
func at(err error, expr string) error {
	fe := fault.As(err)
	for i := range fe.Issues {
		fe.Issues[i].Expression = []string{expr}
	}
	return fe
}
