package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestSearchConditions(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	docs := map[string]*store.Index{
		"a": {Token: []string{"code:1", "code=s|1"}, String: []string{"name:anna"}, DateLo: []string{"date|2020-01-01"}, DateHi: []string{"date|2020-01-02"}, Has: []string{"code", "name", "date"}},
		"b": {Token: []string{"code:2", "code=s|2"}, String: []string{"name:annabel"}, DateLo: []string{"date|2021-01-01"}, DateHi: []string{"date|2021-01-02"}, Has: []string{"code", "name", "date"}},
		"c": {Token: []string{"code:1", "code=t|1"}, String: []string{"name:bob"}, Has: []string{"code", "name"}},
		"d": {String: []string{"name:a.*"}, Has: []string{"name"}},
	}
	i := 0
	for id, ix := range docs {
		i++
		r := &store.Record{Type: "Patient", ID: id, VersionID: 1, LastUpdated: base.Add(time.Duration(i) * time.Minute), Method: "PUT", Raw: "{}", Index: ix}
		if err := s.Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		cond store.Cond
		want []string
	}{
		{"equality", store.Cond{Field: "tok", In: []string{"code:1"}}, []string{"a", "c"}},
		{"in", store.Cond{Field: "tok", In: []string{"code=s|1", "code=s|2"}}, []string{"a", "b"}},
		{"not in", store.Cond{Field: "tok", NotIn: []string{"code:1"}}, []string{"b", "d"}},
		{"prefix", store.Cond{Field: "str", Prefix: []string{"name:anna"}}, []string{"a", "b"}},
		{"prefix is not a pattern", store.Cond{Field: "str", Prefix: []string{"name:a."}}, []string{"d"}},
		{"range on one entry", store.Cond{Field: "dlo", Lo: "date|2020-06", Hi: "date|~"}, []string{"b"}},
		{"or", store.Cond{Or: []store.Cond{{Field: "tok", In: []string{"code:2"}}, {Field: "str", In: []string{"name:bob"}}}}, []string{"b", "c"}},
		{"missing", store.Cond{Field: "has", NotIn: []string{"date"}}, []string{"c", "d"}},
		{"hostile value", store.Cond{Field: "tok", In: []string{`{"$gt":""}`}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _, err := s.Search(ctx, &store.Query{Type: "Patient", And: []store.Cond{tc.cond}, Sort: []store.Sort{{Field: "rid"}}, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.ID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := s.Search(ctx, &store.Query{Type: "Patient", And: []store.Cond{{Field: "$where", In: []string{"1"}}}, Limit: 1}); err == nil {
		t.Error("a condition on an undeclared field was accepted")
	}
}

// Keyset paging visits every row once, in order, while rows are added.
func TestSearchKeysetPaging(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(n int) {
		r := &store.Record{Type: "Patient", ID: fmt.Sprintf("p%02d", n), VersionID: 1, LastUpdated: base.Add(time.Duration(n%5) * time.Hour), Method: "PUT", Raw: "{}"}
		if err := s.Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for n := 0; n < 20; n++ {
		add(n)
	}
	q := &store.Query{Type: "Patient", Sort: []store.Sort{{Field: "ts", Desc: true}, {Field: "rid"}}, Limit: 3}
	var seen []string
	for pages := 0; ; pages++ {
		recs, more, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			seen = append(seen, r.ID)
		}
		if !more {
			break
		}
		last := recs[len(recs)-1]
		q.After = []any{last.LastUpdated, last.ID}
		if pages == 1 {
			add(99) // sorts first (ts hour 4, p99 after p19): already passed, must not reappear or shift
		}
	}
	if len(seen) != 20 {
		t.Fatalf("paged %d rows, want the 20 there were at the start: %v", len(seen), seen)
	}
	dup := map[string]bool{}
	for _, id := range seen {
		if dup[id] {
			t.Fatalf("%s seen twice: %v", id, seen)
		}
		dup[id] = true
	}
	if n, err := s.Count(ctx, q); err != nil || n != 21 {
		t.Errorf("Count = %d, %v; want 21", n, err)
	}
}

// The keyset condition relies on how the store treats a missing sort key:
// {k: null} matches it, {k: {$ne: null}} and comparisons do not, and a sort
// puts it before every string. Checked here against the store tests run on
// (FerretDB 1.24 embedded, or MongoDB).
func TestMissingSortKeys(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	commitSortDocs(t, s, map[string]map[string]string{"a": {"k": "x"}, "b": nil, "c": {"k": "y"}, "d": {"o": "z"}})
	for _, tc := range []struct {
		name   string
		filter bson.D
		want   []string
	}{
		{"null matches missing", bson.D{{Key: "sa.k", Value: nil}}, []string{"b", "d"}},
		{"ne null", bson.D{{Key: "sa.k", Value: bson.D{{Key: "$ne", Value: nil}}}}, []string{"a", "c"}},
		{"exists", bson.D{{Key: "sa.k", Value: bson.D{{Key: "$exists", Value: true}}}}, []string{"a", "c"}},
		{"not exists", bson.D{{Key: "sa.k", Value: bson.D{{Key: "$exists", Value: false}}}}, []string{"b", "d"}},
		{"lt skips missing", bson.D{{Key: "sa.k", Value: bson.D{{Key: "$lt", Value: "y"}}}}, []string{"a"}},
		{"gt skips missing", bson.D{{Key: "sa.k", Value: bson.D{{Key: "$gt", Value: ""}}}}, []string{"a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := store.FindIDs(t, s, tc.filter, bson.D{{Key: "rid", Value: 1}})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	got := store.FindIDs(t, s, bson.D{}, bson.D{{Key: "sa.k", Value: -1}, {Key: "rid", Value: 1}})
	if diff := cmp.Diff([]string{"c", "a", "b", "d"}, got); diff != "" {
		t.Errorf("sort descending, missing last (-want +got):\n%s", diff)
	}
}

// commitSortDocs commits one Patient per id with the given sort keys (the
// same for sa and sd).
func commitSortDocs(t *testing.T, s *store.Store, docs map[string]map[string]string) {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, 0, len(docs))
	for id := range docs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		r := &store.Record{Type: "Patient", ID: id, VersionID: 1, LastUpdated: base.Add(time.Duration(i%2) * time.Hour), Method: "PUT", Raw: "{}",
			Index: &store.Index{SortAsc: docs[id], SortDesc: docs[id]}}
		if err := s.Commit(ctx(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func ctx() context.Context { return context.Background() }

// Keyset paging by parameter sort keys where some rows lack them: every
// page size, both directions, several keys; the pages joined are the
// whole result in order, each row once.
func TestKeysetWithMissingValues(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	docs := map[string]map[string]string{
		"p1": {"a": "m", "b": "1"}, "p2": nil, "p3": {"a": "m"}, "p4": {"b": "2"},
		"p5": {"a": "c", "b": "1"}, "p6": {"a": "m", "b": "1"}, "p7": nil, "p8": {"a": "z"},
	}
	commitSortDocs(t, s, docs)
	for _, tc := range []struct {
		name string
		sort []store.Sort
		want []string
	}{
		{"asc", []store.Sort{{Field: "sa.a"}, {Field: "rid"}}, []string{"p2", "p4", "p7", "p5", "p1", "p3", "p6", "p8"}},
		{"desc", []store.Sort{{Field: "sd.a", Desc: true}, {Field: "rid"}}, []string{"p8", "p1", "p3", "p6", "p5", "p2", "p4", "p7"}},
		{"desc, id desc", []store.Sort{{Field: "sd.a", Desc: true}, {Field: "rid", Desc: true}}, []string{"p8", "p6", "p3", "p1", "p5", "p7", "p4", "p2"}},
		{"asc, desc", []store.Sort{{Field: "sa.a"}, {Field: "sd.b", Desc: true}, {Field: "rid"}}, []string{"p4", "p2", "p7", "p5", "p1", "p6", "p3", "p8"}},
		{"desc, asc", []store.Sort{{Field: "sd.a", Desc: true}, {Field: "sa.b"}, {Field: "rid"}}, []string{"p8", "p3", "p1", "p6", "p5", "p2", "p7", "p4"}},
		{"time, desc", []store.Sort{{Field: "ts"}, {Field: "sd.b", Desc: true}, {Field: "rid"}}, []string{"p1", "p5", "p3", "p7", "p4", "p6", "p2", "p8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := page(t, s, tc.sort, nil, 100)
			if diff := cmp.Diff(tc.want, all); diff != "" {
				t.Fatalf("one page (-want +got):\n%s", diff)
			}
			for size := 1; size <= 3; size++ {
				var got []string
				var after []any
				for n := 0; n <= len(docs); n++ {
					recs, more, err := s.Search(ctx(), &store.Query{Type: "Patient", Sort: tc.sort, After: after, Limit: size})
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						got = append(got, r.ID)
					}
					if !more {
						break
					}
					after = recs[len(recs)-1].Keys
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("pages of %d (-want +got):\n%s", size, diff)
				}
			}
		})
	}
	bad := &store.Query{Type: "Patient", Sort: []store.Sort{{Field: "sa.a.b"}}, Limit: 1}
	if _, _, err := s.Search(ctx(), bad); err == nil {
		t.Error("a sort on a nested path was accepted")
	}
}

func page(t *testing.T, s *store.Store, sort []store.Sort, after []any, limit int) []string {
	t.Helper()
	recs, _, err := s.Search(ctx(), &store.Query{Type: "Patient", Sort: sort, After: after, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}

// A query over several types filters by them and pages through ids that
// repeat across types with type as the last tie-breaker: every row once.
func TestSearchSeveralTypes(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, typ := range []string{"Patient", "Observation", "Encounter"} {
		for _, id := range []string{"a", "b"} {
			r := &store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: ts, Method: "PUT", Raw: "{}"}
			if err := s.Commit(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		types []string
		sort  []store.Sort
		want  []string
	}{
		{"by id", []string{"Patient", "Observation"}, []store.Sort{{Field: "rid"}, {Field: "type"}},
			[]string{"Observation/a", "Patient/a", "Observation/b", "Patient/b"}},
		{"by lastUpdated descending", []string{"Patient", "Observation"}, []store.Sort{{Field: "ts", Desc: true}, {Field: "rid"}, {Field: "type"}},
			[]string{"Observation/a", "Patient/a", "Observation/b", "Patient/b"}},
		{"no types", []string{}, []store.Sort{{Field: "rid"}, {Field: "type"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &store.Query{Types: tc.types, Sort: tc.sort, Limit: 1}
			var got []string
			for {
				recs, more, err := s.Search(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					got = append(got, r.Type+"/"+r.ID)
				}
				if !more {
					break
				}
				last := recs[len(recs)-1]
				q.After = nil
				for _, k := range q.Sort {
					q.After = append(q.After, map[string]any{"ts": last.LastUpdated, "rid": last.ID, "type": last.Type}[k.Field])
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if n, err := s.Count(ctx, q); err != nil || n != int64(len(tc.want)) {
				t.Errorf("Count = %d, %v; want %d", n, err, len(tc.want))
			}
		})
	}
}
