package bulkimport_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

const synthea = "testdata/synthea-bulk"

func newImporter(t *testing.T, o bulkimport.Options) (*bulkimport.Importer, *resource.Service, *store.Store) {
	t.Helper()
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	svc := resource.New(st, reg, time.Now)
	return bulkimport.New(svc, reg, o), svc, st
}

func importDir(t *testing.T, im *bulkimport.Importer, dir string) *bulkimport.Report {
	t.Helper()
	sources, skipped, err := bulkimport.DirSources(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := im.Run(context.Background(), sources)
	if err != nil {
		t.Fatalf("import %s: %v", dir, err)
	}
	rep.Skipped = skipped
	return rep
}

// decode reads JSON keeping number lexemes (json.Number), so that 1.50 and
// 1.5 differ.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// line is one line of an input file.
type line struct {
	file string
	n    int
	res  map[string]any
	raw  []byte
}

func readLines(t *testing.T, dir string) []line {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.000.ndjson"))
	var out []line
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for n := 1; sc.Scan(); n++ {
			raw := append([]byte(nil), sc.Bytes()...)
			out = append(out, line{file: filepath.Base(p), n: n, res: decode(t, raw), raw: raw})
		}
		f.Close()
	}
	return out
}

// identifierIndex maps "Type?identifier=system|value" to "Type/id" over the
// input: the test's own resolution of conditional references.
func identifierIndex(lines []line) map[string]string {
	idx := map[string]string{}
	for _, l := range lines {
		ids, _ := l.res["identifier"].([]any)
		for _, x := range ids {
			id, _ := x.(map[string]any)
			key := l.res["resourceType"].(string) + "?identifier=" + str(id["system"]) + "|" + str(id["value"])
			idx[key] = l.res["resourceType"].(string) + "/" + l.res["id"].(string)
		}
	}
	return idx
}

func str(v any) string { s, _ := v.(string); return s }

// walkRefs calls fn on every "reference" string value of v and replaces it.
func walkRefs(v any, fn func(string) string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				x[k] = fn(s)
			} else {
				x[k] = walkRefs(e, fn)
			}
		}
	case []any:
		for i := range x {
			x[i] = walkRefs(x[i], fn)
		}
	}
	return v
}

func withoutServerMeta(m map[string]any) map[string]any {
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	return m
}

// TestImportSynthea imports a Synthea bulk export into an empty store:
// every line is stored under its id, reads back as the line (number
// lexemes intact, conditional references resolved), every reference
// resolves, and importing again writes nothing.
func TestImportSynthea(t *testing.T) {
	im, svc, st := newImporter(t, bulkimport.Options{BatchSize: 100})
	ctx := context.Background()
	lines := readLines(t, synthea)
	rep := importDir(t, im, synthea)

	if len(rep.Errors) != 0 {
		t.Fatalf("errors: %+v", rep.Errors)
	}
	if d := cmp.Diff([]string{"log.ndjson"}, rep.Skipped); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}
	want := map[string]*bulkimport.Counts{}
	for _, l := range lines {
		typ := l.res["resourceType"].(string)
		if want[typ] == nil {
			want[typ] = &bulkimport.Counts{}
		}
		want[typ].Lines++
		want[typ].Created++
	}
	if d := cmp.Diff(want, rep.Types); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}

	idx := identifierIndex(lines)
	conditional := 0
	stored := map[string]string{} // Type/id → raw, as read back
	for _, l := range lines {
		typ, id := l.res["resourceType"].(string), l.res["id"].(string)
		rec, err := svc.Read(ctx, typ, id)
		if err != nil {
			t.Fatalf("%s line %d: read %s/%s: %v", l.file, l.n, typ, id, err)
		}
		stored[typ+"/"+id] = rec.Raw
		expected := walkRefs(l.res, func(ref string) string {
			if strings.Contains(ref, "?") {
				conditional++
				if idx[ref] == "" {
					t.Fatalf("%s line %d: the test data has no target for a conditional reference", l.file, l.n)
				}
				return idx[ref]
			}
			return ref
		}).(map[string]any)
		if d := cmp.Diff(withoutServerMeta(expected), withoutServerMeta(decode(t, []byte(rec.Raw)))); d != "" {
			t.Errorf("%s line %d: stored differs (-line +stored):\n%s", l.file, l.n, d)
		}
	}
	if conditional == 0 {
		t.Error("the test data has no conditional references")
	}

	// Every reference of every stored resource is Type/id of a stored
	// resource (each was read back above).
	for key, raw := range stored {
		walkRefs(decode(t, []byte(raw)), func(ref string) string {
			if _, ok := stored[ref]; !ok {
				t.Errorf("%s: reference %q is not Type/id of a stored resource", key, ref)
			}
			return ref
		})
	}

	// Again: every line is unchanged and no version is written.
	before := changeCount(t, st)
	again := importDir(t, im, synthea)
	for _, c := range want {
		c.Unchanged, c.Created = c.Created, 0
	}
	if d := cmp.Diff(want, again.Types); d != "" {
		t.Errorf("re-import counts (-want +got):\n%s", d)
	}
	if after := changeCount(t, st); after != before {
		t.Errorf("re-import wrote %d changes", after-before)
	}
}

