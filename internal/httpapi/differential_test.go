package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The differential search test: kapfhir and an independent FHIR search
// implementation (medplum's in-memory repository, @medplum/fhir-router, run
// by testdata/differential/diff.mjs under Node) answer the same queries over
// the same Synthea data, and must return the same ids. Every disagreement is
// either listed in knownDifferences, with the FHIR rule that decides it and
// the side that follows it, or fails the test.
//
// The Node side is installed by `npm ci --prefix internal/httpapi/testdata/differential`
// (.ci/run does it); without node on PATH or without that install the test skips.

const (
	syntheaDir      = "../../testdata/synthea"
	differentialDir = "testdata/differential"
)

// syntheaLeftOut are the bundles the test does not load unless
// KAPFHIR_DIFFERENTIAL_ALL=1: a search on the embedded store costs about
// linearly in the stored resources, and all 1,458 would make the test take
// several minutes. The rest is 3 patients (Buster Hoeger, Clemente
// Kreiger, Laurie McCullough) with the hospital and practitioner bundles,
// 488 resources. With all bundles the queries differ (they come from the
// data), and knownDifferences lists only those of the subset.
var syntheaLeftOut = []string{
	"Darron_Feeney_ff447d4a-3e5c-4e90-9854-a66a1d0bdfac.json", // 750 entries
	"Milan_Beatty_e78d0ed2-1b54-4c30-90ae-f7405af1e402.json",  // 220 entries
}

// knownDifference is a query on which the two sides legitimately disagree:
// rule is the FHIR R4 rule that decides it, follows the side that follows it.
type knownDifference struct{ rule, follows string }

// Rules cited by knownDifferences (pages of http://hl7.org/fhir/R4/).
const (
	ruleStringExact = "search.html#string :exact: the whole string, case- and accent-sensitive; medplum's memory matcher ignores :exact (case-insensitive contains)"
	ruleTokenText   = "search.html#token :text: a text search (starts-with on words) in CodeableConcept.text/Coding.display; medplum's memory matcher compares the whole display as if it were a code"
	ruleRefBareID   = "search.html#reference [parameter]=[id]: a bare id matches a reference to any type with that id (and :[type]=[id] a reference to that type); medplum's memory matcher compares the whole reference string"
	ruleDateEq      = "search.html#prefix eq (and #date): the range of the search value fully contains the range of the target value; medplum's memory matcher tests overlap"
	ruleDateAp      = "search.html#prefix ap: approximately equal, the server decides (kapfhir: 10% of the distance from now, at least the value's own width); medplum treats ap as overlap"
	ruleDateOr      = "search.html#combining: comma-separated values of one parameter are OR-ed (date=2015,2012 is either year); medplum validates the whole value as one date and rejects it"
	ruleDateSeconds = "datatypes.html#dateTime: a time must be given to the second (hh:mm:ss), so a minute-precision search value is not R4; medplum rejects it, kapfhir accepts it as a one-minute range (lenient)"
)

const (
	kapfhir = "kapfhir"
	medplum = "medplum"
	either  = "either (left to the server)"
)

// knownDifferences are the queries, generated from the loaded data, on which
// kapfhir and medplum's memory repository legitimately disagree.
var knownDifferences = map[string]knownDifference{
	"Patient?name:exact=mccullough":                                    {ruleStringExact, kapfhir},
	"Observation?code:text=blood":                                      {ruleTokenText, kapfhir},
	"Observation?code:text=body":                                       {ruleTokenText, kapfhir},
	"Observation?patient=ca95b2c5-d306-44d4-a7fa-756de736e68e":         {ruleRefBareID, kapfhir},
	"Observation?subject:Patient=ca95b2c5-d306-44d4-a7fa-756de736e68e": {ruleRefBareID, kapfhir},
	"Observation?patient=d78af07c-9cb9-4f31-9b11-c45a28f2eec8":         {ruleRefBareID, kapfhir},
	"Observation?subject:Patient=d78af07c-9cb9-4f31-9b11-c45a28f2eec8": {ruleRefBareID, kapfhir},
	"Observation?date=ap2015-09-14":                                    {ruleDateAp, either},
	"Observation?date=2015-09-14T15:29Z":                               {ruleDateSeconds, medplum},
	"Observation?date=2015,2012":                                       {ruleDateOr, kapfhir},
	"Encounter?date=2015-09-14T15:29:24%2B00:00":                       {ruleDateEq, kapfhir},
}

