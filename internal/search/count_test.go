package search

import (
	"net/url"
	"testing"
)

func TestCountCapIsAnnounced(t *testing.T) {
	for _, tc := range []struct {
		count  string
		want   int
		warned bool
	}{
		{"0", 0, false},
		{"10", 10, false},
		{"1000", 1000, false},
		{"1001", 1000, true},
		{"5000", 1000, true},
	} {
		r, err := Parse(builtins, "Patient", url.Values{"_count": {tc.count}}, false)
		if err != nil {
			t.Fatalf("_count=%s: %v", tc.count, err)
		}
		if r.Count != tc.want || (len(r.Ignored) == 1) != tc.warned {
			t.Errorf("_count=%s: count %d, issues %v; want %d, warned %v", tc.count, r.Count, r.Ignored, tc.want, tc.warned)
		}
		if tc.warned && (r.Ignored[0].Severity != "warning" || r.Ignored[0].Expression[0] != "_count") {
			t.Errorf("_count=%s: issue %+v", tc.count, r.Ignored[0])
		}
	}
}
