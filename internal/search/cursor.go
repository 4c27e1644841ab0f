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
)

// Cursors make and check the opaque page tokens of next links: the sort
// values of the last row of a page, bound to the query they page through
// and signed, so a client can neither forge one nor reuse it for another
// search. No result set is kept on the server.
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

type cursor struct {
	TS  *time.Time `json:"t,omitempty"`
	RID string     `json:"r"`
}

func (c *Cursors) mac(canonical string, payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(canonical))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

// Next is the token for the page after a row with lastUpdated ts and id rid.
func (c *Cursors) Next(r *Request, ts time.Time, rid string) string {
	cur := cursor{RID: rid}
	for _, s := range r.Sort {
		if s.Field == "ts" {
			cur.TS = &ts
		}
	}
	payload, _ := json.Marshal(cur)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(c.mac(r.Canonical, payload))
}

// After decodes r.Page into the store's keyset values (nil for a first page).
func (c *Cursors) After(r *Request) ([]any, error) {
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
	if err := json.Unmarshal(payload, &cur); err != nil {
		return nil, bad
	}
	var after []any
	for _, s := range r.Sort {
		switch {
		case s.Field == "ts" && cur.TS != nil:
			after = append(after, *cur.TS)
		case s.Field == "rid":
			after = append(after, cur.RID)
		default:
			return nil, bad
		}
	}
	return after, nil
}
