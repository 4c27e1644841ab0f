package inbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// maxBody bounds one answer of the EHR.
const maxBody = 64 << 20

// httpError is an EHR answer that was not a success; only the status is
// kept (a body may hold PHI).
type httpError struct{ status int }

func (e *httpError) Error() string { return "the EHR answered " + strconv.Itoa(e.status) }

// errorClass is the state's lastError: the class and status, never
// content.
func errorClass(err error) string {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return "http " + strconv.Itoa(he.status)
	case fault.As(err).Kind == fault.Unavailable:
		return "store unavailable"
	}
	return "request failed"
}

// bundle is what the pull reads of a searchset.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

// pullType reads the pages of typ changed since its cursor.
func (w *worker) pullType(ctx context.Context, typ string) error {
	q := url.Values{"_sort": {"_lastUpdated"}, "_count": {strconv.Itoa(w.p.o.Count)}}
	// ge, not gt: a resource changed in the same instant as the last one
	// pulled after that page was read is not missed; the ones read again
	// are unchanged, so nothing is written for them.
	if since := w.state.Cursor(typ); since != "" {
		q.Set("_lastUpdated", "ge"+since)
	}
	next := w.ep.BaseURL + "/" + typ + "?" + q.Encode()
	for next != "" {
		var b bundle
		if err := w.get(ctx, next, &b); err != nil {
			return err
		}
		if b.ResourceType != "Bundle" {
			return fmt.Errorf("the EHR's %s search did not answer a Bundle", typ)
		}
		newest, newestAt := w.state.Cursor(typ), parseInstant(w.state.Cursor(typ))
		for _, e := range b.Entry {
			if e.Search.Mode != "" && e.Search.Mode != "match" {
				continue // _include'd and outcome entries
			}
			lu, err := w.upsert(ctx, typ, e.Resource, 0)
			if err != nil {
				return err
			}
			if t := parseInstant(lu); !t.IsZero() && t.After(newestAt) {
				newest, newestAt = lu, t
			}
		}
		w.state.SetCursor(typ, newest)
		if _, err := w.save(ctx); err != nil {
			return err
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next != "" && !strings.HasPrefix(next, w.ep.BaseURL+"/") {
			// The client sends the token to the base's origin only; a
			// next link elsewhere is not followed.
			return fmt.Errorf("the EHR's next link leaves its base URL")
		}
	}
	return nil
}

// get reads a FHIR JSON answer into out.
func (w *worker) get(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &httpError{status: resp.StatusCode}
	}
	return json.Unmarshal(data, out)
}

// The results counted in kapfhir_sync_pulled_total.
const (
	resultWritten   = "written"
	resultUnchanged = "unchanged"
	resultSkipped   = "skipped"
)

