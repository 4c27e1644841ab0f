package kap

import (
	"encoding/json"
	"testing"
)

// dec parses a lexeme the test knows to be valid.
func dec(t *testing.T, s string) Decimal {
	t.Helper()
	d, err := ParseDecimal(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"72.4", "72.4"},
		{"0.50", "0.50"},
		{"-3", "-3"},
		{"-0.05", "-0.05"},
		{"1e2", "100"},
		{"1.5E+1", "15"},
		{"25e-3", "0.025"},
		{"0", "0"},
	} {
		if got := dec(t, tc.in).String(); got != tc.want {
			t.Errorf("ParseDecimal(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "1/3", "01", ".5", "5.", "+5", "1e999", "0x10", "NaN", "1,5"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) accepted", bad)
		}
	}
}

func TestDoseArithmetic(t *testing.T) {
	for _, tc := range []struct {
		perKg, kg   string
		exact, mg01 string // the product, and rounded to 0.1 mg
	}{
		{"0.5", "72.4", "36.20", "36.2"},
		{"0.7", "72.4", "50.68", "50.7"},
		{"0.75", "48.3", "36.225", "36.2"}, // .225 → .2: under half
		{"0.25", "145", "36.25", "36.3"},   // exactly half: away from zero
		{"1", "80", "80", "80"},            // no digits to round
		{"0.1", "0.1", "0.01", "0.0"},      // rounds to zero, keeps one place
		{"0.3", "3", "0.9", "0.9"},         // 0.1 + 0.2 style: no float error
		{"1.15", "10", "11.50", "11.5"},    // 1.15 is not exact in binary
		{"0.45", "99.9999", "44.999955", "45.0"},
	} {
		p := dec(t, tc.perKg).Mul(dec(t, tc.kg))
		if p.String() != tc.exact {
			t.Errorf("%s × %s = %s, want %s", tc.perKg, tc.kg, p, tc.exact)
		}
		if got := p.Round(1).String(); got != tc.mg01 {
			t.Errorf("%s × %s rounded = %s, want %s", tc.perKg, tc.kg, got, tc.mg01)
		}
	}
}

func TestDecimalCompareAndJSON(t *testing.T) {
	if !dec(t, "36.2").Equal(dec(t, "36.20")) || dec(t, "50.68").Cmp(dec(t, "50.7")) >= 0 || dec(t, "-1").Cmp(Decimal{}) >= 0 {
		t.Error("comparison across scales is wrong")
	}
	b, err := json.Marshal(struct{ V Decimal }{dec(t, "50.70")})
	if err != nil || string(b) != `{"V":50.70}` {
		t.Errorf("json = %s, %v", b, err)
	}
	for _, tc := range []struct {
		num, den int64
		want     string
	}{
		{-11 * 100, 18, "-61.1"},
		{-9 * 100, 18, "-50.0"},
		{-1 * 100, 6, "-16.7"},
		{-1, 4, "-0.3"}, // exactly half: away from zero, also below zero
		{1, 4, "0.3"},
		{1 * 100, 8, "12.5"},
		{1, 3, "0.3"},
	} {
		if got := ratio(tc.num, tc.den, 1).String(); got != tc.want {
			t.Errorf("ratio(%d, %d) = %s, want %s", tc.num, tc.den, got, tc.want)
		}
	}
}
