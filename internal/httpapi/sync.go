package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr/outbound"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// The admin API of the outbound EHR sync (/admin/sync/...): plain JSON,
// errors as OperationOutcomes. Endpoints never show a secret.

const (
	appJSON         = "application/json"
	deadLetterCount = 100
	maxDeadLetters  = 1000
)

func (a *api) writeJSON(c *gin.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fault.Wrap(err, "render sync status")
	}
	c.Data(http.StatusOK, appJSON, pretty(c, b))
	return nil
}

// syncEngine is the engine, or a 404 naming the endpoint when no EHR sync
// is configured.
func (a *api) syncEngine(name string) (*outbound.Engine, error) {
	if a.Sync == nil {
		return nil, fault.New(fault.NotFound, "", "no EHR endpoint %q is configured", name)
	}
	return a.Sync, nil
}

// reloadPull makes the inbound pull follow a changed definition at once on
// this instance (the others within their reload period).
func (a *api) reloadPull(ctx context.Context) error {
	if a.Pull == nil {
		return nil
	}
	return a.Pull.Reload(ctx)
}

// syncEndpoints answers GET /admin/sync/endpoints.
func (a *api) syncEndpoints(c *gin.Context) error {
	eps := []outbound.EndpointInfo{}
	if a.Sync != nil {
		eps = a.Sync.Endpoints()
	}
	return a.writeJSON(c, map[string]any{"endpoints": eps})
}

// syncStatus answers GET /admin/sync/endpoints/{name}.
func (a *api) syncStatus(c *gin.Context) error {
	e, err := a.syncEngine(c.Param("name"))
	if err != nil {
		return err
	}
	st, err := e.Status(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return a.writeJSON(c, st)
}

// syncPutEndpoint answers PUT /admin/sync/endpoints/{name}: the endpoint
// defined from the body (a configuration file's entry, secrets as
// references), 201 when new, 200 when replaced; its worker runs at once.
func (a *api) syncPutEndpoint(c *gin.Context) error {
	e, err := a.syncEngine(c.Param("name"))
	if err != nil {
		return err
	}
	body, err := a.body(c)
	if err != nil {
		return err
	}
	info, created, err := e.PutEndpoint(c.Request.Context(), c.Param("name"), body)
	if err != nil {
		return err
	}
	if err := a.reloadPull(c.Request.Context()); err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	b, err := json.Marshal(info)
	if err != nil {
		return fault.Wrap(err, "render endpoint")
	}
	c.Data(status, appJSON, pretty(c, b))
	return nil
}

// syncDeleteEndpoint answers DELETE /admin/sync/endpoints/{name}: the
// worker stops; the cursor, id map and dead letters stay.
func (a *api) syncDeleteEndpoint(c *gin.Context) error {
	e, err := a.syncEngine(c.Param("name"))
	if err != nil {
		return err
	}
	if err := e.DeleteEndpoint(c.Request.Context(), c.Param("name")); err != nil {
		return err
	}
	if err := a.reloadPull(c.Request.Context()); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// deadLetterView is a dead letter as the API shows it.
type deadLetterView struct {
	Endpoint string          `json:"endpoint"`
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Version  int64           `json:"version"`
	Seq      int64           `json:"seq"`
	Status   int             `json:"status"`
	Reason   string          `json:"reason"`
	Outcome  json.RawMessage `json:"outcome,omitempty"`
	Time     time.Time       `json:"time"`
	State    string          `json:"state"`
	Replays  int             `json:"replays"`
	Resolved *time.Time      `json:"resolved,omitempty"`
}

func viewOf(d *store.DeadLetter) deadLetterView {
	v := deadLetterView{
		Endpoint: d.Endpoint, Type: d.Type, ID: d.LocalID, Version: d.Version, Seq: d.Seq, Status: d.Status,
		Reason: d.Reason, Time: d.Time, State: d.State, Replays: d.Replays,
	}
	if d.Outcome != "" && json.Valid([]byte(d.Outcome)) {
		v.Outcome = json.RawMessage(d.Outcome)
	}
	if !d.Resolved.IsZero() {
		v.Resolved = &d.Resolved
	}
	return v
}

// syncDeadLetters answers GET /admin/sync/endpoints/{name}/dead-letters:
// oldest first, ?state=dead|replay|resolved, _count (100, at most 1000),
// and the page token of the previous page's next.
func (a *api) syncDeadLetters(c *gin.Context) error {
	name := c.Param("name")
	e, err := a.syncEngine(name)
	if err != nil {
		return err
	}
	q := store.DeadLetterQuery{Endpoint: name, State: c.Query("state"), Limit: deadLetterCount}
	switch q.State {
	case "", store.DeadLetterDead, store.DeadLetterReplay, store.DeadLetterResolved:
	default:
		return fault.New(fault.Invalid, "state", "state must be dead, replay or resolved")
	}
	if s, ok := c.GetQuery("_count"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDeadLetters {
			return fault.New(fault.Invalid, "_count", "_count must be a number from 1 to %d", maxDeadLetters)
		}
		q.Limit = n
	}
	if p := c.Query("page"); p != "" {
		if q.AfterTime, q.AfterID, err = parsePage(p); err != nil {
			return err
		}
	}
	limit := q.Limit
	q.Limit++
	ds, err := e.DeadLetters(c.Request.Context(), q)
	if err != nil {
		return err
	}
	out := struct {
		DeadLetters []deadLetterView `json:"deadLetters"`
		Next        string           `json:"next,omitempty"`
	}{DeadLetters: []deadLetterView{}}
	if len(ds) > limit {
		ds = ds[:limit]
		last := ds[limit-1]
		out.Next = base64.RawURLEncoding.EncodeToString([]byte(last.Time.UTC().Format(time.RFC3339Nano) + "|" + last.ID))
	}
	for i := range ds {
		out.DeadLetters = append(out.DeadLetters, viewOf(&ds[i]))
	}
	return a.writeJSON(c, out)
}

func parsePage(p string) (time.Time, string, error) {
	bad := fault.New(fault.Invalid, "page", "page is not a page token of this list")
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(b), "|")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", bad
	}
	return t, id, nil
}

