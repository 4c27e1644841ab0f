package outbound

import (
	"encoding/json"
	"testing"
	"time"
)

func TestConsentPermits(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	const permit = `"type":"permit","actor":[{"reference":{"reference":"Organization/h"}}],
		"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]`
	sud := `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}`
	part2 := `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}`
	for _, tc := range []struct {
		name    string
		consent string
		labels  []string
		want    bool
	}{
		{"permit", `{"status":"active","provision":{` + permit + `}}`, []string{"42CFRPart2"}, true},
		{"inactive", `{"status":"inactive","provision":{` + permit + `}}`, []string{"42CFRPart2"}, false},
		{"no provision", `{"status":"active"}`, []string{"42CFRPart2"}, false},
		{"deny at the root", `{"status":"active","provision":{"type":"deny","actor":[{"reference":{"reference":"Organization/h"}}]}}`, []string{"SUD"}, false},
		{"another recipient", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"reference":"Organization/other"}}],
			"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}}`, []string{"SUD"}, false},
		{"payment only", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"reference":"Organization/h"}}],
			"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HPAYMT"}]}}`, []string{"SUD"}, false},
		{"expired", `{"status":"active","provision":{` + permit + `,"period":{"start":"2025-01-01","end":"2026-05-31"}}}`, []string{"SUD"}, false},
		{"ends today: open until the end of the day", `{"status":"active","provision":{` + permit + `,"period":{"end":"2026-06-01"}}}`, []string{"SUD"}, true},
		{"not yet", `{"status":"active","provision":{` + permit + `,"period":{"start":"2026-07-01T00:00:00Z"}}}`, []string{"SUD"}, false},
		{"labels listed, all covered", `{"status":"active","provision":{` + permit + `,"securityLabel":[` + sud + `,` + part2 + `]}}`, []string{"SUD", "42CFRPart2"}, true},
		{"labels listed, one missing", `{"status":"active","provision":{` + permit + `,"securityLabel":[` + sud + `]}}`, []string{"SUD", "42CFRPart2"}, false},
		{"nested deny of the label", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","securityLabel":[` + part2 + `]}]}}`, []string{"42CFRPart2"}, false},
		{"nested deny of another label", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","securityLabel":[` + sud + `]}]}}`, []string{"42CFRPart2"}, true},
		{"nested deny of everything", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny"}]}}`, []string{"42CFRPart2"}, false},
		{"nested deny for another recipient", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","actor":[{"reference":{"reference":"Organization/other"}}]}]}}`, []string{"42CFRPart2"}, true},
		{"deny nested deeper", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"permit","provision":[{"type":"deny","securityLabel":[` + part2 + `]}]}]}}`, []string{"42CFRPart2"}, false},
		{"expired deny", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","period":{"end":"2026-01-01"}}]}}`, []string{"42CFRPart2"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c consent
			if err := json.Unmarshal([]byte(tc.consent), &c); err != nil {
				t.Fatal(err)
			}
			if got := c.permits("Organization/h", tc.labels, now); got != tc.want {
				t.Errorf("permits = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 120 ":                         2 * time.Minute,
		"-3":                            0,
		"Mon, 01 Jun 2026 12:00:30 GMT": 30 * time.Second,
		"Mon, 01 Jun 2026 11:00:00 GMT": 0,
		"soon":                          0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
