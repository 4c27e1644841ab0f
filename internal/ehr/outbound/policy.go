package outbound

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// PulledTagSystem marks a resource pulled from an EHR: meta.tag with this
// system and the endpoint's name as code. Such a resource is never sent
// back to that endpoint.
const PulledTagSystem = "urn:kapfhir:pulled-from"

// PulledSourceSystem is the identifier system of a resource pulled from
// endpoint (package ehr/inbound), with value "<Type>/<the EHR's id>": a
// reference to it goes to the EHR as that reference.
func PulledSourceSystem(endpoint string) string { return "urn:kapfhir:ehr:" + endpoint }

// versionTagSystem tags each resource sent with the local version
// (meta.tag code): after a lost answer to a PUT, the EHR's copy tells
// whether that write was applied.
const versionTagSystem = "urn:kapfhir:version"

const (
	sysActCode  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysActReson = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
)

// part2Labels are the meta.security codes (v3-ActCode) that make a
// resource Part 2 data (mapping spec §10.2).
var part2Labels = []string{"42CFRPart2", "SUD"}

// plan is how a change goes to the EHR.
type plan struct {
	remoteType string
	// portable: a MedicationAdministration sent as its session note
	// DocumentReference (the EHRs take no MedicationAdministration).
	portable bool
}

// sends reports whether the endpoint's policy lists the type.
func (w *worker) sends(typ string) bool { return slices.Contains(w.ep.Send.Types, typ) }

// decide applies the send policy to a live version (docs/ehr-sync.md,
// "What is sent"); a non-empty reason says why it is not sent.
func (w *worker) decide(ctx context.Context, rec *store.Record) (plan, string, error) {
	if !w.sends(rec.Type) {
		return plan{}, "type not sent", nil
	}
	if rec.Type == audit.ResourceType {
		// The server's own record of who saw what stays here, whatever
		// the endpoint's types say.
		return plan{}, "audit records are not sent", nil
	}
	info, err := readInfo(rec.Raw)
	if err != nil {
		return plan{}, "unreadable", nil
	}
	if info.hasTag(PulledTagSystem, w.ep.Name) {
		return plan{}, "pulled from this EHR", nil
	}
	if w.ep.Send.KAPOnly {
		kap, err := w.isKAP(ctx, info)
		if err != nil || !kap {
			return plan{}, "not a KAP resource", err
		}
	}
	if labels := info.part2(); len(labels) > 0 {
		if w.ep.Send.Part2 == ehr.Part2Never {
			return plan{}, "Part 2 data is not sent to this EHR", nil
		}
		ok, err := w.consentPermits(ctx, info.patient(rec), labels)
		if err != nil || !ok {
			return plan{}, "Part 2 data without a consent for this recipient", err
		}
	}
	c := w.profile[rec.Type]
	switch {
	case c.Create || c.Update:
		return plan{remoteType: rec.Type}, "", nil
	case rec.Type == "MedicationAdministration" && w.profile["DocumentReference"].Create:
		return plan{remoteType: "DocumentReference", portable: true}, "", nil
	}
	return plan{}, "the EHR does not take " + rec.Type, nil
}

// info is what the policy reads of a resource.
type info struct {
	Meta struct {
		Security []coding `json:"security"`
		Tag      []coding `json:"tag"`
	} `json:"meta"`
	Subject *ref `json:"subject"`
	Patient *ref `json:"patient"`
	// tree is the whole resource, for the kap codings and references.
	tree any
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type ref struct {
	Reference string `json:"reference"`
}

func readInfo(raw string) (*info, error) {
	var in info
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(raw), &in.tree); err != nil {
		return nil, err
	}
	return &in, nil
}

func (in *info) hasTag(system, code string) bool {
	return slices.Contains(in.Meta.Tag, coding{system, code})
}

// part2 is the resource's Part 2 labels.
func (in *info) part2() []string {
	var out []string
	for _, c := range in.Meta.Security {
		if c.System == sysActCode && slices.Contains(part2Labels, c.Code) {
			out = append(out, c.Code)
		}
	}
	return out
}

// patient is the Patient a resource is about: itself, or its subject or
// patient reference; "" when none.
func (in *info) patient(rec *store.Record) string {
	if rec.Type == "Patient" {
		return store.Key("Patient", rec.ID)
	}
	for _, r := range []*ref{in.Subject, in.Patient} {
		if r != nil && strings.HasPrefix(r.Reference, "Patient/") {
			return r.Reference
		}
	}
	return ""
}

// walk calls fn with every string member of the tree and its key.
func walk(v any, fn func(key, s string)) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok {
				fn(k, s)
			} else {
				walk(x, fn)
			}
		}
	case []any:
		for _, x := range t {
			walk(x, fn)
		}
	}
}

// hasSystem reports whether any coding (or identifier) of the resource
// has the system.
func (in *info) hasSystem(system string) bool {
	found := false
	walk(in.tree, func(k, s string) { found = found || (k == "system" && s == system) })
	return found
}