// deadLetterKey reads the :type/:id/:version of a dead letter's path.
func deadLetterKey(c *gin.Context) (typ, id string, vid int64, err error) {
	typ, id = c.Param("type"), c.Param("id")
	if !fhir.IsResourceType(typ) {
		return "", "", 0, fault.New(fault.NotFound, "", "unknown resource type %q", typ)
	}
	if !fhir.ValidID(id) {
		return "", "", 0, fault.New(fault.NotFound, "", "no dead letter with that id")
	}
	vid, perr := strconv.ParseInt(c.Param("version"), 10, 64)
	if perr != nil || vid < 1 {
		return "", "", 0, fault.New(fault.NotFound, "", "the version must be a positive number")
	}
	return typ, id, vid, nil
}

// syncDeadLetter answers GET .../dead-letters/{type}/{id}/{version}.
func (a *api) syncDeadLetter(c *gin.Context) error {
	return a.onDeadLetter(c, (*outbound.Engine).DeadLetter)
}

// syncReplay answers POST .../dead-letters/{type}/{id}/{version}/replay:
// the letter, now waiting for its endpoint's worker to deliver the
// resource again.
func (a *api) syncReplay(c *gin.Context) error {
	return a.onDeadLetter(c, (*outbound.Engine).Replay)
}

func (a *api) onDeadLetter(c *gin.Context, op func(*outbound.Engine, context.Context, string, string, string, int64) (*store.DeadLetter, error)) error {
	name := c.Param("name")
	e, err := a.syncEngine(name)
	if err != nil {
		return err
	}
	typ, id, vid, err := deadLetterKey(c)
	if err != nil {
		return err
	}
	d, err := op(e, c.Request.Context(), name, typ, id, vid)
	if err != nil {
		return err
	}
	return a.writeJSON(c, viewOf(d))
}
