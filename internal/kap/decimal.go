package kap

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// Decimal is an exact decimal number: an integer and the number of digits
// after the point. Doses and weights are multiplied and compared with it,
// never through float64, so 0.7 mg/kg × 72.4 kg is exactly 50.68 mg.
// The zero value is 0.
type Decimal struct {
	unscaled *big.Int
	scale    int // digits after the point, ≥ 0
}

// decimalSyntax is FHIR's decimal (and JSON's number) grammar.
var decimalSyntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// maxExponent bounds an exponent so a lexeme like 1e999999999 cannot make
// a huge integer.
const maxExponent = 100

// ParseDecimal reads a FHIR decimal lexeme ("72.4", "0.50", "1e2").
func ParseDecimal(s string) (Decimal, error) {
	if !decimalSyntax.MatchString(s) {
		return Decimal{}, fmt.Errorf("%q is not a decimal number", s)
	}
	mantissa, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxExponent || e < -maxExponent {
			return Decimal{}, fmt.Errorf("%q: exponent out of range", s)
		}
		mantissa, exp = s[:i], e
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	u, _ := new(big.Int).SetString(whole+frac, 10) // the pattern guarantees digits
	scale := len(frac) - exp
	if scale < 0 {
		u.Mul(u, pow10(-scale))
		scale = 0
	}
	return Decimal{unscaled: u, scale: scale}, nil
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

func (d Decimal) int() *big.Int {
	if d.unscaled == nil {
		return new(big.Int)
	}
	return d.unscaled
}

// String renders the number with its scale: 50.68, 36.20, -61.1.
func (d Decimal) String() string {
	s := new(big.Int).Abs(d.int()).String()
	if d.scale > 0 {
		if len(s) <= d.scale {
			s = strings.Repeat("0", d.scale-len(s)+1) + s
		}
		s = s[:len(s)-d.scale] + "." + s[len(s)-d.scale:]
	}
	if d.int().Sign() < 0 {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes the number as a JSON number with its exact digits.
func (d Decimal) MarshalJSON() ([]byte, error) { return []byte(d.String()), nil }

// Cmp compares the values: -1, 0 or +1.
func (d Decimal) Cmp(o Decimal) int {
	a, b := d.aligned(o)
	return a.Cmp(b)
}

// Equal reports equal values (36.2 equals 36.20); go-cmp uses it.
func (d Decimal) Equal(o Decimal) bool { return d.Cmp(o) == 0 }

// aligned returns both unscaled values at the larger scale.
func (d Decimal) aligned(o Decimal) (*big.Int, *big.Int) {
	a, b := d.int(), o.int()
	switch {
	case d.scale < o.scale:
		a = new(big.Int).Mul(a, pow10(o.scale-d.scale))
	case o.scale < d.scale:
		b = new(big.Int).Mul(b, pow10(d.scale-o.scale))
	}
	return a, b
}

// Mul is the exact product.
func (d Decimal) Mul(o Decimal) Decimal {
	return Decimal{unscaled: new(big.Int).Mul(d.int(), o.int()), scale: d.scale + o.scale}
}

// Round rounds to places digits after the point, half away from zero
// (50.68 → 50.7, 36.25 → 36.3, 36.24 → 36.2). A number with fewer digits
// is returned as it is.
func (d Decimal) Round(places int) Decimal {
	if d.scale <= places {
		return d
	}
	return Decimal{unscaled: divRound(d.int(), pow10(d.scale-places)), scale: places}
}

// ratio is num/den rounded to places digits after the point, half away
// from zero; den must not be 0.
func ratio(num, den int64, places int) Decimal {
	n := new(big.Int).Mul(big.NewInt(num), pow10(places))
	return Decimal{unscaled: divRound(n, big.NewInt(den)), scale: places}
}

// divRound is n/d rounded half away from zero.
func divRound(n, d *big.Int) *big.Int {
	q, r := new(big.Int).QuoRem(n, d, new(big.Int))
	// |2r| ≥ |d| means the remainder is at least half: move away from zero.
	twice := new(big.Int).Abs(r)
	twice.Lsh(twice, 1)
	if twice.Cmp(new(big.Int).Abs(d)) >= 0 {
		if (n.Sign() < 0) != (d.Sign() < 0) {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}
