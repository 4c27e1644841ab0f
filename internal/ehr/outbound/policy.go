package outbound

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
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
	if rec.Type == "List" && slices.Contains(info.Code.Coding, coding{w.e.mapper.KapSystem(), mappings.ClientIndexCode}) {
		// The KAP client index is the server's bookkeeping (a new version
		// with each record of the client), whatever the endpoint's types.
		return plan{}, "the KAP client index is not sent", nil
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
	labels, err := disclosure.Labels(rec.Raw)
	if err != nil {
		return plan{}, "unreadable", nil
	}
	if len(labels) > 0 {
		if w.ep.Send.Part2 == ehr.Part2Never {
			return plan{}, "Part 2 data is not sent to this EHR", nil
		}
		// Without send.recipient Part 2 data stays home (docs/ehr-sync.md).
		ok := false
		if w.ep.Send.Recipient != "" {
			if ok, err = w.scope.Allows(ctx, rec.Type, rec.ID, rec.Raw); err != nil {
				return plan{}, "", err
			}
		}
		if !ok {
			return plan{}, "Part 2 data without a consent for this recipient", nil
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
	Code struct {
		Coding []coding `json:"coding"`
	} `json:"code"`
	// tree is the whole resource, for the kap codings and references.
	tree any
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
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