// upsert writes the EHR's resource raw (of type typ) locally and returns
// its meta.lastUpdated. A resource that cannot be taken is skipped
// (counted) without stopping the pull. depth counts the reference targets
// pulled on the way (see reference).
func (w *worker) upsert(ctx context.Context, typ string, raw json.RawMessage, depth int) (string, error) {
	res, err := fhir.ParseResource(raw)
	if err != nil || res.Type() != typ || !fhir.ValidID(res.ID()) {
		w.p.metrics.SyncPulled(w.ep.Name, resultSkipped)
		return "", nil
	}
	var m struct {
		Meta struct {
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(raw, &m)
	result, err := w.write(ctx, res, depth)
	if err != nil {
		return "", err
	}
	w.p.metrics.SyncPulled(w.ep.Name, result)
	return m.Meta.LastUpdated, nil
}

// write applies the conflict rules (docs/ehr-sync.md, "Inbound") and
// writes res, the EHR's resource.
func (w *worker) write(ctx context.Context, res *fhir.Resource, depth int) (string, error) {
	typ, remote := res.Type(), res.ID()
	for _, id := range res.Identifiers() {
		if id.System == w.p.ours {
			return resultSkipped, nil // a resource we sent: ours is the original
		}
	}
	st := w.p.st
	ref, err := st.PulledRef(ctx, w.ep.Name, typ, remote)
	if err != nil {
		return "", err
	}
	if ref != nil && ref.Linked {
		return resultSkipped, nil
	}
	localID := LocalID(w.ep.Name, typ, remote)
	if ref == nil && typ == "Patient" {
		linked, err := w.linkPatient(ctx, res, remote)
		if err != nil || linked {
			return resultSkipped, err
		}
	}
	res.RemoveID()
	res.RemoveMeta("versionId", "lastUpdated", "source")
	res.AddTag(outbound.PulledTagSystem, w.ep.Name)
	res.AddIdentifier(fhir.Identifier{System: outbound.PulledSourceSystem(w.ep.Name), Value: store.Key(typ, remote)})
	if err := res.EditReferences(func(_, r string) (fhir.ReferenceEdit, error) {
		return w.reference(ctx, r, depth)
	}); err != nil {
		return "", err
	}
	cur, err := st.Current(ctx, typ, localID)
	var ifMatch *int64
	switch {
	case fault.Is(err, fault.NotFound):
	case err != nil:
		return "", err
	case cur.Deleted:
		return resultSkipped, nil // deleted here: not brought back
	case !pulledFrom(cur.Raw, w.ep.Name):
		return resultSkipped, nil // changed here without the marker: ours now
	default:
		ifMatch = &cur.VersionID
	}
	res.SetID(localID)
	out, err := w.p.svc.Update(ctx, typ, localID, res, ifMatch)
	if fault.Is(err, fault.PreconditionFailed) {
		// Changed here between the read and the write: the next round
		// (ge the cursor, or a later EHR version) judges it again.
		return resultSkipped, nil
	}
	if fault.As(err).Kind == fault.Unprocessable || fault.As(err).Kind == fault.Invalid {
		return resultSkipped, nil
	}
	if err != nil {
		return "", err
	}
	if ref == nil {
		if err := st.PutPulledRef(ctx, &store.PulledRef{Endpoint: w.ep.Name, Type: typ, RemoteID: remote, LocalID: localID, Updated: w.p.o.Now()}); err != nil {
			return "", err
		}
	}
	if out.NoOp {
		return resultUnchanged, nil
	}
	return resultWritten, nil
}

// linkPatient looks for a local Patient with one of the EHR patient's
// identifiers (an MRN). Exactly one that was not pulled from this
// endpoint is linked: references to the EHR's patient then point to it,
// and it is never overwritten. A search per new patient only.
func (w *worker) linkPatient(ctx context.Context, res *fhir.Resource, remote string) (bool, error) {
	for _, id := range res.Identifiers() {
		if id.System == "" || id.Value == "" || strings.HasPrefix(id.System, "urn:kapfhir:") {
			continue
		}
		c, err := search.ParseCriteria(w.p.reg, "Patient", url.Values{"identifier": {id.System + "|" + id.Value}}.Encode())
		if err != nil {
			continue // a value the token search cannot take
		}
		m, err := w.p.svc.Match(ctx, c)
		if err != nil {
			return false, err
		}
		if len(m) != 1 || pulledFrom(m[0].Raw, w.ep.Name) {
			continue
		}
		return true, w.p.st.PutPulledRef(ctx, &store.PulledRef{Endpoint: w.ep.Name, Type: "Patient", RemoteID: remote,
			LocalID: m[0].ID, Linked: true, Updated: w.p.o.Now()})
	}
	return false, nil
}

// maxDepth bounds how deep reference targets are pulled ahead.
const maxDepth = 2

// reference rewrites a reference of a pulled resource: a target pulled
// (or linked) before becomes its local reference; a target of a pulled
// type not pulled yet is read from the EHR and pulled first; anything
// else becomes a logical reference by the target's source identifier.
// Contained, absolute (elsewhere) and urn: references stay.
func (w *worker) reference(ctx context.Context, r string, depth int) (fhir.ReferenceEdit, error) {
	keep := fhir.ReferenceEdit{Reference: r}
	rel, ok := strings.CutPrefix(r, w.ep.BaseURL+"/")
	if !ok {
		rel = r
	}
	typ, id, ok := strings.Cut(rel, "/")
	if !ok || !fhir.IsResourceType(typ) {
		return keep, nil
	}
	id, _, _ = strings.Cut(id, "/") // a version-specific reference names the resource
	if !fhir.ValidID(id) {
		return keep, nil
	}
	ref, err := w.p.st.PulledRef(ctx, w.ep.Name, typ, id)
	if err != nil {
		return keep, err
	}
	if ref == nil && depth < maxDepth && slices.Contains(w.ep.Pull.Types, typ) {
		var raw json.RawMessage
		err := w.get(ctx, w.ep.BaseURL+"/"+typ+"/"+id, &raw)
		var he *httpError
		if err != nil && !errors.As(err, &he) {
			return keep, err
		}
		if err == nil {
			if _, err := w.upsert(ctx, typ, raw, depth+1); err != nil {
				return keep, err
			}
			if ref, err = w.p.st.PulledRef(ctx, w.ep.Name, typ, id); err != nil {
				return keep, err
			}
		}
	}
	if ref != nil {
		return fhir.ReferenceEdit{Reference: store.Key(typ, ref.LocalID)}, nil
	}
	return fhir.ReferenceEdit{Logical: &fhir.Identifier{System: outbound.PulledSourceSystem(w.ep.Name), Value: store.Key(typ, id)}}, nil
}

// LocalID is the local id of the EHR's Type/id pulled from endpoint: the
// same in every instance, so concurrent pulls write one resource.
func LocalID(endpoint, typ, remoteID string) string {
	sum := sha256.Sum256([]byte(store.PulledRefID(endpoint, typ, remoteID)))
	return "ehr-" + hex.EncodeToString(sum[:16])
}

// pulledFrom reports whether a stored version carries the pulled-from
// marker of endpoint.
func pulledFrom(raw, endpoint string) bool {
	var m struct {
		Meta struct {
			Tag []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"tag"`
		} `json:"meta"`
	}
	if json.Unmarshal([]byte(raw), &m) != nil {
		return false
	}
	for _, t := range m.Meta.Tag {
		if t.System == outbound.PulledTagSystem && t.Code == endpoint {
			return true
		}
	}
	return false
}

func parseInstant(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
