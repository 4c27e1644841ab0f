package httpapi

import (
	"bytes"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// searchType answers the GET searches with a searchset Bundle: of a type
// (GET /fhir/:type?params), of the system (GET /fhir?_type=...) and of a
// compartment (GET /fhir/:type/:id/:ctype?params).
func (a *api) searchType(c *gin.Context) error {
	return a.search(c, c.Request.URL.Query())
}

// searchPost answers the POST .../_search forms of the same searches:
// parameters in the form body and in the URL.
func (a *api) searchPost(c *gin.Context) error {
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return fault.New(fault.UnsupportedMediaType, "", "POST _search takes application/x-www-form-urlencoded parameters")
	}
	body, err := a.body(c)
	if err != nil {
		return err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return fault.New(fault.Invalid, "", "the form body is not valid: %v", err)
	}
	for k, v := range c.Request.URL.Query() {
		form[k] = append(form[k], v...)
	}
	return a.search(c, form)
}

func (a *api) search(c *gin.Context, params url.Values) error {
	c.Set(auditQuery, params.Encode())
	if err := a.checkSearchParams(params); err != nil {
		return err
	}
	req, self, err := a.parseSearch(c, params)
	if err != nil {
		return err
	}
	if err := a.restrictSearch(c, params, req); err != nil {
		return err
	}
	return a.searchset(c, params, req, self)
}

// restrictSearch keeps a search to what the principal's scopes reach: a
// system search to the types it may search with a user/ or system/
// grant (a type named in _type that it may not is a 403), a type or
// compartment search under a patient/ grant to the patient's compartment.
// A chain or _has searches its type too: it needs s on it.
func (a *api) restrictSearch(c *gin.Context, params url.Values, req *search.Request) error {
	p, err := principal(c)
	if err != nil || p.Anonymous {
		return err
	}
	for _, j := range req.Joins {
		if p.Grant(auth.Search, j.Type) == auth.None {
			return forbidden(auth.Missing(auth.None, auth.Search, j.Type) + " (for " + j.Name + ")")
		}
	}
	if c.Param("type") == "" {
		if req.Types == nil { // one type: a type search in all but name
			_, err = grantedTypes(p, auth.Search, []string{req.Type}, true)
			return err
		}
		_, explicit := params["_type"]
		req.Types, err = grantedTypes(p, auth.Search, req.Types, explicit)
		return err
	}
	if patient, ok := compartmentPatient(c); ok {
		return restrictToCompartment(req, patient)
	}
	return nil
}

// searchset runs a parsed search and answers with the page the cursor
// names: a searchset Bundle whose links (on self) page through it.
func (a *api) searchset(c *gin.Context, params url.Values, req *search.Request, self string) error {
	// Chains and _has see only what the principal may: a withheld
	// resource must not make (or unmake) a match either.
	ctx := c.Request.Context()
	if err := search.Resolve(ctx, disclosure.FromContext(ctx).Searcher(a.Resources), req); err != nil {
		return err
	}
	page, err := a.Cursors.Decode(req)
	if err != nil {
		return err
	}
	q := &store.Query{Type: req.Type, Types: req.Types, And: req.Conds, Sort: req.Sort, Limit: req.Count}
	back := page != nil && page.Back
	if page != nil {
		q.After = page.After
	}
	if back {
		// The page before the cursor row: read backwards from it.
		q.Sort = search.Reverse(req.Sort)
	}
	recs, more, err := a.Resources.Search(c.Request.Context(), q)
	if err != nil {
		return err
	}
	if back {
		slices.Reverse(recs)
	}
	// The links page by the rows read, withheld ones included.
	links := a.pageLinks(self, params, req, recs, page, more)
	recs, incs, withheld, err := a.disclosed(c, req, recs)
	if err != nil {
		return err
	}
	// Included resources are of types and patients the search did not
	// name: only those the scopes reach are returned.
	incs = a.readable(c, incs)
	issues := append(append(req.Ignored, withheld...), a.reindexWarnings(req)...)
	total := int64(-1)
	if req.Total == "accurate" {
		if total, err = disclosure.FromContext(ctx).Count(ctx, a.Resources, q); err != nil {
			return err
		}
	}
	if err := subset(req.Subset, recs, incs); err != nil {
		return err
	}
	// Matches, then included resources, then the OperationOutcome.
	n := len(recs) + len(incs)
	if len(issues) > 0 {
		n++
	}
	base := a.base(c)
	body := bundle("searchset", total, links, n, func(b *bytes.Buffer, i int) {
		if i == len(recs)+len(incs) {
			b.WriteString(`{"resource":`)
			b.Write(fault.OutcomeOf(issues))
			b.WriteString(`,"search":{"mode":"outcome"}}`)
			return
		}
		var r *store.Record
		mode := "match"
		if i < len(recs) {
			r = recs[i]
		} else {
			r, mode = incs[i-len(recs)], "include"
		}
		b.WriteString(`{"fullUrl":`)
		writeJSON(b, base+"/"+r.Type+"/"+r.ID)
		b.WriteString(`,"resource":`)
		b.WriteString(r.Raw)
		b.WriteString(`,"search":{"mode":"` + mode + `"}}`)
	})
	c.Data(http.StatusOK, fhirJSON, pretty(c, body))
	return nil
}

