package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/store"
)

// result is what one delivery attempt of a change came to.
type result struct {
	kind resultKind
	// reason says why a change was skipped or dead-lettered (a class,
	// never content).
	reason string
	// status is the EHR's HTTP status (0: no answer); outcome its
	// OperationOutcome; retryAfter its Retry-After.
	status     int
	outcome    []byte
	retryAfter time.Duration
}

type resultKind int

const (
	delivered resultKind = iota
	skipped
	dead
	transient // retried
)

func skip(reason string) result { return result{kind: skipped, reason: reason} }

// Dead-letter reasons.
const (
	reasonValidation = "validation" // 400, 422
	reasonConflict   = "conflict"   // 409, 412 on a version the EHR changed
	reasonAuth       = "auth"       // 401, 403
	reasonNotFound   = "not-found"  // 404, 410 on an update
	reasonRejected   = "rejected"   // any other 4xx
	reasonDuplicate  = "duplicate"  // several resources carry our identifier
	reasonUnmatched  = "patient-unmatched"
	reasonExhausted  = "exhausted" // transient failures for longer than GiveUp
)

// maxBody bounds what is read of an EHR's answer.
const maxBody = 1 << 20

// deliverChange delivers one change, retrying transient failures, until
// it is delivered, skipped or dead-lettered. It returns an error only
// when the worker must stop (store failure, lost lease, shutdown).
func (w *worker) deliverChange(ctx context.Context, rec *store.Record) error {
	for {
		res, err := w.attempt(ctx, rec, false)
		if err != nil {
			return err
		}
		if res.kind != transient {
			return w.settle(ctx, rec, res)
		}
		w.e.metrics.SyncFailed(w.ep.Name)
		now := w.e.o.Now()
		if w.state.FailingSince.IsZero() {
			w.state.FailingSince = now
		}
		w.state.Attempts++
		w.state.LastError = fmt.Sprintf("transient: HTTP %d", res.status)
		if res.status == 0 {
			w.state.LastError = "transient: no answer"
		}
		if now.Sub(w.state.FailingSince) >= w.e.o.GiveUp {
			res.kind, res.reason = dead, reasonExhausted
			return w.settle(ctx, rec, res)
		}
		w.reportLag(ctx)
		wait := w.backoff(w.state.Attempts, res.retryAfter)
		if _, err := w.save(ctx, rec.Seq, wait); err != nil {
			return err
		}
		if err := w.e.o.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// delivered counts a resource delivered and records its disclosure to
// the endpoint: one AuditEvent per resource (Options.Audit).
func (w *worker) delivered(ref string, deleted bool) {
	w.e.metrics.SyncDelivered(w.ep.Name)
	action := "R"
	if deleted {
		action = "D"
	}
	w.e.o.Audit.Record(audit.Event{Kind: audit.Disclosure, Action: action, Recorded: w.e.o.Now(),
		Destination: w.ep.Name, Entities: audit.Resource(ref)})
}

// settle records a final result: the dead letter, metrics and status.
func (w *worker) settle(ctx context.Context, rec *store.Record, res result) error {
	switch res.kind {
	case delivered:
		w.delivered(rec.Type+"/"+rec.ID+"/_history/"+strconv.FormatInt(rec.VersionID, 10), rec.Deleted)
		w.state.LastSuccess = w.e.o.Now()
	case dead:
		if err := w.deadLetter(ctx, rec, res); err != nil {
			return err
		}
	case skipped:
		w.countSkip(res.reason)
	}
	w.state.Attempts, w.state.FailingSince = 0, time.Time{}
	return nil
}

// countSkip records a skip's reason in the endpoint's state (saved with
// the cursor).
func (w *worker) countSkip(reason string) {
	for i := range w.state.Skipped {
		if w.state.Skipped[i].Reason == reason {
			w.state.Skipped[i].Count++
			return
		}
	}
	w.state.Skipped = append(w.state.Skipped, store.SkipCount{Reason: reason, Count: 1})
}

func (w *worker) deadLetter(ctx context.Context, rec *store.Record, res result) error {
	d := &store.DeadLetter{
		Endpoint: w.ep.Name, Type: rec.Type, LocalID: rec.ID, Version: rec.VersionID, Seq: rec.Seq,
		Status: res.status, Reason: res.reason, Outcome: string(res.outcome), Time: w.e.o.Now().UTC(),
		State: store.DeadLetterDead,
	}
	if old, err := w.e.st.DeadLetter(ctx, store.DeadLetterID(d.Endpoint, d.Type, d.LocalID, d.Version)); err == nil {
		d.Replays = old.Replays
	}
	if err := w.e.st.PutDeadLetter(ctx, d); err != nil {
		return err
	}
	w.e.metrics.SyncDeadLettered(w.ep.Name)
	w.state.LastError = fmt.Sprintf("dead letter: %s, HTTP %d", res.reason, res.status)
	return nil
}

// backoff is the wait before attempt n+1: the EHR's Retry-After when it
// gave one, else full jitter over BackoffBase·2^(n-1); both capped at
// BackoffMax.
func (w *worker) backoff(n int, retryAfter time.Duration) time.Duration {
	o := w.e.o
	if retryAfter > 0 {
		return min(retryAfter, o.BackoffMax)
	}
	ceiling := float64(o.BackoffBase) * math.Pow(2, float64(min(n-1, 30)))
	ceiling = min(ceiling, float64(o.BackoffMax))
	return time.Duration(o.Jitter() * ceiling)
}

// attempt makes one delivery attempt of rec; force (a replay) overwrites
// a version the EHR changed meanwhile.
func (w *worker) attempt(ctx context.Context, rec *store.Record, force bool) (result, error) {
	if !w.sends(rec.Type) {
		// Most changes: no store or EHR request at all.
		return skip("type not sent"), nil
	}
	// The save renews the lease and fences: a worker that lost it stops
	// before sending anything.
	if _, err := w.save(ctx, rec.Seq, 0); err != nil {
		return result{}, err
	}
	w.e.metrics.SetSyncInFlight(w.ep.Name, 1)
	defer w.e.metrics.SetSyncInFlight(w.ep.Name, 0)
	ref, err := w.e.st.RemoteRef(ctx, w.ep.Name, rec.Type, rec.ID)
	if err != nil {
		return result{}, err
	}
	if ref != nil && ref.Version >= rec.VersionID {
		return skip("already delivered"), nil
	}
	if rec.Deleted {
		return w.remove(ctx, rec, ref)
	}
	p, reason, err := w.decide(ctx, rec)
	if err != nil || reason != "" {
		return skip(reason), err
	}
	return w.send(ctx, rec, p, ref, force, 0)
}

// send creates or updates the remote resource of rec as p plans; depth
// counts the dependencies being delivered first.
func (w *worker) send(ctx context.Context, rec *store.Record, p plan, ref *store.RemoteRef, force bool, depth int) (result, error) {
	if ref == nil {
		ref = &store.RemoteRef{Endpoint: w.ep.Name, Type: rec.Type, LocalID: rec.ID, RemoteType: p.remoteType}
	}
	if ref.Matched {
		return skip("the EHR's own resource"), nil
	}
	if c := w.profile[p.remoteType]; ref.RemoteID == "" && ref.Attempted > 0 && (len(c.SearchParams) == 0 || c.Searches("identifier")) {
		// A create went out and its answer was lost: look for it first
		// (unless the EHR says it cannot search the type by identifier:
		// then it is created again, and may be there twice).
		res, found, err := w.findOurs(ctx, ref)
		if err != nil || res.kind != delivered {
			return res, err
		}
		if found != nil {
			ref.RemoteID, ref.RemoteVersion = found.ID, found.Meta.VersionID
			if ref.Attempted == rec.VersionID {
				return w.done(ctx, ref, rec.VersionID, ref.RemoteVersion)
			}
		}
	}
	if ref.RemoteID == "" && p.remoteType == "Patient" {
		// Never create a second record of a patient the EHR knows.
		matched, res, err := w.matchPatient(ctx, rec, ref)
		if err != nil || res.kind != delivered {
			return res, err
		}
		if matched {
			return skip("matched the EHR's own patient"), nil
		}
	}
	body, res, err := w.payload(ctx, rec, p, ref.RemoteID, depth)
	if err != nil || res.kind != delivered {
		return res, err
	}
	if ref.RemoteID == "" {
		if !w.profile[p.remoteType].Create {
			return skip("the EHR does not take creates of " + p.remoteType), nil
		}
		return w.create(ctx, rec, ref, body)
	}
	if !w.profile[p.remoteType].Update {
		return skip("the EHR does not take updates of " + p.remoteType), nil
	}
	return w.update(ctx, rec, ref, body, force)
}

// create POSTs a new resource, after recording the attempt: if its answer
// is lost, the next attempt searches for it by our identifier.
func (w *worker) create(ctx context.Context, rec *store.Record, ref *store.RemoteRef, body []byte) (result, error) {
	ref.Attempted = rec.VersionID
	ref.Updated = w.e.o.Now().UTC()
	if err := w.e.st.PutRemoteRef(ctx, ref); err != nil {
		return result{}, err
	}
	resp, res := w.do(ctx, http.MethodPost, w.ep.BaseURL+"/"+ref.RemoteType, body, "")
	if resp == nil {
		return res, nil
	}
	if resp.status == http.StatusAccepted {
		// Accepted for review (US Core vitals-write): no id yet. The
		// version counts as delivered; Attempted stays, so a later version
		// first looks for it by identifier.
		ref.Version = rec.VersionID
		return result{kind: delivered}, w.e.st.PutRemoteRef(ctx, ref)
	}
	id, vid := resp.location(ref.RemoteType)
	if id == "" {
		id = resp.body.ID
	}
	if id == "" {
		return result{kind: dead, reason: reasonRejected, status: resp.status}, nil
	}
	ref.RemoteID = id
	return w.done(ctx, ref, rec.VersionID, firstOf(vid, resp.version()))
}

// update PUTs a new version with If-Match on the remote version we last
// wrote. On a conflict it reads the remote resource: carrying our version
// tag, it is this very write whose answer was lost; else someone changed
// it in the EHR: a dead letter, unless force (a replay) says ours wins.
func (w *worker) update(ctx context.Context, rec *store.Record, ref *store.RemoteRef, body []byte, force bool) (result, error) {
	url := w.ep.BaseURL + "/" + ref.RemoteType + "/" + ref.RemoteID
	resp, res := w.do(ctx, http.MethodPut, url, body, ref.RemoteVersion)
	if resp == nil && (res.status == http.StatusConflict || res.status == http.StatusPreconditionFailed) {
		cur, cres := w.do(ctx, http.MethodGet, url, nil, "")
		if cur == nil {
			return cres, nil
		}
		if cur.body.hasTag(versionTagSystem, strconv.FormatInt(rec.VersionID, 10)) {
			return w.done(ctx, ref, rec.VersionID, cur.version())
		}
		if !force {
			return res, nil
		}
		resp, res = w.do(ctx, http.MethodPut, url, body, cur.version())
	}
	if resp == nil {
		return res, nil
	}
	return w.done(ctx, ref, rec.VersionID, resp.version())
}

// done records a delivered version in the id map.
func (w *worker) done(ctx context.Context, ref *store.RemoteRef, vid int64, remoteVersion string) (result, error) {
	ref.Version, ref.RemoteVersion, ref.Attempted, ref.Deleted = vid, remoteVersion, 0, false
	ref.Updated = w.e.o.Now().UTC()
	if err := w.e.st.PutRemoteRef(ctx, ref); err != nil {
		return result{}, err
	}
	return result{kind: delivered}, nil
}

// remove deletes the remote resource of a deleted local one, where the
// EHR takes deletes.
func (w *worker) remove(ctx context.Context, rec *store.Record, ref *store.RemoteRef) (result, error) {
	if !w.sends(rec.Type) {
		return skip("type not sent"), nil
	}
	if ref == nil || ref.RemoteID == "" || ref.Matched {
		return skip("never delivered"), nil
	}
	if !w.profile[ref.RemoteType].Delete {
		return skip("the EHR does not take deletes of " + ref.RemoteType), nil
	}
	resp, res := w.do(ctx, http.MethodDelete, w.ep.BaseURL+"/"+ref.RemoteType+"/"+ref.RemoteID, nil, "")
	if resp == nil && res.status != http.StatusNotFound && res.status != http.StatusGone {
		return res, nil
	}
	ref.Deleted, ref.Version, ref.Updated = true, rec.VersionID, w.e.o.Now().UTC()
	if err := w.e.st.PutRemoteRef(ctx, ref); err != nil {
		return result{}, err
	}
	return result{kind: delivered}, nil
}

// findOurs searches the EHR for the resource carrying our identifier of
// ref's local resource. No match: a delivered result with found nil (go
// on and create); several: a dead letter.
func (w *worker) findOurs(ctx context.Context, ref *store.RemoteRef) (result, *remoteResource, error) {
	found, res := w.search(ctx, ref.RemoteType, fhir.Identifier{System: w.e.system, Value: store.Key(ref.Type, ref.LocalID)})
	if res.kind != delivered {
		return res, nil, nil
	}
	switch len(found) {
	case 0:
		return result{kind: delivered}, nil, nil
	case 1:
		return result{kind: delivered}, &found[0], nil
	}
	return result{kind: dead, reason: reasonDuplicate, status: http.StatusOK}, nil, nil
}

// search reads [base]/Type?identifier=system|value and keeps the resources
// that really carry the identifier (a server that ignores the parameter
// returns everything).
func (w *worker) search(ctx context.Context, typ string, id fhir.Identifier) ([]remoteResource, result) {
	q := url.Values{"identifier": {id.System + "|" + id.Value}}
	resp, res := w.do(ctx, http.MethodGet, w.ep.BaseURL+"/"+typ+"?"+q.Encode(), nil, "")
	if resp == nil {
		return nil, res
	}
	var out []remoteResource
	for _, e := range resp.body.Entry {
		if e.Resource.ResourceType == typ && e.Resource.hasIdentifier(id) {
			out = append(out, e.Resource)
		}
	}
	return out, result{kind: delivered}
}

// response is a successful answer of the EHR.
type response struct {
	status int
	header http.Header
	body   remoteResource
}

// remoteResource is what the engine reads of a resource or Bundle the EHR
// returns.
type remoteResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string `json:"versionId"`
		Tag       []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"tag"`
	} `json:"meta"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Entry []struct {
		Resource remoteResource `json:"resource"`
	} `json:"entry"`
}

func (r *remoteResource) hasTag(system, code string) bool {
	for _, t := range r.Meta.Tag {
		if t.System == system && t.Code == code {
			return true
		}
	}
	return false
}

func (r *remoteResource) hasIdentifier(id fhir.Identifier) bool {
	for _, i := range r.Identifier {
		if i.System == id.System && i.Value == id.Value {
			return true
		}
	}
	return false
}

// version is the remote version of a write's answer: the ETag, else the
// body's meta.versionId.
func (r *response) version() string {
	if v := parseETag(r.header.Get("ETag")); v != "" {
		return v
	}
	return r.body.Meta.VersionID
}

// location reads id and version from a Location (or Content-Location)
// [base]/Type/id/_history/vid.
func (r *response) location(typ string) (id, vid string) {
	loc := firstOf(r.header.Get("Location"), r.header.Get("Content-Location"))
	if u, err := url.Parse(loc); err == nil {
		loc = u.Path
	}
	parts := strings.Split(strings.Trim(loc, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] == typ {
			id = parts[i+1]
			if i+3 < len(parts) && parts[i+2] == "_history" {
				vid = parts[i+3]
			}
			return id, vid
		}
	}
	return "", ""
}

func parseETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// do sends one request. A 2xx answer is returned; anything else is a
// result: transient (network, 408, 429, 5xx) or dead with the EHR's
// OperationOutcome.
func (w *worker) do(ctx context.Context, method, u string, body []byte, ifMatch string) (*response, result) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, result{kind: dead, reason: reasonRejected}
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", `W/"`+ifMatch+`"`)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, result{kind: transient}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The connection dropped under the answer: the outcome is unknown.
		return nil, result{kind: transient, status: resp.StatusCode}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		out := &response{status: resp.StatusCode, header: resp.Header}
		_ = json.Unmarshal(data, &out.body) // a 201 may have no body
		return out, result{}
	}
	return nil, classify(resp, data, w.e.o.Now())
}

// classify turns a failed answer into a result (mapping spec §15.4).
func classify(resp *http.Response, body []byte, now time.Time) result {
	res := result{status: resp.StatusCode, outcome: operationOutcome(body)}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500:
		res.kind, res.retryAfter = transient, retryAfter(resp.Header.Get("Retry-After"), now)
	case s == http.StatusBadRequest || s == http.StatusUnprocessableEntity:
		res.kind, res.reason = dead, reasonValidation
	case s == http.StatusConflict || s == http.StatusPreconditionFailed:
		res.kind, res.reason = dead, reasonConflict
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		res.kind, res.reason = dead, reasonAuth
	case s == http.StatusNotFound || s == http.StatusGone:
		res.kind, res.reason = dead, reasonNotFound
	default:
		res.kind, res.reason = dead, reasonRejected
	}
	return res
}

// operationOutcome keeps a body that is an OperationOutcome.
func operationOutcome(body []byte) []byte {
	var probe struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(body, &probe) != nil || probe.ResourceType != "OperationOutcome" {
		return nil
	}
	return body
}

// retryAfter reads Retry-After: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
