package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/bulkexport"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// exportOptions make exports quick and split them: two resources per
// batch and small chunks, so that files span several chunks and batches.
var exportOptions = bulkexport.Options{Poll: 20 * time.Millisecond, Settle: time.Millisecond, Pause: time.Millisecond, Batch: 2, ChunkBytes: 600}

const async = "respond-async"

// exportData are the resources of the export tests, PUT with these ids:
// three patients, their observations and an encounter (in the Patient
// compartment), an organization and a practitioner (not), a group of two
// patients. Decimals and a primitive extension check bytes are exact.
var exportData = []struct{ typ, id, body string }{
	{"Organization", "org1", `{"resourceType":"Organization","id":"org1","name":"Clinic"}`},
	{"Practitioner", "pr1", `{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Doc"}]}`},
	{"Patient", "p1", `{"resourceType":"Patient","id":"p1","birthDate":"1980-05-17","_birthDate":{"extension":[{"url":"http://example.org/x","valueDecimal":1.50}]},"managingOrganization":{"reference":"Organization/org1"}}`},
	{"Patient", "p2", `{"resourceType":"Patient","id":"p2","gender":"female"}`},
	{"Patient", "p3", `{"resourceType":"Patient","id":"p3","gender":"male"}`},
	{"Observation", "o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":72.50,"unit":"kg"}}`},
	{"Observation", "o2", `{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p2"},"valueQuantity":{"value":1e2,"unit":"kg"}}`},
	{"Observation", "o3", `{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"height"},"subject":{"reference":"Patient/p3"},"valueQuantity":{"value":180.0,"unit":"cm"}}`},
	{"Observation", "o4", `{"resourceType":"Observation","id":"o4","status":"final","code":{"text":"height"},"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/pr1"}]}`},
	{"Encounter", "e1", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p2"}}`},
	{"Group", "g1", `{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p3"}},{"entity":{"reference":"Patient/p2"},"inactive":true}]}`},
}

func (e *env) loadExportData() {
	e.t.Helper()
	for _, d := range exportData {
		if r := e.do("PUT", "/fhir/"+d.typ+"/"+d.id, d.body); r.status != http.StatusCreated {
			e.t.Fatalf("PUT %s/%s: %d %s", d.typ, d.id, r.status, r.body)
		}
	}
}

// kickoff starts an export and returns its status path.
func (e *env) kickoff(method, p, body string, headers ...string) string {
	e.t.Helper()
	r := e.do(method, p, body, append([]string{"Prefer", async}, headers...)...)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("%s %s: %d, want 202: %s", method, p, r.status, r.body)
	}
	loc := r.header.Get("Content-Location")
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(u.Path, "/fhir/_export/") {
		e.t.Fatalf("Content-Location %q is not a status URL under /fhir", loc)
	}
	return u.Path
}

// runExports lets the settle time pass and runs the jobs to the end.
func (e *env) runExports() {
	e.t.Helper()
	time.Sleep(2 * exportOptions.Settle)
	if err := e.exports.Step(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

type manifest struct {
	TransactionTime     string
	Request             string
	RequiresAccessToken bool
	Output              []struct {
		Type, URL string
		Count     int64
	}
	Error []any
}

func (e *env) manifest(status string) manifest {
	e.t.Helper()
	r := e.get(status)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d, want 200: %s", status, r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("manifest Content-Type %q", ct)
	}
	var m manifest
	if err := json.Unmarshal(r.body, &m); err != nil {
		e.t.Fatalf("manifest: %v: %s", err, r.body)
	}
	return m
}

// exported downloads every file of a done export: type -> id -> line.
// It checks each file's count and that each line is the resource exactly
// as a read returns it.
func (e *env) exported(status string, check bool) map[string]map[string]string {
	e.t.Helper()
	out := map[string]map[string]string{}
	for _, o := range e.manifest(status).Output {
		u, err := url.Parse(o.URL)
		if err != nil {
			e.t.Fatal(err)
		}
		r := e.get(u.Path, "Accept", "application/fhir+ndjson")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/fhir+ndjson" {
			e.t.Fatalf("GET %s: %d %s", u.Path, r.status, r.header.Get("Content-Type"))
		}
		lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
		if int64(len(lines)) != o.Count {
			e.t.Errorf("%s: %d lines, the manifest says %d", o.Type, len(lines), o.Count)
		}
		out[o.Type] = map[string]string{}
		for _, l := range lines {
			var head struct{ ResourceType, ID string }
			if err := json.Unmarshal([]byte(l), &head); err != nil || head.ResourceType != o.Type {
				e.t.Fatalf("%s: line %q", o.Type, l)
			}
			if _, dup := out[o.Type][head.ID]; dup {
				e.t.Errorf("%s/%s exported twice", o.Type, head.ID)
			}
			out[o.Type][head.ID] = l
			if check {
				if got := e.get("/fhir/" + o.Type + "/" + head.ID); string(got.body) != l {
					e.t.Errorf("%s/%s exported as\n%s\nstored as\n%s", o.Type, head.ID, l, got.body)
				}
			}
		}
	}
	return out
}