func TestDifferentialSearch(t *testing.T) {
	t.Parallel() // long, on its own database: uses the second CPU while the rest run
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the differential search test needs Node 20+ and `npm ci --prefix internal/httpapi/testdata/differential`")
	}
	if _, err := os.Stat(filepath.Join(differentialDir, "node_modules", "@medplum", "fhir-router")); err != nil {
		t.Skip("the differential search test needs `npm ci --prefix internal/httpapi/testdata/differential` first")
	}
	e := newEnv(t)

	start := time.Now()
	resources, ndjson := loadSynthea(t, e.srv.URL)
	t.Logf("loaded %d resources into kapfhir in %v", len(resources), time.Since(start).Round(time.Millisecond))

	queries := differentialQueries(resources)
	if len(queries) < 100 {
		t.Fatalf("only %d queries generated, want at least 100", len(queries))
	}

	// The independent side, over the same resources, runs while kapfhir
	// answers.
	type answer struct {
		ids  map[string]any
		err  error
		took time.Duration
	}
	medplum := make(chan answer, 1)
	tmp := t.TempDir()
	go func() {
		start := time.Now()
		ids, err := runMedplum(tmp, ndjson, queries)
		medplum <- answer{ids, err, time.Since(start)}
	}()

	start = time.Now()
	ours := make([][]string, len(queries))
	errs := make([]error, len(queries))
	for i, q := range queries {
		qstart := time.Now()
		ours[i], errs[i] = ourIDs(e.srv.URL, q)
		if d := time.Since(qstart); d > 2*time.Second {
			t.Logf("slow on kapfhir: %s took %v", q, d.Round(time.Millisecond))
		}
	}
	t.Logf("kapfhir answered %d queries in %v", len(queries), time.Since(start).Round(time.Millisecond))
	a := <-medplum
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Logf("medplum answered %d queries in %v (while kapfhir answered)", len(queries), a.took.Round(time.Millisecond))
	theirs := a.ids

	agree, known := 0, 0
	for i, q := range queries {
		ours, err := ours[i], errs[i]
		var their []string
		var theirErr string
		switch v := theirs[q].(type) {
		case []any:
			for _, id := range v {
				their = append(their, id.(string))
			}
		case map[string]any:
			theirErr = fmt.Sprint(v["error"])
		default:
			theirErr = fmt.Sprintf("no answer: %v", v)
		}
		switch {
		case err != nil:
			t.Errorf("%s: kapfhir: %v", q, err)
			continue
		case theirErr != "":
			if kd, ok := knownDifferences[q]; ok {
				known++
				t.Logf("known difference %s (medplum: %s): %s", q, theirErr, kd.rule)
				continue
			}
			t.Errorf("%s: medplum failed: %s (kapfhir found %d)", q, theirErr, len(ours))
			continue
		}
		onlyOurs, onlyTheirs := setDiff(ours, their), setDiff(their, ours)
		kd, isKnown := knownDifferences[q]
		switch {
		case len(onlyOurs) == 0 && len(onlyTheirs) == 0 && isKnown:
			t.Errorf("%s: both sides now agree (%d ids); remove it from knownDifferences", q, len(ours))
			agree++
		case len(onlyOurs) == 0 && len(onlyTheirs) == 0:
			agree++
		case isKnown:
			known++
			t.Logf("known difference %s: only kapfhir %d, only medplum %d; %s follows %s", q, len(onlyOurs), len(onlyTheirs), kd.follows, kd.rule)
		default:
			t.Errorf("%s: the sides disagree (kapfhir %d, medplum %d)\n  only kapfhir: %v\n  only medplum: %v", q, len(ours), len(their), onlyOurs, onlyTheirs)
		}
	}
	t.Logf("differential search: %d queries, %d agree, %d known differences, %d unexplained", len(queries), agree, known, len(queries)-agree-known)
}

var urnReference = regexp.MustCompile(`("reference"\s*:\s*")urn:uuid:([0-9A-Fa-f-]+)"`)

