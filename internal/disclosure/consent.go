package disclosure

import (
	"slices"
	"strings"
	"time"
)

// consent is the part of a Consent the rule reads.
type consent struct {
	Status    string     `json:"status"`
	Provision *provision `json:"provision"`
}

type provision struct {
	Type          string      `json:"type"`
	Period        *period     `json:"period"`
	Actor         []actor     `json:"actor"`
	Purpose       []coding    `json:"purpose"`
	SecurityLabel []coding    `json:"securityLabel"`
	Class         []coding    `json:"class"`
	Data          []data      `json:"data"`
	Provision     []provision `json:"provision"`
}

type actor struct {
	Reference struct {
		Reference  string `json:"reference"`
		Identifier *struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	} `json:"reference"`
}

type data struct {
	Reference struct {
		Reference string `json:"reference"`
	} `json:"reference"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// subject is what the rule knows of the resource disclosed and of the
// disclosure.
type subject struct {
	typ, id string
	labels  []string // its sensitivity codes (Labels)
	to      Recipient
	purpose string // one purpose of use, of the recipient and allowed
	now     time.Time
}

// permits is the rule (docs/fhir-behaviour.md, "Sensitive data"): the
// Consent is active, its root provision is a permit that applies to the
// subject (see applies; its securityLabels, when listed, must cover every
// label of the resource), and no deny provision nested in it, at any
// depth, applies (its securityLabels, when listed, need only name one).
func (c consent) permits(s subject) bool {
	p := c.Provision
	if c.Status != "active" || p == nil || p.Type != "permit" || !p.applies(s) {
		return false
	}
	if len(p.SecurityLabel) > 0 && slices.ContainsFunc(s.labels, func(l string) bool { return !hasLabel(p.SecurityLabel, l) }) {
		return false
	}
	return !p.denies(s)
}

// applies: each restriction the provision lists holds for s — its period
// covers now, an actor is the recipient, a purpose is s's purpose, a class
// is the resource's type, a data reference is the resource. A restriction
// not listed does not restrict.
func (p *provision) applies(s subject) bool {
	return p.Period.covers(s.now) &&
		(len(p.Actor) == 0 || slices.ContainsFunc(p.Actor, s.to.is)) &&
		(len(p.Purpose) == 0 || hasCoding(p.Purpose, SysActReason, s.purpose)) &&
		(len(p.Class) == 0 || slices.ContainsFunc(p.Class, func(c coding) bool { return c.Code == s.typ })) &&
		(len(p.Data) == 0 || slices.ContainsFunc(p.Data, func(d data) bool { return relative(d.Reference.Reference) == s.typ+"/"+s.id }))
}

func (p *provision) denies(s subject) bool {
	for i := range p.Provision {
		n := &p.Provision[i]
		if n.Type == "deny" && n.applies(s) &&
			(len(n.SecurityLabel) == 0 || slices.ContainsFunc(s.labels, func(l string) bool { return hasLabel(n.SecurityLabel, l) })) {
			return true
		}
		if n.denies(s) {
			return true
		}
	}
	return false
}

// is reports whether the Consent actor names the recipient: by reference
// (relative or absolute, compared as Type/id), or by an identifier of
// system ClientIDSystem holding its OAuth client id.
func (r Recipient) is(a actor) bool {
	if ref := relative(a.Reference.Reference); ref != "" && slices.ContainsFunc(r.Actors, func(x string) bool { return relative(x) == ref }) {
		return true
	}
	id := a.Reference.Identifier
	return id != nil && r.ClientID != "" && id.System == ClientIDSystem && id.Value == r.ClientID
}

// relative is the Type/id of a reference, relative or absolute (its last
// two path segments); "" for anything else.
func relative(ref string) string {
	parts := strings.Split(ref, "/")
	if len(parts) < 2 || parts[len(parts)-1] == "" || parts[len(parts)-2] == "" {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

func hasCoding(cs []coding, system, code string) bool {
	return slices.Contains(cs, coding{system, code})
}

// hasLabel reports whether cs holds the sensitivity code (in any system
// Labels reads it from).
func hasLabel(cs []coding, code string) bool {
	return slices.ContainsFunc(cs, func(c coding) bool { return c.Code == code && labelSystem(c.System) })
}

// covers reports whether now is in the period (dates or dateTimes; an
// absent period or end is open; an unreadable one covers nothing).
func (p *period) covers(now time.Time) bool {
	if p == nil {
		return true
	}
	if p.Start != "" {
		s, ok := parseWhen(p.Start, false)
		if !ok || now.Before(s) {
			return false
		}
	}
	if p.End != "" {
		e, ok := parseWhen(p.End, true)
		if !ok || !now.Before(e) {
			return false
		}
	}
	return true
}

// parseWhen reads a FHIR date or dateTime; a partial date as an end means
// the end of that day, month or year.
func parseWhen(s string, end bool) (time.Time, bool) {
	for _, l := range []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{time.RFC3339Nano, nil},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			continue
		}
		if end && l.step != nil {
			t = l.step(t)
		}
		return t, true
	}
	return time.Time{}, false
}
