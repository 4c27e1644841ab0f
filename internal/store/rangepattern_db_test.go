package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// A range holds for one entry, not a start from one entry and an end from
// another (FerretDB 1.24 evaluates $elemMatch {$gte, $lt} per operator).
func TestRangeHoldsForOneEntry(t *testing.T) {
	s, _ := storetest.Open(t, nil)
	ctx := context.Background()
	docs := map[string]*store.Index{
		"a": {Num: []string{"n|2", "n|5"}},
		"b": {Num: []string{"n|3"}},
		"c": {Num: []string{"m|3", "o|0"}},
		"d": {DateLo: []string{"birthdate|1980", "deathdate|2020"}},
		"e": {DateRange: []string{"d|2019-12|2020-01-05", "d|2020-03|2021-02"}},
		"f": {DateRange: []string{"d|2020-02|2020-03"}},
		"g": {NumRange: []string{`q\|s=a.b\||0001|0009`}},
	}
	i := 0
	for id, ix := range docs {
		i++
		r := &store.Record{Type: "P", ID: id, VersionID: 1, LastUpdated: time.Unix(int64(i), 0), Method: "PUT", Raw: "{}", Index: ix}
		if err := s.Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		cond store.Cond
		want []string
	}{
		{store.Cond{Field: "num", Lo: "n|3", Hi: "n|4"}, []string{"b"}},
		{store.Cond{Field: "num", Lo: "n|", Hi: "n|\x7f"}, []string{"a", "b"}},
		{store.Cond{Field: "num", Lo: "n|4\x00", Hi: "n|\x7f"}, []string{"a"}},
		{store.Cond{Field: "num", Lo: "n|4", Hi: "n|4"}, nil},
		{store.Cond{Field: "dlo", Lo: "birthdate|2000", Hi: "birthdate|\x7f"}, nil},
		{store.Cond{Field: "dlo", Lo: "birthdate|", Hi: "birthdate|2000"}, []string{"d"}},
		// Both ends of one entry: within 2020 is f only, though e has a
		// start in 2020 and an end before 2021 in two other entries.
		{pair("drg", "d|", "2020", "\x7f", "", "2021"), []string{"f"}},
		{pair("drg", "d|", "", "2020", "2020-02", "\x7f"), nil},
		{pair("drg", "d|", "", "\x7f", "", "\x7f"), []string{"e", "f"}},
		{pair("nrg", `q\|s=a.b\||`, "0000", "0002", "0005", "0010"), []string{"g"}},
		{pair("nrg", `q\|s=aXb\||`, "0000", "0002", "0005", "0010"), nil}, // the prefix is literal
		{pair("nrg", `q\|s=a.b\||`, "0000", "0002", "0010", "0020"), nil},
	} {
		recs, _, err := s.Search(ctx, &store.Query{Type: "P", And: []store.Cond{tc.cond}, Sort: []store.Sort{{Field: "rid"}}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("[%q, %q) %+v on %s (-want +got):\n%s", tc.cond.Lo, tc.cond.Hi, tc.cond.Pair, tc.cond.Field, diff)
		}
	}
}

func pair(field, prefix, lo1, hi1, lo2, hi2 string) store.Cond {
	return store.Cond{Field: field, Pair: &store.Pair{Prefix: prefix, First: store.Span{Lo: lo1, Hi: hi1}, Second: store.Span{Lo: lo2, Hi: hi2}}}
}