// loadSynthea PUTs every entry of the Synthea transaction bundles as
// Type/uuid, its urn:uuid references rewritten to Type/uuid. It returns the
// resources kapfhir accepted, decoded, and the same as NDJSON for the other
// side. Entries kapfhir rejects are skipped and counted.
func loadSynthea(t *testing.T, base string) ([]map[string]any, string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(syntheaDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea bundles in %s: %v", syntheaDir, err)
	}
	sort.Strings(files)
	if os.Getenv("KAPFHIR_DIFFERENTIAL_ALL") != "1" {
		files = slices.DeleteFunc(files, func(f string) bool { return slices.Contains(syntheaLeftOut, filepath.Base(f)) })
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	type head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	var bundles [][]entry
	types := map[string]string{} // uuid -> resource type, over all bundles
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			Entry []entry `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, en := range bundle.Entry {
			var h head
			if err := json.Unmarshal(en.Resource, &h); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			types[strings.TrimPrefix(en.FullURL, "urn:uuid:")] = h.ResourceType
		}
		bundles = append(bundles, bundle.Entry)
	}

	var out []map[string]any
	var nd bytes.Buffer
	skipped := map[string]int{}
	for _, entries := range bundles {
		for _, en := range entries {
			id := strings.TrimPrefix(en.FullURL, "urn:uuid:")
			var h head
			_ = json.Unmarshal(en.Resource, &h)
			if h.ID != id {
				t.Fatalf("%s: the resource's id is %q, not its fullUrl's uuid", en.FullURL, h.ID)
			}
			body := urnReference.ReplaceAllFunc(en.Resource, func(m []byte) []byte {
				sub := urnReference.FindSubmatch(m)
				typ, ok := types[string(sub[2])]
				if !ok {
					return m
				}
				return []byte(string(sub[1]) + typ + "/" + string(sub[2]) + `"`)
			})
			var compact bytes.Buffer
			if err := json.Compact(&compact, body); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("PUT", base+"/fhir/"+h.ResourceType+"/"+id, bytes.NewReader(compact.Bytes()))
			req.Header.Set("Content-Type", "application/fhir+json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case res.StatusCode >= 500:
				t.Fatalf("PUT %s/%s: %d %s", h.ResourceType, id, res.StatusCode, msg)
			case res.StatusCode >= 300:
				skipped[h.ResourceType]++
				t.Logf("skipped %s/%s: kapfhir answers %d %s", h.ResourceType, id, res.StatusCode, msg)
				continue
			}
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(compact.Bytes()))
			d.UseNumber()
			if err := d.Decode(&m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
			nd.Write(compact.Bytes())
			nd.WriteByte('\n')
		}
	}
	if len(skipped) > 0 {
		t.Logf("skipped entries kapfhir rejects: %v", skipped)
	}
	return out, nd.String()
}

// runMedplum writes the resources and queries to files in dir and runs
// diff.mjs on them.
func runMedplum(dir, ndjson string, queries []string) (map[string]any, error) {
	resFile, qFile := filepath.Join(dir, "resources.ndjson"), filepath.Join(dir, "queries.json")
	qs, err := json.Marshal(queries)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(resFile, []byte(ndjson), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(qFile, qs, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("node", "diff.mjs", resFile, qFile)
	cmd.Dir = differentialDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node diff.mjs: %v\n%s", err, stderr.String())
	}
	var answers map[string]any
	if err := json.Unmarshal(stdout, &answers); err != nil {
		return nil, fmt.Errorf("node diff.mjs printed no JSON: %v\n%.500s", err, stdout)
	}
	return answers, nil
}

// ourIDs runs a search on kapfhir, following next links, and returns the
// sorted ids of the matches.
func ourIDs(base, query string) ([]string, error) {
	next := "/fhir/" + query + "&_count=1000"
	var ids []string
	for pages := 0; next != ""; pages++ {
		if pages > 100 {
			return nil, fmt.Errorf("more than 100 pages")
		}
		res, err := http.Get(base + next)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d: %s", res.StatusCode, b)
		}
		var bundle struct {
			Link []struct {
				Relation, URL string
			}
			Entry []struct {
				Resource struct{ ID string }
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return nil, err
		}
		for _, en := range bundle.Entry {
			if en.Search.Mode == "match" {
				ids = append(ids, en.Resource.ID)
			}
		}
		next = ""
		for _, l := range bundle.Link {
			if l.Relation == "next" {
				next = strings.TrimPrefix(l.URL, base)
			}
		}
	}
	sort.Strings(ids)
	if dup := slices.Compact(slices.Clone(ids)); len(dup) != len(ids) {
		return nil, fmt.Errorf("a match is returned twice")
	}
	return ids, nil
}

// setDiff is what a has and b has not; both sorted.
func setDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			out = append(out, x)
		}
	}
	return out
}