func changeCount(t *testing.T, st *store.Store) int {
	t.Helper()
	n, after := 0, int64(0)
	for {
		page, next, err := st.Changes(context.Background(), after, 1000, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		n += len(page)
		if next == after {
			return n
		}
		after = next
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type lineErr struct {
	Source string
	Line   int
	Kind   fault.Kind
	Expr   string
}

func lineErrs(rep *bulkimport.Report) []lineErr {
	var out []lineErr
	for _, e := range rep.Errors {
		le := lineErr{Source: e.Source, Line: e.Line, Kind: e.Err.Kind}
		if len(e.Err.Issues) > 0 && len(e.Err.Issues[0].Expression) > 0 {
			le.Expr = e.Err.Issues[0].Expression[0]
		}
		out = append(out, le)
	}
	return out
}

// TestImportBadLines reports each bad line with its file and line number
// and imports the others.
func TestImportBadLines(t *testing.T) {
	im, svc, _ := newImporter(t, bulkimport.Options{MaxLineBytes: 200})
	dir := writeFiles(t, map[string]string{
		"Patient.ndjson": strings.Join([]string{
			`{"resourceType":"Patient","id":"a","birthDate":"1970-01-01"}`,
			`{"resourceType":"Patient","id":"b",`,
			``,
			`{"resourceType":"Observation","id":"c","status":"final","code":{"text":"x"}}`,
			`{"resourceType":"Patient","gender":"female"}`,
			`{"resourceType":"Patient","id":"d","colour":"blue"}`,
			`{"resourceType":"Patient","id":"e","name":[{"text":"` + strings.Repeat("x", 300) + `"}]}`,
			`{"resourceType":"Patient","id":"f","multipleBirthInteger":2}`,
		}, "\n"),
		"notes.ndjson": "not imported\n",
	})
	rep := importDir(t, im, dir)
	want := []lineErr{
		{"Patient.ndjson", 2, fault.Invalid, ""},
		{"Patient.ndjson", 4, fault.Invalid, "Observation"},
		{"Patient.ndjson", 5, fault.Invalid, "Patient.id"},
		{"Patient.ndjson", 6, fault.Invalid, "Patient.colour"},
		{"Patient.ndjson", 7, fault.TooLarge, ""},
	}
	if d := cmp.Diff(want, lineErrs(rep)); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	wantCounts := map[string]*bulkimport.Counts{
		"Patient":     {Lines: 6, Created: 2, Failed: 4},
		"Observation": {Lines: 1, Failed: 1},
	}
	if d := cmp.Diff(wantCounts, rep.Types); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"notes.ndjson"}, rep.Skipped); d != "" {
		t.Errorf("skipped (-want +got):\n%s", d)
	}
	for _, id := range []string{"a", "f"} {
		if _, err := svc.Read(context.Background(), "Patient", id); err != nil {
			t.Errorf("Patient/%s: %v", id, err)
		}
	}
}

// TestImportConditionalReferences resolves conditional references against
// what the store held before and what the import brings, including a
// target that has conditional references itself, and fails the resources
// whose criteria match nothing, several resources, or cannot be searched.
func TestImportConditionalReferences(t *testing.T) {
	im, svc, _ := newImporter(t, bulkimport.Options{})
	ctx := context.Background()
	// Before: one organisation and two patients sharing an identifier.
	importDir(t, im, writeFiles(t, map[string]string{
		"Organization.ndjson": `{"resourceType":"Organization","id":"o1","identifier":[{"system":"urn:org","value":"1"}]}`,
		"Patient.ndjson": `{"resourceType":"Patient","id":"twin1","identifier":[{"system":"urn:mrn","value":"same"}]}` + "\n" +
			`{"resourceType":"Patient","id":"twin2","identifier":[{"system":"urn:mrn","value":"same"}]}`,
	}))
	enc := func(id, subject string) string {
		return `{"resourceType":"Encounter","id":"` + id + `","status":"finished","class":{"code":"AMB"},"subject":{"reference":"` + subject + `"}}`
	}
	// Encounter.ndjson is read before Patient.ndjson: e1's patient is set
	// aside for its own conditional reference, so e1 resolves in a later round.
	rep := importDir(t, im, writeFiles(t, map[string]string{
		"Encounter.ndjson": strings.Join([]string{
			enc("e1", "Patient?identifier=urn:mrn|p1"),
			enc("e2", "Patient?identifier=urn:mrn|nobody"),
			enc("e3", "Patient?identifier=urn:mrn|same"),
			enc("e4", "Patient?colour=blue"),
			enc("e5", "Patient/twin1"),
		}, "\n"),
		"Patient.ndjson": `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"p1"}],"managingOrganization":{"reference":"Organization?identifier=urn:org|1"}}`,
	}))
	want := []lineErr{
		{"Encounter.ndjson", 2, fault.Unprocessable, "Encounter.subject.reference"},
		{"Encounter.ndjson", 3, fault.PreconditionFailed, "Encounter.subject.reference"},
		{"Encounter.ndjson", 4, fault.Invalid, "Encounter.subject.reference"},
	}
	if d := cmp.Diff(want, lineErrs(rep)); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	for id, ref := range map[string]string{"Encounter/e1": "Patient/p1", "Encounter/e5": "Patient/twin1", "Patient/p1": "Organization/o1"} {
		typ, rid, _ := strings.Cut(id, "/")
		rec, err := svc.Read(ctx, typ, rid)
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if !strings.Contains(rec.Raw, `{"reference":"`+ref+`"}`) {
			t.Errorf("%s does not refer to %s: %s", id, ref, rec.Raw)
		}
	}
	for _, id := range []string{"e2", "e3", "e4"} {
		if _, err := svc.Read(ctx, "Encounter", id); !fault.Is(err, fault.NotFound) {
			t.Errorf("Encounter/%s was stored (%v)", id, err)
		}
	}
}
