package outbound

import (
	"context"
	"github.com/kapfhir/kapfhir/internal/disclosure"
	"strconv"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// maxDepth bounds how many referenced resources are delivered ahead of
// the one referring to them (a chain, or a cycle, deeper than this gets
// logical references).
const maxDepth = 3

var ok = result{kind: delivered}

// payload is the body sent for rec: the stored resource (or its portable
// form) without our id and meta, with the remote id on an update, our
// identifier, the version tag, and references rewritten to the EHR's ids.
// A result other than ok stops the delivery (a dependency that failed, an
// unmatched patient, no portable form).
func (w *worker) payload(ctx context.Context, rec *store.Record, p plan, remoteID string, depth int) ([]byte, result, error) {
	var res *fhir.Resource
	var err error
	if p.portable {
		var reason string
		if res, reason = w.sessionNote(ctx, rec); reason != "" {
			return nil, skip(reason), nil
		}
	} else if res, err = fhir.ParseResource([]byte(rec.Raw)); err != nil {
		// Accepted once: only a stricter validator gets here.
		return nil, result{kind: dead, reason: "unreadable"}, nil
	}
	if remoteID == "" {
		res.RemoveID()
	} else {
		res.SetID(remoteID)
	}
	res.RemoveMeta("versionId", "lastUpdated", "source")
	res.AddTag(versionTagSystem, strconv.FormatInt(rec.VersionID, 10))
	// A type without an identifier element cannot be found again after a
	// lost answer; the id map still prevents every other duplicate.
	res.AddIdentifier(fhir.Identifier{System: w.e.system, Value: store.Key(rec.Type, rec.ID)})
	out := ok
	err = res.EditReferences(func(_, r string) (fhir.ReferenceEdit, error) {
		if out.kind != delivered {
			return fhir.ReferenceEdit{Reference: r}, nil
		}
		ed, res, err := w.reference(ctx, r, depth)
		out = res
		return ed, err
	})
	if err != nil || out.kind != delivered {
		return nil, out, err
	}
	return res.Bytes(), ok, nil
}

// reference rewrites one local reference Type/id for the EHR: to the
// remote id of the id map; else, for something the endpoint is sent,
// after delivering it first; else, for a Patient, to the EHR's patient
// with one of its identifiers; else as a logical reference (our
// identifier). Contained (#id), absolute and urn: references stay.
func (w *worker) reference(ctx context.Context, r string, depth int) (fhir.ReferenceEdit, result, error) {
	keep := fhir.ReferenceEdit{Reference: r}
	typ, id, found := strings.Cut(r, "/")
	if !found || !fhir.IsResourceType(typ) {
		return keep, ok, nil
	}
	id, _, _ = strings.Cut(id, "/") // a version-specific reference: the resource
	if !fhir.ValidID(id) {
		return keep, ok, nil
	}
	logical := fhir.ReferenceEdit{Logical: &fhir.Identifier{System: w.e.system, Value: store.Key(typ, id)}}
	rr, err := w.e.st.RemoteRef(ctx, w.ep.Name, typ, id)
	if err != nil {
		return keep, ok, err
	}
	if rr != nil && rr.RemoteID != "" && !rr.Deleted {
		return fhir.ReferenceEdit{Reference: rr.RemoteType + "/" + rr.RemoteID}, ok, nil
	}
	target, err := w.e.st.Current(ctx, typ, id)
	if fault.As(err).Kind == fault.NotFound {
		return logical, ok, nil
	}
	if err != nil {
		return keep, ok, err
	}
	if target.Deleted {
		return logical, ok, nil
	}
	if remote := w.pulledRemote(target); remote != "" {
		return fhir.ReferenceEdit{Reference: remote}, ok, nil
	}
	if typ == "Patient" && !w.sends("Patient") {
		if rr == nil {
			rr = &store.RemoteRef{Endpoint: w.ep.Name, Type: typ, LocalID: id, RemoteType: typ}
		}
		matched, res, err := w.matchPatient(ctx, target, rr)
		if err != nil || res.kind != delivered {
			return keep, res, err
		}
		if !matched {
			return keep, result{kind: dead, reason: reasonUnmatched}, nil
		}
		return fhir.ReferenceEdit{Reference: "Patient/" + rr.RemoteID}, ok, nil
	}
	if depth >= maxDepth {
		return logical, ok, nil
	}
	p, reason, err := w.decide(ctx, target)
	if err != nil {
		return keep, ok, err
	}
	if reason != "" {
		return logical, ok, nil
	}
	res, err := w.send(ctx, target, p, rr, false, depth+1)
	if err != nil || res.kind == transient {
		return keep, res, err
	}
	if rr, err = w.e.st.RemoteRef(ctx, w.ep.Name, typ, id); err != nil || rr == nil || rr.RemoteID == "" {
		// Not delivered (skipped, or refused: its own change records that).
		return logical, ok, err
	}
	return fhir.ReferenceEdit{Reference: rr.RemoteType + "/" + rr.RemoteID}, ok, nil
}

// pulledRemote is the EHR's own reference of a resource pulled from this
// endpoint ("" for any other).
func (w *worker) pulledRemote(rec *store.Record) string {
	info, err := readInfo(rec.Raw)
	if err != nil || !info.hasTag(PulledTagSystem, w.ep.Name) {
		return ""
	}
	res, err := fhir.ParseResource([]byte(rec.Raw))
	if err != nil {
		return ""
	}
	for _, id := range res.Identifiers() {
		if id.System == PulledSourceSystem(w.ep.Name) {
			return id.Value
		}
	}
	return ""
}

// matchPatient looks for the local Patient in the EHR by each of its
// identifiers (an MRN) but ours; the first that finds exactly one patient
// maps it (Matched: referred to, never written). A result other than ok
// is a failed search.
func (w *worker) matchPatient(ctx context.Context, rec *store.Record, rr *store.RemoteRef) (bool, result, error) {
	res, err := fhir.ParseResource([]byte(rec.Raw))
	if err != nil {
		return false, ok, nil
	}
	for _, id := range res.Identifiers() {
		if id.System == "" || id.Value == "" || id.System == w.e.system {
			continue
		}
		found, sres := w.search(ctx, "Patient", id)
		if sres.kind != delivered {
			return false, sres, nil
		}
		if len(found) != 1 {
			continue
		}
		rr.RemoteType, rr.RemoteID, rr.RemoteVersion, rr.Matched = "Patient", found[0].ID, found[0].Meta.VersionID, true
		rr.Version, rr.Updated = rec.VersionID, w.e.o.Now().UTC()
		return true, ok, w.e.st.PutRemoteRef(ctx, rr)
	}
	return false, ok, nil
}

// sessionNote is the portable form of a MedicationAdministration: the
// note of its session (mappings.SessionNoteToFHIR, a DocumentReference)
// with this dose, written by who gave it (or witnessed it), dated when it
// was given. A non-empty reason says why there is none.
func (w *worker) sessionNote(ctx context.Context, rec *store.Record) (*fhir.Resource, string) {
	m := w.e.mapper
	a, isKAP := m.AdministrationFromFHIR([]mappings.Resource{{Type: rec.Type, ID: rec.ID, JSON: []byte(rec.Raw)}})
	if !isKAP || a.SessionID == "" {
		return nil, "no portable form: not a KAP administration of a session"
	}
	enc, err := w.e.st.Current(ctx, "Encounter", a.SessionID)
	if err != nil || enc.Deleted {
		return nil, "no portable form: the session is not stored"
	}
	s, isKAP := m.SessionFromFHIR([]mappings.Resource{{Type: "Encounter", ID: enc.ID, JSON: []byte(enc.Raw)}})
	if !isKAP {
		return nil, "no portable form: the encounter is not a KAP session"
	}
	labels, err := disclosure.Labels(rec.Raw)
	if err != nil {
		return nil, "unreadable"
	}
	d := mappings.Document{ID: rec.ID, AuthorID: firstOf(a.PerformerID, a.WitnessID), Date: firstOf(a.Time, a.End, a.Start)}
	rs, err := m.SessionNoteToFHIR(d, s, []mappings.Administration{a}, nil, mappings.Labels{SubstanceUse: len(labels) > 0})
	if err != nil || len(rs) == 0 {
		return nil, "no portable form: the session note cannot be made"
	}
	res, err := fhir.ParseResource(rs[0].JSON)
	if err != nil {
		return nil, "no portable form: the session note is not valid"
	}
	return res, ""
}
