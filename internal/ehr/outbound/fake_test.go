package outbound

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeEHR is a small in-memory FHIR server standing in for an EHR: create
// (server ids, Location, ETag), read, update with If-Match, delete,
// search by identifier, and a CapabilityStatement of the types it takes.
// Faults are injected per request by the test.
type fakeEHR struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	caps      map[string][]string // type -> interactions
	resources map[string]*fakeRes // Type/id
	next      int
	log       []string // "METHOD /path" of every request
	// fault, when set, may answer a request itself (before it is applied)
	// and report true.
	fault func(w http.ResponseWriter, r *http.Request, body []byte) bool
	// dropAfter, when set and true for a request, applies the request
	// and then drops the connection without an answer.
	dropAfter func(r *http.Request) bool
	// reject answers 422 with an OperationOutcome for a body it returns
	// true for.
	reject func(typ string, body map[string]any) bool
}

type fakeRes struct {
	version int
	deleted bool
	body    map[string]any
}

func newFakeEHR(t *testing.T, caps map[string][]string) *fakeEHR {
	f := &fakeEHR{t: t, caps: caps, resources: map[string]*fakeRes{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEHR) URL() string { return f.srv.URL + "/fhir" }

func (f *fakeEHR) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r.Method+" "+strings.TrimPrefix(r.URL.Path, "/fhir"))
	if f.fault != nil && f.fault(w, r, body) {
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/")
	parts := strings.Split(path, "/")
	rec := httptest.NewRecorder()
	switch {
	case path == "metadata":
		f.metadata(rec)
	case len(parts) == 1 && r.Method == http.MethodPost:
		f.create(rec, parts[0], body)
	case len(parts) == 1 && r.Method == http.MethodGet:
		f.search(rec, parts[0], r.URL.Query().Get("identifier"))
	case len(parts) == 2 && r.Method == http.MethodGet:
		f.read(rec, parts[0], parts[1])
	case len(parts) == 2 && r.Method == http.MethodPut:
		f.update(rec, parts[0], parts[1], r.Header.Get("If-Match"), body)
	case len(parts) == 2 && r.Method == http.MethodDelete:
		f.delete(rec, parts[0], parts[1])
	default:
		outcome(rec, http.StatusNotFound, "not-found")
	}
	if f.dropAfter != nil && f.dropAfter(r) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (f *fakeEHR) metadata(w http.ResponseWriter) {
	var rs []map[string]any
	for typ, ins := range f.caps {
		var is []map[string]string
		for _, i := range append(ins, "read", "search-type") {
			is = append(is, map[string]string{"code": i})
		}
		rs = append(rs, map[string]any{"type": typ, "interaction": is, "searchParam": []map[string]string{{"name": "identifier", "type": "token"}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resourceType": "CapabilityStatement", "rest": []map[string]any{{"mode": "server", "resource": rs}}})
}

func (f *fakeEHR) takes(typ, interaction string) bool {
	for _, i := range f.caps[typ] {
		if i == interaction {
			return true
		}
	}
	return false
}

func (f *fakeEHR) create(w http.ResponseWriter, typ string, body []byte) {
	var m map[string]any
	if !f.takes(typ, "create") || json.Unmarshal(body, &m) != nil || m["resourceType"] != typ {
		outcome(w, http.StatusBadRequest, "invalid")
		return
	}
	if _, has := m["id"]; has {
		outcome(w, http.StatusBadRequest, "invalid") // a create sends no id
		return
	}
	if f.reject != nil && f.reject(typ, m) {
		outcome(w, http.StatusUnprocessableEntity, "business-rule")
		return
	}
	f.next++
	id := "r" + strconv.Itoa(f.next)
	r := &fakeRes{version: 1, body: m}
	f.resources[typ+"/"+id] = r
	f.stamp(r, id)
	w.Header().Set("Location", fmt.Sprintf("%s/%s/%s/_history/1", f.URL(), typ, id))
	w.Header().Set("ETag", `W/"1"`)
	writeJSON(w, http.StatusCreated, m)
}

func (f *fakeEHR) stamp(r *fakeRes, id string) {
	r.body["id"] = id
	meta, _ := r.body["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		r.body["meta"] = meta
	}
	meta["versionId"] = strconv.Itoa(r.version)
}

func (f *fakeEHR) read(w http.ResponseWriter, typ, id string) {
	r := f.resources[typ+"/"+id]
	if r == nil || r.deleted {
		outcome(w, http.StatusNotFound, "not-found")
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, r.version))
	writeJSON(w, http.StatusOK, r.body)
}

func (f *fakeEHR) update(w http.ResponseWriter, typ, id, ifMatch string, body []byte) {
	r := f.resources[typ+"/"+id]
	var m map[string]any
	switch {
	case !f.takes(typ, "update"), json.Unmarshal(body, &m) != nil, m["id"] != id:
		outcome(w, http.StatusBadRequest, "invalid")
		return
	case r == nil || r.deleted:
		outcome(w, http.StatusNotFound, "not-found")
		return
	case ifMatch != "" && ifMatch != fmt.Sprintf(`W/"%d"`, r.version):
		outcome(w, http.StatusPreconditionFailed, "conflict")
		return
	case f.reject != nil && f.reject(typ, m):
		outcome(w, http.StatusUnprocessableEntity, "business-rule")
		return
	}
	r.version++
	r.body = m
	f.stamp(r, id)
	w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, r.version))
	writeJSON(w, http.StatusOK, m)
}

func (f *fakeEHR) delete(w http.ResponseWriter, typ, id string) {
	r := f.resources[typ+"/"+id]
	if !f.takes(typ, "delete") {
		outcome(w, http.StatusMethodNotAllowed, "not-supported")
		return
	}
	if r != nil {
		r.deleted = true
		r.version++
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeEHR) search(w http.ResponseWriter, typ, identifier string) {
	system, value, _ := strings.Cut(identifier, "|")
	var entries []map[string]any
	for key, r := range f.resources {
		if !strings.HasPrefix(key, typ+"/") || r.deleted {
			continue
		}
		ids, _ := r.body["identifier"].([]any)
		for _, i := range ids {
			im, _ := i.(map[string]any)
			if im["system"] == system && im["value"] == value {
				entries = append(entries, map[string]any{"resource": r.body})
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries})
}

func outcome(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]any{"resourceType": "OperationOutcome", "issue": []map[string]string{{"severity": "error", "code": code}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// find returns the live resources of a type carrying our identifier of
// local Type/id.
func (f *fakeEHR) find(typ, system, local string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for key, r := range f.resources {
		if !strings.HasPrefix(key, typ+"/") || r.deleted {
			continue
		}
		ids, _ := r.body["identifier"].([]any)
		for _, i := range ids {
			im, _ := i.(map[string]any)
			if im["system"] == system && im["value"] == local {
				out = append(out, r.body)
			}
		}
	}
	return out
}

// count returns how many requests matched method and a path prefix.
func (f *fakeEHR) count(method, prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.log {
		if strings.HasPrefix(l, method+" "+prefix) {
			n++
		}
	}
	return n
}

// put stores a resource the EHR has of its own (a patient with an MRN).
func (f *fakeEHR) put(typ, id string, body map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRes{version: 1, body: body}
	f.resources[typ+"/"+id] = r
	f.stamp(r, id)
}

// get returns a stored resource (nil if none or deleted).
func (f *fakeEHR) get(typ, id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.resources[typ+"/"+id]
	if r == nil || r.deleted {
		return nil
	}
	return r.body
}