// ids lists the exported ids by type.
func ids(files map[string]map[string]string) map[string][]string {
	out := map[string][]string{}
	for typ, m := range files {
		for id := range m {
			out[typ] = append(out[typ], id)
		}
		slices.Sort(out[typ])
	}
	return out
}

func TestExportKickoffErrors(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	lenient := "respond-async, handling=lenient"
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		mention                  string
	}{
		{"no Prefer", "GET", "/fhir/$export", "", nil, 400, "respond-async"},
		{"Prefer without respond-async", "GET", "/fhir/$export", "", []string{"Prefer", "handling=lenient"}, 400, "respond-async"},
		{"output format", "GET", "/fhir/$export?_outputFormat=text/csv", "", []string{"Prefer", async}, 400, "_outputFormat"},
		{"unknown type", "GET", "/fhir/$export?_type=Patient,Nope", "", []string{"Prefer", async}, 400, "Nope"},
		{"since not an instant", "GET", "/fhir/$export?_since=yesterday", "", []string{"Prefer", async}, 400, "_since"},
		{"since without time", "GET", "/fhir/$export?_since=2020-01-01", "", []string{"Prefer", async}, 400, "_since"},
		{"_elements", "GET", "/fhir/$export?_elements=id", "", []string{"Prefer", async}, 400, "_elements"},
		{"_typeFilter", "GET", "/fhir/Patient/$export?_typeFilter=Patient%3Fgender%3Dmale", "", []string{"Prefer", async}, 400, "_typeFilter"},
		{"includeAssociatedData in a body", "POST", "/fhir/$export", `{"resourceType":"Parameters","parameter":[{"name":"includeAssociatedData","valueCode":"LatestProvenanceResources"}]}`, []string{"Prefer", async}, 400, "includeAssociatedData"},
		{"patient at system level", "POST", "/fhir/$export", `{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p1"}}]}`, []string{"Prefer", async}, 400, "patient"},
		{"body not Parameters", "POST", "/fhir/$export", `{"resourceType":"Patient"}`, []string{"Prefer", async}, 400, "Parameters"},
		{"type outside the compartment", "GET", "/fhir/Patient/$export?_type=Organization", "", []string{"Prefer", async}, 400, "Organization"},
		{"other type", "GET", "/fhir/Observation/$export", "", []string{"Prefer", async}, 404, "$export"},
		{"other instance type", "GET", "/fhir/Patient/p1/$export", "", []string{"Prefer", async}, 404, "$export"},
		{"missing group", "GET", "/fhir/Group/nope/$export", "", []string{"Prefer", async}, 404, "Group/nope"},
		{"XML", "GET", "/fhir/$export", "", []string{"Prefer", async, "Accept", "application/fhir+xml"}, 406, "Accept"},
		{"unknown job", "GET", "/fhir/_export/nope", "", nil, 404, "nope"},
		{"cancel unknown job", "DELETE", "/fhir/_export/nope", "", nil, 404, "nope"},
		{"file of unknown job", "GET", "/fhir/_export/nope/Patient.ndjson", "", nil, 404, "nope"},
		// Lenient handling ignores what is not supported.
		{"lenient _elements", "GET", "/fhir/$export?_elements=id", "", []string{"Prefer", lenient}, 202, ""},
		{"lenient type outside the compartment", "GET", "/fhir/Patient/$export?_type=Organization,Patient", "", []string{"Prefer", lenient}, 202, ""},
		{"ndjson", "GET", "/fhir/$export?_outputFormat=ndjson", "", []string{"Prefer", async}, 202, ""},
		{"application/ndjson", "GET", "/fhir/$export?_outputFormat=application%2Fndjson", "", []string{"Prefer", async}, 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.srv.URL, tc.method, tc.path, tc.body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %s", r.status, tc.status, r.body)
			}
			if !strings.Contains(string(r.body), tc.mention) {
				t.Errorf("the answer does not name %q: %s", tc.mention, r.body)
			}
		})
	}
}

