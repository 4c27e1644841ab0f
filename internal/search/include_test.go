package search

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// memStore is a Searcher over resources in memory, evaluating the
// condition forms include, chain and _has resolution emit.
type memStore struct {
	t       *testing.T
	recs    []*store.Record
	fields  map[*store.Record]map[string][]string
	queries []*store.Query
}

func (m *memStore) add(raw string) {
	m.t.Helper()
	res, err := fhir.ParseResource([]byte(raw))
	if err != nil {
		m.t.Fatal(err)
	}
	ix := Index(builtins, res)
	rec := &store.Record{Type: res.Type(), ID: res.ID(), Raw: raw}
	if m.fields == nil {
		m.fields = map[*store.Record]map[string][]string{}
	}
	m.recs = append(m.recs, rec)
	m.fields[rec] = map[string][]string{"rid": {rec.ID}, "ref": ix.Ref, "tok": ix.Token, "str": ix.String, "txt": ix.Text}
}

func (m *memStore) match(c store.Cond, f map[string][]string) bool {
	vals := f[c.Field]
	switch {
	case c.And != nil:
		for _, a := range c.And {
			if !m.match(a, f) {
				return false
			}
		}
		return true
	case c.Or != nil:
		for _, o := range c.Or {
			if m.match(o, f) {
				return true
			}
		}
		return false
	case c.In != nil:
		return slices.ContainsFunc(vals, func(v string) bool { return slices.Contains(c.In, v) })
	case c.NotIn != nil:
		return !slices.ContainsFunc(vals, func(v string) bool { return slices.Contains(c.NotIn, v) })
	case c.Prefix != nil:
		return slices.ContainsFunc(vals, func(v string) bool {
			return slices.ContainsFunc(c.Prefix, func(p string) bool { return strings.HasPrefix(v, p) })
		})
	}
	m.t.Fatalf("memStore: unsupported condition %+v", c)
	return false
}

func (m *memStore) Search(_ context.Context, q *store.Query) ([]*store.Record, bool, error) {
	m.queries = append(m.queries, q)
	var out []*store.Record
	for _, r := range m.recs {
		if r.Type != q.Type {
			continue
		}
		ok := true
		for _, c := range q.And {
			ok = ok && m.match(c, m.fields[r])
		}
		if ok {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *store.Record) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

func setVar(t *testing.T, v *int, n int) {
	old := *v
	*v = n
	t.Cleanup(func() { *v = old })
}

// fixture: five Patients p1..p5, Observation oN referring to pN, and o6
// referring to p1 again.
func capFixture(t *testing.T) *memStore {
	m := &memStore{t: t}
	for i := 1; i <= 5; i++ {
		m.add(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"Peters"}]}`, i))
		m.add(fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i))
	}
	m.add(`{"resourceType":"Observation","id":"o6","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`)
	return m
}

func keys(recs []*store.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

func run(t *testing.T, m *memStore, typ, query string) ([]*store.Record, []*store.Record, []fault.Issue) {
	t.Helper()
	q, _ := url.ParseQuery(query)
	r, err := Parse(builtins, typ, q, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(context.Background(), m, r); err != nil {
		t.Fatal(err)
	}
	matches, _, err := m.Search(context.Background(), &store.Query{Type: typ, And: r.Conds, Sort: r.Sort, Limit: r.Count})
	if err != nil {
		t.Fatal(err)
	}
	inc, issues, err := Includes(context.Background(), m, r, matches)
	if err != nil {
		t.Fatal(err)
	}
	return matches, inc, issues
}

func TestIncludeCap(t *testing.T) {
	m := capFixture(t)
	// Under the cap: every referenced Patient once, no warning.
	_, inc, issues := run(t, m, "Observation", "_include=Observation:subject")
	if diff := cmp.Diff([]string{"Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4", "Patient/p5"}, keys(inc)); diff != "" || issues != nil {
		t.Errorf("includes (-want +got):\n%s\nissues %v", diff, issues)
	}
	// Exactly at the cap is not a cut.
	setVar(t, &includeCap, 5)
	if _, inc, issues = run(t, m, "Observation", "_include=Observation:subject"); len(inc) != 5 || issues != nil {
		t.Errorf("at the cap: %v %v", keys(inc), issues)
	}
	// Over it: the first three, and a warning.
	setVar(t, &includeCap, 3)
	_, inc, issues = run(t, m, "Observation", "_include=Observation:subject")
	if diff := cmp.Diff([]string{"Patient/p1", "Patient/p2", "Patient/p3"}, keys(inc)); diff != "" {
		t.Errorf("capped includes (-want +got):\n%s", diff)
	}
	if len(issues) != 1 || issues[0].Severity != "warning" || !strings.Contains(issues[0].Diagnostics, "more than 3") {
		t.Errorf("no cap warning: %+v", issues)
	}
	// _revinclude, and small batches: the cap holds across queries.
	setVar(t, &inBatch, 2)
	_, inc, issues = run(t, m, "Patient", "_revinclude=Observation:subject")
	if diff := cmp.Diff([]string{"Observation/o1", "Observation/o2", "Observation/o6"}, keys(inc)); diff != "" || len(issues) != 1 {
		t.Errorf("capped revincludes (-want +got):\n%s\nissues %v", diff, issues)
	}
	setVar(t, &includeCap, 6)
	_, inc, issues = run(t, m, "Patient", "_revinclude=Observation:subject")
	if len(inc) != 6 || issues != nil {
		t.Errorf("revincludes in batches of 2: %v %v", keys(inc), issues)
	}
}

func TestJoinCap(t *testing.T) {
	m := capFixture(t)
	matches, _, _ := run(t, m, "Observation", "subject:Patient.name=peters")
	if len(matches) != 6 {
		t.Errorf("chain: %v", keys(matches))
	}
	setVar(t, &joinCap, 4)
	for _, query := range []string{"subject:Patient.name=peters", "patient.name=peters"} {
		q, _ := url.ParseQuery(query)
		r, err := Parse(builtins, "Observation", q, true)
		if err != nil {
			t.Fatal(err)
		}
		err = Resolve(context.Background(), m, r)
		if fe := fault.As(err); err == nil || fe.Kind != fault.Invalid || fe.Issues[0].Code != "too-costly" || !strings.Contains(fe.Issues[0].Diagnostics, "more than 4") {
			t.Errorf("%s over the cap: %v", query, err)
		}
	}
	q, _ := url.ParseQuery("_has:Observation:subject:code:text=x")
	r, _ := Parse(builtins, "Patient", q, false)
	if err := Resolve(context.Background(), m, r); err == nil {
		t.Error("_has over the cap: no error")
	}
	// Within the cap, _has gives each referenced Patient once.
	setVar(t, &joinCap, 6)
	matches, _, _ = run(t, m, "Patient", "_has:Observation:subject:code:text=x")
	if len(matches) != 5 {
		t.Errorf("_has: %v", keys(matches))
	}
}

// Resolve binds the join criteria into the cursor's canonical query.
func TestJoinCanonical(t *testing.T) {
	m := capFixture(t)
	canon := func(query string) string {
		q, _ := url.ParseQuery(query)
		r, err := Parse(builtins, "Observation", q, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := Resolve(context.Background(), m, r); err != nil {
			t.Fatal(err)
		}
		return r.Canonical
	}
	if canon("subject:Patient.name=a") == canon("subject:Patient.name=b") {
		t.Error("two chains share a canonical query")
	}
	if canon("subject:Patient.name=a&_include=Observation:subject") != canon("subject:Patient.name=a") {
		t.Error("_include changes the canonical query")
	}
}
