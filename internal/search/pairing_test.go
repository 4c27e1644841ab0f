package search

import (
	"slices"
	"testing"

	"github.com/kapfhir/kapfhir/internal/store"
)

// Conditions on both ends of a range (eq, ap) hold for one value: the start
// of one value and the end of another do not make a match.
func TestBothEndsOfOneValue(t *testing.T) {
	period := func(start, end string) string {
		return `{"detail":{"status":"scheduled","scheduledPeriod":{"start":"` + start + `","end":"` + end + `"}}}`
	}
	rng := func(lo, hi string) string {
		return `{"probabilityRange":{"low":{"value":` + lo + `},"high":{"value":` + hi + `}}}`
	}
	docs := map[string]*store.Index{
		// [2019-12-01, 2020-01-06) and [2020-03-01, 2021-02-02): a start and
		// an end in 2020, but neither period within it.
		"split": indexOf(t, `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"activity":[`+
			period("2019-12-01", "2020-01-05")+`,`+period("2020-03-01", "2021-02-01")+`]}`),
		"within": indexOf(t, `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"activity":[`+
			period("2018-01-01", "2018-02-01")+`,`+period("2020-05-01", "2020-05-31")+`]}`),
		// 1900 and 2100: ap widens by 10% of the distance from now, which
		// stays far below a century.
		"far": indexOf(t, `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"activity":[`+
			period("1900-01-01", "1900-12-31")+`,`+period("2100-01-01", "2100-12-31")+`]}`),
		// [0.05, 0.25) and [0.45, 0.65): a low above 0.25 and a high below
		// 0.35, but neither Range within [0.25, 0.35).
		"rsplit": indexOf(t, `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/p"},"prediction":[`+
			rng("0.1", "0.2")+`,`+rng("0.5", "0.6")+`]}`),
		"rwithin": indexOf(t, `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/p"},"prediction":[`+
			rng("0.1", "0.2")+`,`+rng("0.3", "0.3")+`]}`),
	}
	for _, tc := range []struct {
		typ, query string
		want       []string
	}{
		{"CarePlan", "activity-date=eq2020", []string{"within"}},
		{"CarePlan", "activity-date=2020-05", []string{"within"}},
		{"CarePlan", "activity-date=ne2020", []string{"far", "split", "within"}}, // some value is not within 2020
		{"CarePlan", "activity-date=ap2000", nil},
		{"CarePlan", "activity-date=ap1900-06", []string{"far"}},
		{"CarePlan", "activity-date=gt2020-12", []string{"far", "split"}},
		{"RiskAssessment", "probability=eq0.3", []string{"rwithin"}},
		{"RiskAssessment", "probability=0.4", nil},
		{"RiskAssessment", "probability=ap0.55", []string{"rsplit"}},
		{"RiskAssessment", "probability=ap0.8", nil},
	} {
		if got := matches(t, tc.typ, tc.query, docs); !slices.Equal(got, tc.want) {
			t.Errorf("%s?%s = %v, want %v", tc.typ, tc.query, got, tc.want)
		}
	}
}