func TestExportSystem(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	// Official examples too: narrative, decimals, extensions.
	examples, err := filepath.Glob("testdata/search-exact/*.json")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	var exampleIDs []string
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal(b, &head); err != nil || head.ResourceType != "RiskAssessment" {
			t.Fatalf("%s: %v", f, err)
		}
		if r := e.do("PUT", "/fhir/RiskAssessment/"+head.ID, string(b)); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", f, r.status, r.body)
		}
		exampleIDs = append(exampleIDs, head.ID)
	}
	status := e.kickoff("GET", "/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson", "")

	r := e.get(status)
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") == "" || r.header.Get("X-Progress") == "" {
		t.Fatalf("status before the job ran: %d, Retry-After %q, X-Progress %q: %s", r.status, r.header.Get("Retry-After"), r.header.Get("X-Progress"), r.body)
	}
	e.runExports()

	m := e.manifest(status)
	if m.RequiresAccessToken || m.Error == nil || len(m.Error) != 0 {
		t.Errorf("manifest: requiresAccessToken %v, error %v", m.RequiresAccessToken, m.Error)
	}
	if want := e.srv.URL + "/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson"; m.Request != want {
		t.Errorf("request %q, want %q", m.Request, want)
	}
	if _, err := time.Parse(time.RFC3339, m.TransactionTime); err != nil {
		t.Errorf("transactionTime %q: %v", m.TransactionTime, err)
	}
	want := map[string][]string{"RiskAssessment": exampleIDs}
	for _, d := range exportData {
		want[d.typ] = append(want[d.typ], d.id)
	}
	for typ := range want {
		slices.Sort(want[typ])
	}
	if diff := cmp.Diff(want, ids(e.exported(status, true))); diff != "" {
		t.Errorf("exported ids (-want +got):\n%s", diff)
	}
	// Small chunks: some files were written, and read back, in several.
	if job, err := e.exports.Job(context.Background(), path.Base(status)); err != nil || job.Chunks <= int64(len(m.Output)) {
		t.Errorf("job: %v; %d chunks for %d files", err, job.Chunks, len(m.Output))
	}
}