// isKAP is the KAPOnly rule: a resource is of the KAP program when it
// carries a coding of the kap CodeSystem, or refers to an Encounter or
// EpisodeOfCare that does (a session, the program): measurements,
// administrations and notes of a session.
func (w *worker) isKAP(ctx context.Context, in *info) (bool, error) {
	kap := w.e.mapper.KapSystem()
	if in.hasSystem(kap) {
		return true, nil
	}
	var targets []string
	walk(in.tree, func(k, s string) {
		if k == "reference" && (strings.HasPrefix(s, "Encounter/") || strings.HasPrefix(s, "EpisodeOfCare/")) && !slices.Contains(targets, s) {
			targets = append(targets, s)
		}
	})
	for _, t := range targets {
		typ, id, _ := strings.Cut(t, "/")
		rec, err := w.e.st.Current(ctx, typ, id)
		if fault.As(err).Kind == fault.NotFound {
			continue
		}
		if err != nil {
			return false, err
		}
		if rec.Deleted {
			continue
		}
		if tin, err := readInfo(rec.Raw); err == nil && tin.hasSystem(kap) {
			return true, nil
		}
	}
	return false, nil
}

// consent is the part of a Consent the Part 2 rule reads.
type consent struct {
	Status    string     `json:"status"`
	Provision *provision `json:"provision"`
}

type provision struct {
	Type   string  `json:"type"`
	Period *period `json:"period"`
	Actor  []struct {
		Reference ref `json:"reference"`
	} `json:"actor"`
	Purpose       []coding    `json:"purpose"`
	SecurityLabel []coding    `json:"securityLabel"`
	Provision     []provision `json:"provision"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// consentPermits is the Part 2 rule: some active Consent of the patient
// permits disclosure of data with these labels to the endpoint's
// Recipient for treatment (see permits).
func (w *worker) consentPermits(ctx context.Context, patient string, labels []string) (bool, error) {
	if patient == "" || w.ep.Send.Recipient == "" {
		return false, nil
	}
	cs, ok := w.consent[patient]
	if !ok {
		var err error
		if cs, err = w.consents(ctx, patient); err != nil {
			return false, err
		}
		w.consent[patient] = cs
	}
	now := w.e.o.Now()
	for _, c := range cs {
		if c.permits(w.ep.Send.Recipient, labels, now) {
			return true, nil
		}
	}
	return false, nil
}

// consents reads the patient's active Consents (cached per batch: on the
// embedded store a search is a scan).
func (w *worker) consents(ctx context.Context, patient string) ([]consent, error) {
	r, err := search.ParseCriteria(w.e.reg, "Consent", "status=active&patient="+patient)
	if err != nil {
		return nil, err
	}
	var out []consent
	q := &store.Query{Type: "Consent", And: r.Conds, Sort: []store.Sort{{Field: "rid"}}, Limit: 200}
	for {
		recs, more, err := w.e.st.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			var c consent
			if json.Unmarshal([]byte(rec.Raw), &c) == nil {
				out = append(out, c)
			}
		}
		if !more || len(recs) == 0 {
			return out, nil
		}
		q.After = []any{recs[len(recs)-1].ID}
	}
}

// permits: the Consent is active; its root provision is a permit, in its
// period, naming the recipient among its actors and TREAT among its
// purposes, and listing every label among its securityLabels when it
// lists any; and no deny provision nested in it applies (in its period,
// naming the recipient or no actor, TREAT or no purpose) to one of the
// labels (or to every label, when it lists none).
func (c consent) permits(recipient string, labels []string, now time.Time) bool {
	p := c.Provision
	if c.Status != "active" || p == nil || p.Type != "permit" || !p.Period.covers(now) ||
		!p.names(recipient) || !hasCoding(p.Purpose, sysActReson, "TREAT") {
		return false
	}
	if len(p.SecurityLabel) > 0 {
		for _, l := range labels {
			if !hasCoding(p.SecurityLabel, sysActCode, l) {
				return false
			}
		}
	}
	return !p.denies(recipient, labels, now)
}

func (p *provision) denies(recipient string, labels []string, now time.Time) bool {
	for i := range p.Provision {
		n := &p.Provision[i]
		applies := n.Type == "deny" && n.Period.covers(now) &&
			(len(n.Actor) == 0 || n.names(recipient)) &&
			(len(n.Purpose) == 0 || hasCoding(n.Purpose, sysActReson, "TREAT"))
		if applies && (len(n.SecurityLabel) == 0 || slices.ContainsFunc(labels, func(l string) bool { return hasCoding(n.SecurityLabel, sysActCode, l) })) {
			return true
		}
		if n.denies(recipient, labels, now) {
			return true
		}
	}
	return false
}

func (p *provision) names(recipient string) bool {
	return slices.ContainsFunc(p.Actor, func(a struct {
		Reference ref `json:"reference"`
	}) bool {
		return a.Reference.Reference == recipient
	})
}

func hasCoding(cs []coding, system, code string) bool {
	return slices.Contains(cs, coding{system, code})
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