// qv escapes a search value for a query string, leaving the characters
// FHIR search uses readable (| / :).
func qv(s string) string {
	return strings.NewReplacer("%7C", "|", "%2F", "/", "%3A", ":").Replace(url.QueryEscape(s))
}

// at walks a decoded resource: string keys, int indexes. Nil when absent.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func atStr(v any, path ...any) string {
	s, _ := at(v, path...).(string)
	return s
}

// counted collects values with their frequency; top returns the most
// frequent first (ties by value), deterministic for fixed data.
type counted map[string]int

func (c counted) add(s string) {
	if s != "" {
		c[s]++
	}
}

func (c counted) top(n int) []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c[keys[i]] != c[keys[j]] {
			return c[keys[i]] > c[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) > n {
		keys = keys[:n]
	}
	return keys
}

// codings returns system|code of every coding of a CodeableConcept or
// Coding at path, with displays.
func codings(r map[string]any, path ...any) (tokens, displays []string) {
	v := at(r, path...)
	var ccs []any
	if a, ok := v.([]any); ok {
		ccs = a
	} else if v != nil {
		ccs = []any{v}
	}
	for _, cc := range ccs {
		cs, _ := at(cc, "coding").([]any)
		if cs == nil {
			cs = []any{cc} // a Coding
		}
		for _, c := range cs {
			if code := atStr(c, "code"); code != "" {
				tokens = append(tokens, atStr(c, "system")+"|"+code)
			}
			if d := atStr(c, "display"); d != "" {
				displays = append(displays, d)
			}
		}
	}
	return tokens, displays
}