func TestExportCapability(t *testing.T) {
	e := newEnv(t)
	cs := e.get("/fhir/metadata").json(t)
	if got := cs["instantiates"]; !cmp.Equal(got, []any{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"}) {
		t.Errorf("instantiates %v", got)
	}
	// The export operations, by type ("" for the system level).
	rest := cs["rest"].([]any)[0].(map[string]any)
	ops := map[string]any{}
	add := func(typ string, list any) {
		l, _ := list.([]any)
		for _, op := range l {
			if op.(map[string]any)["name"] == "export" {
				have, _ := ops[typ].([]any)
				ops[typ] = append(have, op)
			}
		}
	}
	add("", rest["operation"])
	for _, r := range rest["resource"].([]any) {
		r := r.(map[string]any)
		add(r["type"].(string), r["operation"])
	}
	def := "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
	want := map[string]any{
		"":        []any{map[string]any{"name": "export", "definition": def + "export"}},
		"Patient": []any{map[string]any{"name": "export", "definition": def + "patient-export"}},
		"Group":   []any{map[string]any{"name": "export", "definition": def + "group-export"}},
	}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
}

func TestExportTypeAndSince(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()

	for _, tc := range []struct {
		name, method, path, body string
	}{
		{"GET", "GET", "/fhir/$export?_type=Observation,Patient", ""},
		{"repeated", "GET", "/fhir/$export?_type=Observation&_type=Patient", ""},
		{"POST", "POST", "/fhir/$export", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Observation,Patient"},{"name":"_outputFormat","valueString":"application/fhir+ndjson"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := e.kickoff(tc.method, tc.path, tc.body)
			e.runExports()
			want := map[string][]string{"Observation": {"o1", "o2", "o3", "o4"}, "Patient": {"p1", "p2", "p3"}}
			if diff := cmp.Diff(want, ids(e.exported(status, true))); diff != "" {
				t.Errorf("exported ids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("since", func(t *testing.T) {
		time.Sleep(5 * time.Millisecond)
		since := time.Now().UTC()
		time.Sleep(5 * time.Millisecond)
		e.do("PUT", "/fhir/Patient/p2", `{"resourceType":"Patient","id":"p2","gender":"other"}`)
		e.do("PUT", "/fhir/Observation/o9", `{"resourceType":"Observation","id":"o9","status":"final","code":{"text":"x"}}`)
		status := e.kickoff("GET", "/fhir/$export?_since="+url.QueryEscape(since.Format(time.RFC3339Nano)), "")
		e.runExports()
		want := map[string][]string{"Observation": {"o9"}, "Patient": {"p2"}}
		if diff := cmp.Diff(want, ids(e.exported(status, true))); diff != "" {
			t.Errorf("exported ids (-want +got):\n%s", diff)
		}
	})
}

func TestExportPatientAndGroup(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	for _, tc := range []struct {
		name, method, path, body string
		want                     map[string][]string
	}{
		{"every patient", "GET", "/fhir/Patient/$export", "", map[string][]string{
			"Patient": {"p1", "p2", "p3"}, "Observation": {"o1", "o2", "o3", "o4"}, "Encounter": {"e1"}, "Group": {"g1"}}},
		{"patient and type", "GET", "/fhir/Patient/$export?_type=Encounter", "", map[string][]string{"Encounter": {"e1"}}},
		{"patient parameter", "POST", "/fhir/Patient/$export", `{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p2"}}]}`,
			map[string][]string{"Patient": {"p2"}, "Observation": {"o2"}, "Encounter": {"e1"}, "Group": {"g1"}}},
		// p2 is an inactive member. The Group is in its members'
		// compartments (Group.member).
		{"group", "GET", "/fhir/Group/g1/$export", "", map[string][]string{"Patient": {"p1", "p3"}, "Observation": {"o1", "o3", "o4"}, "Group": {"g1"}}},
		{"group POST", "POST", "/fhir/Group/g1/$export", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Observation"}]}`,
			map[string][]string{"Observation": {"o1", "o3", "o4"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := e.kickoff(tc.method, tc.path, tc.body)
			e.runExports()
			if diff := cmp.Diff(tc.want, ids(e.exported(status, true))); diff != "" {
				t.Errorf("exported ids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("empty group", func(t *testing.T) {
		e.do("PUT", "/fhir/Group/g2", `{"resourceType":"Group","id":"g2","type":"person","actual":true}`)
		status := e.kickoff("GET", "/fhir/Group/g2/$export", "")
		e.runExports()
		if m := e.manifest(status); m.Output == nil || len(m.Output) != 0 {
			t.Errorf("output %v, want none", m.Output)
		}
	})
	t.Run("deleted group", func(t *testing.T) {
		e.do("DELETE", "/fhir/Group/g2", "")
		if r := e.do("GET", "/fhir/Group/g2/$export", "", "Prefer", async); r.status != http.StatusGone {
			t.Errorf("%d, want 410: %s", r.status, r.body)
		}
	})
}

// TestExportSnapshot: what is written after the kick-off is not exported;
// the versions current at the transaction time are.
func TestExportSnapshot(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	status := e.kickoff("GET", "/fhir/$export?_type=Observation", "")
	time.Sleep(2 * time.Millisecond) // lastUpdated has milliseconds
	e.do("PUT", "/fhir/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"amended","code":{"text":"weight"},"subject":{"reference":"Patient/p1"}}`)
	e.do("DELETE", "/fhir/Observation/o2", "")
	e.do("PUT", "/fhir/Observation/o5", `{"resourceType":"Observation","id":"o5","status":"final","code":{"text":"new"}}`)
	e.runExports()

	got := e.exported(status, false)["Observation"]
	if diff := cmp.Diff([]string{"o1", "o2", "o3", "o4"}, ids(map[string]map[string]string{"Observation": got})["Observation"]); diff != "" {
		t.Errorf("exported ids (-want +got):\n%s", diff)
	}
	for _, id := range []string{"o1", "o2"} {
		if v1 := e.get("/fhir/Observation/" + id + "/_history/1"); got[id] != string(v1.body) {
			t.Errorf("%s exported as\n%s\nwant version 1\n%s", id, got[id], v1.body)
		}
	}
}

func TestExportCancel(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	status := e.kickoff("GET", "/fhir/$export", "")
	e.runExports()
	m := e.manifest(status)
	file, _ := url.Parse(m.Output[0].URL)
	job := path.Base(status)
	done, err := e.exports.Job(context.Background(), job)
	if err != nil || done.Chunks == 0 {
		t.Fatalf("job: %v, %d chunks", err, done.Chunks)
	}

	if r := e.do("DELETE", status, ""); r.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	for _, p := range []string{status, file.Path} {
		if r := e.get(p); r.status != http.StatusNotFound {
			t.Errorf("GET %s after DELETE: %d, want 404", p, r.status)
		}
	}
	if r := e.do("DELETE", status, ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d, want 404", r.status)
	}
	for n := range done.Chunks {
		if _, err := e.exports.Chunk(context.Background(), job, n); !fault.Is(err, fault.NotFound) {
			t.Errorf("chunk %d after DELETE: %v, want not found", n, err)
		}
	}
}

// TestExportCancelWhileRunning: a runner working on a job that is deleted
// stops and removes what it wrote after the deletion.
func TestExportCancelWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	status := e.kickoff("GET", "/fhir/$export", "")
	job := path.Base(status)
	o := exportOptions
	o.Pause = 100 * time.Millisecond
	r := bulkexport.New(e.store, slog.New(slog.NewJSONHandler(io.Discard, nil)), o)
	done := make(chan error, 1)
	time.Sleep(2 * o.Settle)
	go func() { done <- r.Step(context.Background()) }()
	waitFor(t, "the first batch", func() bool {
		j, err := e.exports.Job(context.Background(), job)
		return err == nil && j.Chunks > 0
	})
	if r := e.do("DELETE", status, ""); r.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := e.exports.Chunk(context.Background(), job, 0); !fault.Is(err, fault.NotFound) {
		t.Errorf("chunk 0 after the runner stopped: %v, want not found", err)
	}
	if r := e.get(status); r.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d, want 404", r.status)
	}
}

// TestExportResumesAfterCrash: a runner dies half-way through a job; once
// its lease has expired another runner (another instance, or this one
// restarted) finishes the job from its cursor, and the files hold every
// resource once.
func TestExportResumesAfterCrash(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	status := e.kickoff("GET", "/fhir/$export", "")
	job := path.Base(status)
	o := exportOptions
	o.Lease, o.Pause = 300*time.Millisecond, time.Hour
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	dead := bulkexport.New(e.store, logger, o)
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	time.Sleep(2 * o.Settle)
	go func() { defer close(done); _ = dead.Step(ctx) }()
	waitFor(t, "the first batch", func() bool {
		j, err := e.exports.Job(context.Background(), job)
		return err == nil && j.Chunks > 0
	})
	kill() // between two batches: the job stays running with its lease
	<-done
	left, err := e.exports.Job(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if left.State != store.JobRunning || left.Owner == "" || (left.Step == 0 && left.After == "") {
		t.Fatalf("the dead runner left state %s, owner %q, step %d, after %q", left.State, left.Owner, left.Step, left.After)
	}

	o.Pause = exportOptions.Pause
	next := bulkexport.New(e.store, logger, o)
	if err := next.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if j, _ := e.exports.Job(context.Background(), job); j.State == store.JobDone {
		t.Fatal("a second runner took the job while the first one's lease held")
	}
	waitFor(t, "the job to finish", func() bool {
		if err := next.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		j, err := e.exports.Job(context.Background(), job)
		return err == nil && j.State == store.JobDone
	})
	want := map[string][]string{}
	for _, d := range exportData {
		want[d.typ] = append(want[d.typ], d.id)
	}
	for typ := range want {
		slices.Sort(want[typ])
	}
	if diff := cmp.Diff(want, ids(e.exported(status, true))); diff != "" {
		t.Errorf("exported ids (-want +got):\n%s", diff)
	}
}

// TestExportExpires: a done job and its files are removed once the
// retention has passed.
func TestExportExpires(t *testing.T) {
	e := newEnv(t)
	e.loadExportData()
	status := e.kickoff("GET", "/fhir/$export?_type=Patient", "")
	job := path.Base(status)
	o := exportOptions
	o.Retention = time.Millisecond
	r := bulkexport.New(e.store, slog.New(slog.NewJSONHandler(io.Discard, nil)), o)
	time.Sleep(2 * o.Settle)
	if err := r.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.manifest(status)
	time.Sleep(2 * o.Retention)
	if err := r.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.get(status); r.status != http.StatusNotFound {
		t.Errorf("status after the retention: %d, want 404", r.status)
	}
	if _, err := e.exports.Chunk(context.Background(), job, 0); !fault.Is(err, fault.NotFound) {
		t.Errorf("chunk 0 after the retention: %v, want not found", err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