// disclosed keeps the matches the request's principal may see, adds
// their includes (of the kept matches only, so a withheld match shows
// nothing through what it refers to) the principal may see, and returns
// the include warnings plus one announcing how many were withheld.
func (a *api) disclosed(c *gin.Context, req *search.Request, recs []*store.Record) ([]*store.Record, []*store.Record, []fault.Issue, error) {
	ctx := c.Request.Context()
	scope := disclosure.FromContext(ctx)
	recs, n, err := scope.Filter(ctx, recs)
	if err != nil {
		return nil, nil, nil, err
	}
	incs, warnings, err := search.Includes(ctx, a.Resources, req, recs)
	if err != nil {
		return nil, nil, nil, err
	}
	incs, m, err := scope.Filter(ctx, incs)
	if err != nil {
		return nil, nil, nil, err
	}
	if n+m > 0 {
		warnings = append(warnings, disclosure.WithheldIssue(int64(n+m), "resources"))
	}
	return recs, incs, warnings, nil
}

// subset replaces the resources of the records by the part that s keeps
// (_summary, _elements).
func subset(s fhir.Subset, recs ...[]*store.Record) error {
	if s.Whole() {
		return nil
	}
	for _, rs := range recs {
		for _, r := range rs {
			b, err := s.Apply([]byte(r.Raw))
			if err != nil {
				return fault.Wrap(err, "subsetting "+r.Type+"/"+r.ID)
			}
			r.Raw = string(b)
		}
	}
	return nil
}

// pageLinks are the searchset links: self and first (both the search
// without _page), previous on every page after the first, next when more
// follow. more says whether rows follow the page in the direction it was
// read.
func (a *api) pageLinks(self string, params url.Values, req *search.Request, recs []*store.Record, page *search.Page, more bool) []link {
	first := self + "?" + encodeWithout(params, "_page")
	links := []link{{"self", first}, {"first", first}}
	if len(recs) == 0 {
		return links
	}
	withPage := func(token string) string {
		v := cloneValues(params)
		v.Set("_page", token)
		return self + "?" + v.Encode()
	}
	back := page != nil && page.Back
	if (back && more) || (page != nil && !back) {
		links = append(links, link{"previous", withPage(a.Cursors.Previous(req, recs[0]))})
	}
	// A page read backwards came from the page after it.
	if more || back {
		links = append(links, link{"next", withPage(a.Cursors.Next(req, recs[len(recs)-1]))})
	}
	return links
}

// parseSearch parses the search the route names, and returns the URL its
// links page through: the system (no :type), a compartment (:ctype, the
// type searched in the compartment of :type/:id) or a type.
func (a *api) parseSearch(c *gin.Context, params url.Values) (*search.Request, string, error) {
	lenient := preferLenient(c)
	if c.Param("type") == "" {
		req, err := search.ParseSystem(a.Registry, params, lenient)
		return req, a.base(c), err
	}
	ctype := c.Param("ctype")
	if ctype == "" {
		typ, err := resourceType(c)
		if err != nil {
			return nil, "", err
		}
		req, err := search.Parse(a.Registry, typ, params, lenient)
		return req, a.base(c) + "/" + typ, err
	}
	typ, id, err := target(c)
	if err != nil {
		return nil, "", err
	}
	switch {
	case !fhir.IsCompartment(typ):
		return nil, "", fault.New(fault.NotFound, "", "%s does not define a compartment", typ)
	case !fhir.IsResourceType(ctype):
		return nil, "", fault.New(fault.NotFound, "", "resource type %q is not supported", ctype)
	}
	req, err := search.Parse(a.Registry, ctype, params, lenient)
	if err != nil {
		return nil, "", err
	}
	if err := req.InCompartment(typ, id); err != nil {
		return nil, "", err
	}
	return req, a.base(c) + "/" + typ + "/" + id + "/" + ctype, nil
}

// preferLenient reports Prefer: handling=lenient.
func preferLenient(c *gin.Context) bool { return prefers(c, "handling=lenient") }

// prefers reports whether a Prefer header holds the preference pref
// (preferences are separated by commas, or by semicolons as some clients
// send them).
func prefers(c *gin.Context, pref string) bool {
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.FieldsFunc(h, func(r rune) bool { return r == ',' || r == ';' }) {
			if strings.TrimSpace(p) == pref {
				return true
			}
		}
	}
	return false
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func encodeWithout(v url.Values, drop string) string {
	out := cloneValues(v)
	out.Del(drop)
	return out.Encode()
}
