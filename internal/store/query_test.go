package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
