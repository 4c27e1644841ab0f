package outbound

import (
	"context"
	"time"

	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// EndpointInfo is an endpoint as the admin API shows it: never a secret,
// only the references secrets are read from.
type EndpointInfo struct {
	Name string `json:"name"`
	// Source is "file" (KAPFHIR_EHR_CONFIG) or "api" (PUT
	// /admin/sync/endpoints/{name}).
	Source    string   `json:"source"`
	BaseURL   string   `json:"baseUrl"`
	Auth      string   `json:"auth"`
	Types     []string `json:"types"`
	KAPOnly   bool     `json:"kapOnly"`
	Part2     string   `json:"part2"`
	Recipient string   `json:"recipient,omitempty"`
	// Secrets are the secret references by field, such as
	// "auth.token": "env:EPIC_TOKEN".
	Secrets map[string]string `json:"secrets,omitempty"`
}

func infoOf(ep ehr.Endpoint) EndpointInfo {
	i := EndpointInfo{
		Name: ep.Name, Source: string(ep.Source), BaseURL: ep.BaseURL, Auth: string(ep.Auth.Type), Types: append([]string{}, ep.Send.Types...),
		KAPOnly: ep.Send.KAPOnly, Part2: string(ep.Send.Part2), Recipient: ep.Send.Recipient,
	}
	for field, ref := range map[string]string{"auth.token": ep.Auth.TokenRef, "auth.privateKey": ep.Auth.PrivateKeyRef} {
		if ref != "" {
			if i.Secrets == nil {
				i.Secrets = map[string]string{}
			}
			i.Secrets[field] = ref
		}
	}
	return i
}

// Endpoints lists the endpoints this instance runs.
func (e *Engine) Endpoints() []EndpointInfo {
	ws := e.current()
	out := make([]EndpointInfo, 0, len(ws))
	for _, w := range ws {
		out = append(out, infoOf(w.ep))
	}
	return out
}

// Status is the delivery state of one endpoint, read from the store (so
// any instance answers for the one delivering).
type Status struct {
	Endpoint string `json:"endpoint"`
	// Cursor is the last change delivered, skipped or dead-lettered; Head
	// the last change recorded. Pending = Head - Cursor (changes of every
	// type: those the endpoint is not sent are skipped on the way).
	Cursor  int64 `json:"cursor"`
	Head    int64 `json:"head"`
	Pending int64 `json:"pending"`
	// LagSeconds is the age of the first change after the cursor (0 when
	// caught up).
	LagSeconds float64 `json:"lagSeconds"`
	// Held: an instance holds the lease; InFlight: it is delivering a
	// change (0 or 1); Failed: failed attempts of that change so far.
	Held         bool       `json:"held"`
	InFlight     int        `json:"inFlight"`
	Failed       int        `json:"failed"`
	FailingSince *time.Time `json:"failingSince,omitempty"`
	DeadLettered int64      `json:"deadLettered"`
	LastSuccess  *time.Time `json:"lastSuccess,omitempty"`
	LastError    string     `json:"lastError,omitempty"`
	// Skipped counts the changes not sent, by reason (the send policy,
	// the consent rule, what the EHR takes, already delivered).
	Skipped []store.SkipCount `json:"skipped"`
}

// Status reads an endpoint's status; a fault.NotFound error for an
// endpoint that is not configured.
func (e *Engine) Status(ctx context.Context, name string) (*Status, error) {
	if e.worker(name) == nil {
		return nil, notConfigured(name)
	}
	st := &Status{Endpoint: name, Skipped: []store.SkipCount{}}
	s, err := e.st.SyncEndpointState(ctx, name)
	if err != nil && fault.As(err).Kind != fault.NotFound {
		return nil, err
	}
	now := e.o.Now()
	if s != nil {
		st.Cursor, st.Failed, st.LastError = s.Cursor, s.Attempts, s.LastError
		st.Held = s.Owner != "" && s.Lease.After(now)
		if st.Held && s.InFlight > s.Cursor {
			st.InFlight = 1
		}
		st.FailingSince, st.LastSuccess = timeOrNil(s.FailingSince), timeOrNil(s.LastSuccess)
		if s.Skipped != nil {
			st.Skipped = s.Skipped
		}
	}
	if st.Head, err = e.st.LastSeq(ctx); err != nil {
		return nil, err
	}
	st.Pending = max(st.Head-st.Cursor, 0)
	lag, _, err := lagOf(ctx, e.st, st.Cursor, now)
	if err != nil {
		return nil, err
	}
	st.LagSeconds = lag.Seconds()
	if st.DeadLettered, err = e.st.CountDeadLetters(ctx, name, store.DeadLetterDead); err != nil {
		return nil, err
	}
	return st, nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func notConfigured(name string) error {
	return fault.New(fault.NotFound, "", "no EHR endpoint %q is configured", name)
}

// DeadLetters lists an endpoint's dead letters in a state ("": all),
// oldest first, limit after the cursor (the Time and ID of the last one
// of the previous page).
func (e *Engine) DeadLetters(ctx context.Context, q store.DeadLetterQuery) ([]store.DeadLetter, error) {
	if e.worker(q.Endpoint) == nil {
		return nil, notConfigured(q.Endpoint)
	}
	return e.st.DeadLetters(ctx, q)
}

// DeadLetter reads one dead letter of an endpoint.
func (e *Engine) DeadLetter(ctx context.Context, endpoint, typ, id string, vid int64) (*store.DeadLetter, error) {
	if e.worker(endpoint) == nil {
		return nil, notConfigured(endpoint)
	}
	return e.st.DeadLetter(ctx, store.DeadLetterID(endpoint, typ, id, vid))
}

// Replay asks the endpoint's worker to deliver a dead-lettered resource
// again, as it is now (its current version: a newer one may have been
// delivered since, or the mapping fixed); an update the EHR refused as a
// conflict then overwrites the EHR's version. The worker takes it up on
// its next step; the letter says "replay" until then.
func (e *Engine) Replay(ctx context.Context, endpoint, typ, id string, vid int64) (*store.DeadLetter, error) {
	if e.worker(endpoint) == nil {
		return nil, notConfigured(endpoint)
	}
	return e.st.RequestReplay(ctx, store.DeadLetterID(endpoint, typ, id, vid))
}

// replays delivers the dead letters waiting for replay (the worker holds
// the lease); n is the count of requests the endpoint's state showed.
func (w *worker) replays(ctx context.Context, n int64) error {
	ds, err := w.e.st.DeadLetters(ctx, store.DeadLetterQuery{Endpoint: w.ep.Name, State: store.DeadLetterReplay, Limit: 100})
	if err != nil {
		return err
	}
	taken := n
	for i := range ds {
		d := &ds[i]
		res, err := w.replay(ctx, d)
		if err != nil {
			return err
		}
		if res.kind == transient {
			// Left for the next step, with the rest.
			taken = int64(i)
			break
		}
		d.Replays++
		if res.kind == dead {
			d.State, d.Status, d.Reason, d.Outcome, d.Time = store.DeadLetterDead, res.status, res.reason, string(res.outcome), w.e.o.Now().UTC()
		} else {
			d.State, d.Resolved = store.DeadLetterResolved, w.e.o.Now().UTC()
		}
		if err := w.e.st.PutDeadLetter(ctx, d); err != nil {
			return err
		}
		if res.kind == delivered {
			w.delivered(d.Type+"/"+d.LocalID, false) // its current version
		}
	}
	return w.e.st.TakeReplays(ctx, w.ep.Name, taken)
}

// replay makes one attempt at delivering the current version of a dead
// letter's resource, forcing past a conflict.
func (w *worker) replay(ctx context.Context, d *store.DeadLetter) (result, error) {
	rec, err := w.e.st.Current(ctx, d.Type, d.LocalID)
	if fault.As(err).Kind == fault.NotFound {
		return skip("gone"), nil
	}
	if err != nil {
		return result{}, err
	}
	return w.attempt(ctx, rec, true)
}
