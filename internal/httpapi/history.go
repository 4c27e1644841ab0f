package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

const (
	defaultCount = 50
	maxCount     = 1000
)

func (a *api) historySystem(c *gin.Context) error {
	return a.history(c, store.HistoryQuery{})
}

func (a *api) historyType(c *gin.Context) error {
	typ, err := resourceType(c)
	if err != nil {
		return err
	}
	return a.history(c, store.HistoryQuery{Type: typ})
}

func (a *api) historyInstance(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	return a.history(c, store.HistoryQuery{Type: typ, ID: id})
}

// history answers the three history interactions with a Bundle of type
// history, newest first. Paging is by change sequence: the next link names
// the sequence to continue below (_page), so pages stay stable while writes
// go on.
func (a *api) history(c *gin.Context, q store.HistoryQuery) error {
	if err := historyParams(c, &q); err != nil {
		return err
	}
	recs, more, err := a.Resources.History(c.Request.Context(), q)
	if err != nil {
		return err
	}
	if q.ID != "" && len(recs) == 0 && q.Before == 0 && q.Since.IsZero() {
		return fault.New(fault.NotFound, "", "%s/%s is not known", q.Type, q.ID)
	}
	// Only the versions the scopes reach are listed (a page may come out
	// shorter; its next link still continues after the last one read).
	last := recs
	if recs = a.readable(c, slices.Clone(recs)); q.ID != "" && len(last) > 0 && len(recs) == 0 {
		return outsideCompartment()
	}
	self := a.base(c) + c.Request.URL.Path[len("/fhir"):]
	links := []link{{"self", self + "?" + c.Request.URL.RawQuery}}
	if more {
		next := url.Values{}
		for k, v := range c.Request.URL.Query() {
			next[k] = v
		}
		next.Set("_page", strconv.FormatInt(last[len(last)-1].Seq, 10))
		links = append(links, link{"next", self + "?" + next.Encode()})
	}
	// Versions the principal may not see are left out (a history Bundle
	// has no place for an OperationOutcome entry); the paging above
	// counts them, so no page repeats or skips.
	ctx := c.Request.Context()
	if recs, _, err = disclosure.FromContext(ctx).Filter(ctx, recs); err != nil {
		return err
	}
	c.Data(http.StatusOK, fhirJSON, pretty(c, a.historyBundle(c, links, recs)))
	return nil
}

func historyParams(c *gin.Context, q *store.HistoryQuery) error {
	q.Count = defaultCount
	for name, vals := range c.Request.URL.Query() {
		v := vals[len(vals)-1]
		switch name {
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fault.New(fault.Invalid, "", "_count must be a positive whole number, not %q", v)
			}
			q.Count = min(n, maxCount)
		case "_since":
			t, err := fhir.ParseInstant(v)
			if err != nil {
				return fault.New(fault.Invalid, "", "_since must be an instant such as 2026-01-02T03:04:05Z, not %q", v)
			}
			q.Since = t
		case "_page":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return fault.New(fault.Invalid, "", "_page %q is not a page this server made", v)
			}
			q.Before = n
		case "_format", "_pretty":
		default:
			return fault.New(fault.Invalid, "", "history does not support the parameter %q", name)
		}
	}
	return nil
}

type link struct{ Relation, URL string }

// historyBundle assembles the Bundle around the stored bytes of each
// version, so resources are sent exactly as stored.
func (a *api) historyBundle(c *gin.Context, links []link, recs []*store.Record) []byte {
	base := a.base(c)
	return bundle("history", -1, links, len(recs), func(b *bytes.Buffer, i int) {
		r := recs[i]
		b.WriteString(`{"fullUrl":`)
		writeJSON(b, base+"/"+r.Type+"/"+r.ID)
		if !r.Deleted {
			b.WriteString(`,"resource":`)
			b.WriteString(r.Raw)
		}
		method, status, reqURL := r.Method, "200 OK", r.Type+"/"+r.ID
		switch {
		case r.Deleted:
			status = "204 No Content"
		case method == "POST":
			status, reqURL = "201 Created", r.Type
		case r.VersionID == 1:
			status = "201 Created"
		}
		b.WriteString(`,"request":{"method":`)
		writeJSON(b, method)
		b.WriteString(`,"url":`)
		writeJSON(b, reqURL)
		b.WriteString(`},"response":{"status":`)
		writeJSON(b, status)
		b.WriteString(`,"etag":`)
		writeJSON(b, `W/"`+strconv.FormatInt(r.VersionID, 10)+`"`)
		b.WriteString(`,"lastModified":`)
		writeJSON(b, r.LastUpdated.UTC().Format(fhir.InstantLayout))
		b.WriteString(`}}`)
	})
}

// bundle writes a Bundle of type typ: total when not negative, the links,
// and n entries written by entry.
func bundle(typ string, total int64, links []link, n int, entry func(*bytes.Buffer, int)) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","meta":{"lastUpdated":`)
	writeJSON(&b, time.Now().UTC().Format(fhir.InstantLayout))
	b.WriteString(`},"type":`)
	writeJSON(&b, typ)
	if total >= 0 {
		b.WriteString(`,"total":` + strconv.FormatInt(total, 10))
	}
	if len(links) > 0 {
		b.WriteString(`,"link":[`)
	}
	for i, l := range links {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"relation":`)
		writeJSON(&b, l.Relation)
		b.WriteString(`,"url":`)
		writeJSON(&b, l.URL)
		b.WriteByte('}')
	}
	if len(links) > 0 {
		b.WriteByte(']')
	}
	if n > 0 {
		b.WriteString(`,"entry":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			entry(&b, i)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode appends a newline
}