// differentialQueries derives the queries from real values in the data:
// codes, names, identifiers, references and dates.
func differentialQueries(resources []map[string]any) []string {
	byType := map[string][]map[string]any{}
	for _, r := range resources {
		typ := r["resourceType"].(string)
		byType[typ] = append(byType[typ], r)
	}
	for _, rs := range byType {
		sort.Slice(rs, func(i, j int) bool { return rs[i]["id"].(string) < rs[j]["id"].(string) })
	}
	var qs []string
	add := func(format string, args ...any) {
		q := fmt.Sprintf(format, args...)
		if !slices.Contains(qs, q) {
			qs = append(qs, q)
		}
	}
	id := func(r map[string]any) string { return r["id"].(string) }
	bare := func(token string) string { _, code, _ := strings.Cut(token, "|"); return code }

	// Patient: string, token, date and _id.
	patients := byType["Patient"]
	for _, p := range patients {
		family, given := atStr(p, "name", 0, "family"), atStr(p, "name", 0, "given", 0)
		add("Patient?family=%s", qv(family))
		add("Patient?given=%s", qv(strings.ToLower(given[:3])))
		add("Patient?name=%s", qv(strings.ToUpper(family[:4])))
		add("Patient?name:exact=%s", qv(family))
		add("Patient?name:contains=%s", qv(family[1:4]))
		add("Patient?birthdate=%s", atStr(p, "birthDate"))
		add("Patient?address-city=%s", qv(atStr(p, "address", 0, "city")))
		for _, ident := range at(p, "identifier").([]any) {
			if sys, val := atStr(ident, "system"), atStr(ident, "value"); sys == "http://hl7.org/fhir/sid/us-ssn" {
				add("Patient?identifier=%s|%s", qv(sys), qv(val))
				add("Patient?identifier=%s", qv(val))
			}
		}
	}
	if len(patients) >= 2 {
		p0, p1 := patients[0], patients[1]
		add("Patient?_id=%s", id(p0))
		add("Patient?_id=%s,%s", id(p0), id(p1))
		add("Patient?name=%s,%s", qv(atStr(p0, "name", 0, "family")), qv(atStr(p1, "name", 0, "given", 0)))
		add("Patient?name:exact=%s", qv(strings.ToLower(atStr(p0, "name", 0, "family"))))
		bd := atStr(p0, "birthDate")
		for _, v := range []string{bd[:4], bd[:7], "ge" + bd, "gt" + bd, "le" + bd, "lt" + bd, "sa" + bd[:4], "eb" + bd[:4], "ne" + bd[:4], "ge" + bd[:7], "lt" + bd[:4], "ap" + bd[:4]} {
			add("Patient?birthdate=%s", v)
		}
		add("Patient?birthdate=ge%s&birthdate=lt%s", bd[:4], atStr(p1, "birthDate")[:4])
	}
	add("Patient?gender=female")
	add("Patient?gender=male")
	add("Patient?gender=male,female")
	add("Patient?gender:not=female")
	add("Patient?gender=male&address-state=Massachusetts")
	add("Patient?death-date:missing=true")
	add("Patient?death-date:missing=false")
	add("Patient?address-state=mass")
	add("Patient?_tag=%s", qv("https://smarthealthit.org/tags|synthea-5-2019"))

	// Observation: codes, categories, references, dates.
	obs := byType["Observation"]
	obsCodes, obsDisplays, obsCats := counted{}, counted{}, counted{}
	for _, o := range obs {
		toks, disp := codings(o, "code")
		for _, tk := range toks {
			obsCodes.add(tk)
		}
		for _, d := range disp {
			obsDisplays.add(d)
		}
		cats, _ := codings(o, "category")
		for _, c := range cats {
			obsCats.add(c)
		}
	}
	codes := obsCodes.top(10)
	for i, c := range codes {
		add("Observation?code=%s", qv(c))
		if i < 5 {
			add("Observation?code=%s", qv(bare(c)))
		}
	}
	if len(codes) >= 3 {
		add("Observation?code=%s,%s", qv(codes[0]), qv(bare(codes[2])))
		add("Observation?code:not=%s", qv(codes[0]))
		add("Observation?code=%s&code=%s", qv(codes[0]), qv(codes[1]))
	}
	for i, d := range obsDisplays.top(4) {
		add("Observation?code:text=%s", qv(d))
		if i < 2 {
			add("Observation?code:text=%s", qv(strings.ToLower(strings.Fields(d)[0])))
		}
	}
	for _, c := range obsCats.top(4) {
		add("Observation?category=%s", qv(c))
		add("Observation?category=%s", qv(bare(c)))
	}
	add("Observation?category:missing=true")
	add("Observation?category:not=vital-signs")
	add("Observation?status=final")
	add("Observation?status:not=final")
	add("Observation?value-concept:missing=false")
	for i, p := range patients {
		add("Observation?patient=Patient/%s", id(p))
		add("Observation?subject=Patient/%s&code=%s", id(p), qv(codes[i%len(codes)]))
		if i < 2 {
			add("Observation?patient=%s", id(p))
			add("Observation?subject:Patient=%s", id(p))
		}
	}
	if len(patients) > 0 {
		add("Observation?patient=Patient/%s&category=vital-signs&date=ge2015", id(patients[0]))
		add("Observation?subject=Patient/%s,Patient/%s&code=%s", id(patients[0]), id(patients[len(patients)-1]), qv(codes[0]))
	}
	// Dates: a real effective instant and its precisions.
	var effective []string
	for _, o := range obs {
		if s := atStr(o, "effectiveDateTime"); s != "" {
			effective = append(effective, s)
		}
	}
	sort.Strings(effective)
	if len(effective) > 0 {
		dt := effective[len(effective)/2]
		day, month, year := dt[:10], dt[:7], dt[:4]
		for _, v := range []string{year, month, day, dt, "ge" + day, "gt" + day, "le" + day, "lt" + day, "sa" + day, "eb" + day,
			"ne" + year, "ge" + dt, "gt" + dt, "le" + dt, "lt" + dt, "ge" + month, "lt" + month, "ap" + day, dt[:16] + "Z", "ge" + dt[:13] + ":00:00Z"} {
			add("Observation?date=%s", qv(v))
		}
		add("Observation?date=ge%s&date=lt%s", year, fmt.Sprint(atoi(year)+2))
		add("Observation?date=%s,%s", year, fmt.Sprint(atoi(year)-3))
		add("Observation?date=%s&code=%s", year, qv(codes[0]))
		add("Observation?date=2019-02")
	}
	if len(byType["Encounter"]) > 0 {
		add("Observation?encounter=Encounter/%s", id(byType["Encounter"][0]))
	}

	// Encounter: Coding and CodeableConcept tokens, references, Period dates.
	encs := byType["Encounter"]
	encTypes, parts, providers, starts := counted{}, counted{}, counted{}, []string{}
	for _, en := range encs {
		toks, _ := codings(en, "type")
		for _, tk := range toks {
			encTypes.add(tk)
		}
		parts.add(atStr(en, "participant", 0, "individual", "reference"))
		providers.add(atStr(en, "serviceProvider", "reference"))
		if s := atStr(en, "period", "start"); s != "" {
			starts = append(starts, s)
		}
	}
	sort.Strings(starts)
	add("Encounter?class=AMB")
	add("Encounter?class=%s", qv("http://terminology.hl7.org/CodeSystem/v3-ActCode|EMER"))
	add("Encounter?class:not=AMB")
	for _, c := range encTypes.top(4) {
		add("Encounter?type=%s", qv(c))
	}
	for _, r := range parts.top(2) {
		add("Encounter?participant=%s", qv(r))
		add("Encounter?practitioner=%s", qv(r))
	}
	for _, r := range providers.top(2) {
		add("Encounter?service-provider=%s", qv(r))
	}
	add("Encounter?status=finished")
	add("Encounter?reason-code:missing=true")
	if len(starts) > 0 {
		s := starts[len(starts)/2]
		for _, v := range []string{s[:4], s[:7], s[:10], s, "ge" + s[:10], "lt" + s[:10], "gt" + s, "le" + s, "sa" + s[:7], "eb" + s[:7], "ne" + s[:10]} {
			add("Encounter?date=%s", qv(v))
		}
		if len(patients) > 0 {
			add("Encounter?subject=Patient/%s&date=ge%s", id(patients[0]), s[:4])
		}
	}

	// Condition.
	conds := byType["Condition"]
	condCodes, condDisplays := counted{}, counted{}
	var onsets []string
	for _, c := range conds {
		toks, disp := codings(c, "code")
		for _, tk := range toks {
			condCodes.add(tk)
		}
		for _, d := range disp {
			condDisplays.add(d)
		}
		if s := atStr(c, "onsetDateTime"); s != "" {
			onsets = append(onsets, s)
		}
	}
	for i, c := range condCodes.top(4) {
		add("Condition?code=%s", qv(c))
		if i == 0 {
			add("Condition?code=%s", qv(bare(c)))
		}
	}
	for _, d := range condDisplays.top(2) {
		add("Condition?code:text=%s", qv(d))
	}
	add("Condition?clinical-status=active")
	add("Condition?clinical-status=%s", qv("http://terminology.hl7.org/CodeSystem/condition-clinical|resolved"))
	add("Condition?verification-status=confirmed")
	add("Condition?abatement-date:missing=true")
	add("Condition?abatement-date:missing=false")
	sort.Strings(onsets)
	if len(onsets) > 0 {
		s := onsets[len(onsets)/2]
		add("Condition?onset-date=%s", s[:4])
		add("Condition?onset-date=ge%s", s[:10])
		add("Condition?onset-date=lt%s", qv(s))
		add("Condition?abatement-date=le%s", s[:4])
	}
	for _, p := range patients {
		add("Condition?patient=Patient/%s", id(p))
	}
	if len(patients) > 0 {
		add("Condition?subject=Patient/%s&clinical-status=active", id(patients[0]))
	}

	// Procedure, Immunization, MedicationRequest, DiagnosticReport.
	simple := []struct{ typ, param, path string }{
		{"Procedure", "code", "code"},
		{"Immunization", "vaccine-code", "vaccineCode"},
		{"MedicationRequest", "code", "medicationCodeableConcept"},
		{"DiagnosticReport", "code", "code"},
		{"CarePlan", "category", "category"},
		{"Goal", "lifecycle-status", "lifecycleStatus"},
	}
	for _, s := range simple {
		c := counted{}
		for _, r := range byType[s.typ] {
			toks, _ := codings(r, s.path)
			for _, tk := range toks {
				c.add(tk)
			}
			if v := atStr(r, s.path); v != "" {
				c.add(v)
			}
		}
		for _, v := range c.top(3) {
			add("%s?%s=%s", s.typ, s.param, qv(v))
		}
		if len(patients) > 0 && s.typ != "Goal" {
			add("%s?patient=Patient/%s", s.typ, id(patients[0]))
		}
	}
	for _, q := range []string{
		"Procedure?date=2010", "Procedure?date=ge2015-01-01", "Procedure?date=lt2000", "Procedure?status=completed",
		"Immunization?date=2017", "Immunization?date=ge2018-06", "Immunization?status=completed",
		"MedicationRequest?status=active", "MedicationRequest?status:not=active", "MedicationRequest?intent=order", "MedicationRequest?authoredon=2016", "MedicationRequest?authoredon=lt2000-01-01",
		"DiagnosticReport?date=2018", "DiagnosticReport?issued=ge2019", "DiagnosticReport?status=final",
		"CarePlan?status=active", "CarePlan?status=completed", "CarePlan?date=ge2015", "CarePlan?date=2012", "CarePlan?activity-code:missing=false",
		"Goal?lifecycle-status=active", "Goal?subject:missing=false",
		"Claim?created=2017", "Claim?use=claim", "Claim?status=active",
		"ExplanationOfBenefit?created=ge2018", "ExplanationOfBenefit?status=active",
	} {
		add("%s", q)
	}
	if rs := byType["MedicationRequest"]; len(rs) > 0 {
		add("MedicationRequest?requester=%s", qv(atStr(rs[0], "requester", "reference")))
		add("MedicationRequest?encounter=%s", qv(atStr(rs[0], "encounter", "reference")))
	}
	if rs := byType["DiagnosticReport"]; len(rs) > 0 {
		add("DiagnosticReport?result=%s", qv(atStr(rs[0], "result", 0, "reference")))
	}
	if rs := byType["Claim"]; len(rs) > 0 && len(patients) > 0 {
		add("Claim?patient=Patient/%s", id(patients[0]))
		add("Claim?provider=%s", qv(atStr(rs[0], "provider", "reference")))
	}
	if len(patients) > 0 {
		add("ExplanationOfBenefit?patient=Patient/%s", id(patients[0]))
	}

	// Organization and Practitioner: strings, identifiers, addresses.
	orgs := byType["Organization"]
	if len(orgs) > 1 {
		o := orgs[len(orgs)/2]
		name := atStr(o, "name")
		add("Organization?name=%s", qv(strings.ToLower(strings.Fields(name)[0])))
		add("Organization?name=%s", qv(name))
		add("Organization?name:exact=%s", qv(name))
		add("Organization?name:contains=%s", qv("hospital"))
		add("Organization?name:contains=%s", qv("medical"))
		add("Organization?address-city=%s", qv(atStr(o, "address", 0, "city")))
		add("Organization?address-postalcode=%s", qv(atStr(o, "address", 0, "postalCode")))
		if sys, val := atStr(o, "identifier", 0, "system"), atStr(o, "identifier", 0, "value"); val != "" {
			add("Organization?identifier=%s|%s", qv(sys), qv(val))
		}
		add("Organization?_id=%s,%s", id(orgs[0]), id(orgs[1]))
		add("Organization?type=prov")
	}
	pracs := byType["Practitioner"]
	if len(pracs) > 1 {
		p := pracs[len(pracs)/2]
		family := atStr(p, "name", 0, "family")
		add("Practitioner?family=%s", qv(family))
		add("Practitioner?name=%s", qv(strings.ToLower(family[:3])))
		add("Practitioner?given=%s", qv(atStr(p, "name", 0, "given", 0)))
		add("Practitioner?name:contains=%s", qv(strings.ToLower(family[1:4])))
		add("Practitioner?gender=female")
		add("Practitioner?gender:not=female")
		add("Practitioner?address-city=%s", qv(atStr(p, "address", 0, "city")))
		if sys, val := atStr(p, "identifier", 0, "system"), atStr(p, "identifier", 0, "value"); val != "" {
			add("Practitioner?identifier=%s|%s", qv(sys), qv(val))
			add("Practitioner?identifier=%s", qv(val))
		}
		add("Practitioner?name:missing=false")
		add("Practitioner?_id=%s", id(p))
	}
	return qs
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
