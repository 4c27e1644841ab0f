package store

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// The pattern of [lo, hi) matches exactly the strings in it, against
// Go's regexp (RE2, as FerretDB evaluates it).
func TestRangePattern(t *testing.T) {
	alphabet := []rune{0, 1, '$', '0', '9', 'a', 'f', '|', '~', 0x7f, 'é', '中', 0x10FFFF}
	r := rand.New(rand.NewPCG(3, 4))
	word := func() string {
		n := r.IntN(5)
		rs := make([]rune, n)
		for i := range rs {
			rs[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(rs)
	}
	for range 3000 {
		lo, hi := word(), word()
		if r.IntN(3) == 0 { // share a prefix
			p := word()
			lo, hi = p+lo, p+hi
		}
		pat, ok := rangePattern(lo, hi)
		if ok != (lo < hi) {
			t.Fatalf("[%q, %q): ok = %v", lo, hi, ok)
		}
		if !ok {
			continue
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			t.Fatalf("[%q, %q): %s: %v", lo, hi, pat, err)
		}
		for _, s := range []string{lo, hi, lo + "\x00", hi + "\x00", word(), word(), word(), lo + word(), string([]rune(hi)[:len([]rune(hi))/2])} {
			if want := lo <= s && s < hi; re.MatchString(s) != want {
				t.Fatalf("[%q, %q) %s: %q matches %v, want %v", lo, hi, pat, s, !want, want)
			}
		}
	}
	if _, ok := rangePattern("a\xff", "b"); ok {
		t.Error("a bound that is not UTF-8 gave a pattern")
	}
}
