package search

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Cursors make and check the opaque page tokens of next and previous
// links: the sort values of the row a page starts after, the direction,
// bound to the query they page through and signed, so a client can neither
// forge one nor reuse it for another search. No result set is kept on the
// server.
type Cursors struct{ key []byte }

// NewCursors signs with secret; an empty secret picks a random one, so
// links stop working when the process restarts.
func NewCursors(secret string) *Cursors {
	key := []byte(secret)
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return &Cursors{key: key}
}

// cursor is a page token's payload: one value per sort key (a string,
// ts as RFC 3339, or null for a missing key), and whether the page is the
// one before the row rather than after it.
type cursor struct {
	Values []*string `json:"v"`
	Back   bool      `json:"b,omitempty"`
}

// Page is a decoded cursor: the store's keyset values and the direction.
type Page struct {
	After []any
	// Back: the page is the one before the row; query with Reverse and
	// reverse the rows.
	Back bool
}

func (c *Cursors) mac(canonical string, payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(canonical))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

// Next is the token for the page after rec, a row of a search of r.
func (c *Cursors) Next(r *Request, rec *store.Record) string { return c.token(r, rec, false) }

// Previous is the token for the page before rec.
func (c *Cursors) Previous(r *Request, rec *store.Record) string { return c.token(r, rec, true) }

func (c *Cursors) token(r *Request, rec *store.Record, back bool) string {
	cur := cursor{Values: make([]*string, len(rec.Keys)), Back: back}
	for i, v := range rec.Keys {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case time.Time:
			s = v.UTC().Format(time.RFC3339Nano)
		default:
			continue
		}
		cur.Values[i] = &s
	}
	payload, _ := json.Marshal(cur)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(c.mac(r.Canonical, payload))
}

// Decode checks r.Page and returns the page it names (nil for a first
// page).
func (c *Cursors) Decode(r *Request) (*Page, error) {
	if r.Page == "" {
		return nil, nil
	}
	bad := fault.New(fault.Invalid, "", "_page is not a page of this search (links are valid for the search that made them, until the server restarts unless KAPFHIR_CURSOR_SECRET is set)")
	p, m, ok := strings.Cut(r.Page, ".")
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	sig, err2 := enc.DecodeString(m)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sig, c.mac(r.Canonical, payload)) {
		return nil, bad
	}
	var cur cursor
	if err := json.Unmarshal(payload, &cur); err != nil || len(cur.Values) != len(r.Sort) {
		return nil, bad
	}
	pg := &Page{After: make([]any, len(r.Sort)), Back: cur.Back}
	for i, s := range r.Sort {
		v := cur.Values[i]
		switch {
		case v == nil && (s.Field == "ts" || s.Field == "rid" || s.Field == "type"):
			return nil, bad // the record's own fields are never missing
		case v == nil:
		case s.Field == "ts":
			t, err := time.Parse(time.RFC3339Nano, *v)
			if err != nil {
				return nil, bad
			}
			pg.After[i] = t
		default:
			pg.After[i] = *v
		}
	}
	return pg, nil
}

// Reverse is sort with every direction flipped: the order a previous page
// is read in, from its cursor row backwards.
func Reverse(sort []store.Sort) []store.Sort {
	out := make([]store.Sort, len(sort))
	for i, s := range sort {
		out[i] = store.Sort{Field: s.Field, Desc: !s.Desc}
	}
	return out
}
