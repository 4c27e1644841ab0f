package search

import (
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// searchDate parses a date search value, prefix included, into the prefix
// and the range [lo, hi) its precision covers. A value without a zone is
// taken as UTC.
func searchDate(code, v string) (string, time.Time, time.Time, error) {
	prefix := "eq"
	if len(v) >= 2 && strings.Contains("eq ne gt lt ge le sa eb ap", v[:2]) && v[0] >= 'a' {
		prefix, v = v[:2], v[2:]
	}
	layouts := []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01-02T15:04Z07:00", func(t time.Time) time.Time { return t.Add(time.Minute) }},
		{"2006-01-02T15:04", func(t time.Time) time.Time { return t.Add(time.Minute) }},
		{"2006-01-02T15:04:05Z07:00", func(t time.Time) time.Time { return t.Add(time.Second) }},
		{"2006-01-02T15:04:05", func(t time.Time) time.Time { return t.Add(time.Second) }},
	}
	for _, l := range layouts {
		if t, err := time.Parse(l.layout, v); err == nil {
			return prefix, t.UTC(), l.step(t).UTC(), nil
		}
	}
	// Fractional seconds: precise to the digits given.
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, v); err == nil {
			frac := v[strings.Index(v, ".")+1:]
			digits := len(frac) - len(strings.TrimLeft(frac, "0123456789"))
			step := time.Second
			for i := 0; i < digits && i < 9; i++ {
				step /= 10
			}
			return prefix, t.UTC(), t.Add(step).UTC(), nil
		}
	}
	return "", time.Time{}, time.Time{}, fault.New(fault.Invalid, "", "%s value %q is not a date such as ge2021-03-04 or 2021-03-04T10:00:00Z", code, v)
}

// dateCond compiles one date value against the parameter's ranges [lo, hi)
// stored as code|lo and code|hi entries, and as code|lo|hi for eq and ap,
// which test both ends of one value.
func dateCond(code, v string) (store.Cond, error) {
	prefix, qlo, qhi, err := searchDate(code, v)
	if err != nil {
		return store.Cond{}, err
	}
	lo, hi := code+"|"+qlo.Format(instantLayout), code+"|"+qhi.Format(instantLayout)
	first, last := code+"|", code+"|\x7f" // all entries of code lie in [first, last)
	after := func(s string) string { return s + "\x00" }
	switch prefix {
	case "eq":
		return bothEnds(code, store.Span{Lo: qlo.Format(instantLayout), Hi: "\x7f"}, store.Span{Hi: after(qhi.Format(instantLayout))}), nil
	case "ne":
		return store.Cond{Or: []store.Cond{{Field: "dlo", Lo: first, Hi: lo}, {Field: "dhi", Lo: after(hi), Hi: last}}}, nil
	case "gt":
		return store.Cond{Field: "dhi", Lo: after(hi), Hi: last}, nil
	case "ge":
		return store.Cond{Field: "dhi", Lo: after(lo), Hi: last}, nil
	case "lt":
		return store.Cond{Field: "dlo", Lo: first, Hi: lo}, nil
	case "le":
		return store.Cond{Field: "dlo", Lo: first, Hi: hi}, nil
	case "sa":
		return store.Cond{Field: "dlo", Lo: hi, Hi: last}, nil
	case "eb":
		return store.Cond{Field: "dhi", Lo: first, Hi: after(lo)}, nil
	}
	alo, ahi := approx(qlo, qhi)
	wlo, whi := alo.Format(instantLayout), ahi.Format(instantLayout)
	return bothEnds(code, store.Span{Hi: whi}, store.Span{Lo: after(wlo), Hi: "\x7f"}), nil
}

// bothEnds is the condition on one date range entry of code in drg: its
// start in lo and its end in hi.
func bothEnds(code string, lo, hi store.Span) store.Cond {
	return store.Cond{Field: "drg", Pair: &store.Pair{Prefix: code + "|", First: lo, Second: hi}}
}

// approx widens [lo, hi) for the ap prefix by 10% of its distance from now,
// and at least by its own width, as the spec suggests.
func approx(lo, hi time.Time) (time.Time, time.Time) {
	gap := time.Since(lo).Abs() / 10
	if w := hi.Sub(lo); gap < w {
		gap = w
	}
	return lo.Add(-gap), hi.Add(gap)
}

// lastUpdatedCond compiles _lastUpdated against the record's own time.
func lastUpdatedCond(modifier, v string) (store.Cond, error) {
	if modifier != "" {
		return store.Cond{}, badModifier("_lastUpdated", modifier)
	}
	prefix, lo, hi, err := searchDate("_lastUpdated", v)
	if err != nil {
		return store.Cond{}, err
	}
	switch prefix {
	case "eq":
		return store.Cond{Field: "ts", From: lo, To: hi}, nil
	case "ne":
		return store.Cond{Or: []store.Cond{{Field: "ts", To: lo}, {Field: "ts", From: hi}}}, nil
	case "gt", "sa":
		return store.Cond{Field: "ts", From: hi}, nil
	case "ge":
		return store.Cond{Field: "ts", From: lo}, nil
	case "lt", "eb":
		return store.Cond{Field: "ts", To: lo}, nil
	case "le":
		return store.Cond{Field: "ts", To: hi}, nil
	}
	alo, ahi := approx(lo, hi)
	return store.Cond{Field: "ts", From: alo, To: ahi}, nil
}
