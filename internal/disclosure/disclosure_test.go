package disclosure

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/store"
)

const (
	treat  = `"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]`
	toH    = `"actor":[{"reference":{"reference":"Organization/h"}}]`
	permit = `"type":"permit",` + toH + `,` + treat
	sud    = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"SUD"}`
	part2  = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}`
)

// TestConsentPermits is the Consent rule, as the sync applies it (the
// recipient Organization/h, for treatment) and as a token's client or
// user is matched.
func TestConsentPermits(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	hospital := Recipient{Actors: []string{"Organization/h"}}
	for _, tc := range []struct {
		name    string
		consent string
		labels  []string
		to      Recipient // zero: hospital
		purpose string    // "": TREAT
		want    bool
	}{
		{"permit", `{"status":"active","provision":{` + permit + `}}`, []string{"42CFRPart2"}, Recipient{}, "", true},
		{"inactive", `{"status":"inactive","provision":{` + permit + `}}`, []string{"42CFRPart2"}, Recipient{}, "", false},
		{"no provision", `{"status":"active"}`, []string{"42CFRPart2"}, Recipient{}, "", false},
		{"deny at the root", `{"status":"active","provision":{"type":"deny",` + toH + `}}`, []string{"SUD"}, Recipient{}, "", false},
		{"another recipient", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"reference":"Organization/other"}}],` + treat + `}}`, []string{"SUD"}, Recipient{}, "", false},
		{"payment only", `{"status":"active","provision":{"type":"permit",` + toH + `,
			"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HPAYMT"}]}}`, []string{"SUD"}, Recipient{}, "", false},
		{"payment, for payment", `{"status":"active","provision":{"type":"permit",` + toH + `,
			"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HPAYMT"}]}}`, []string{"SUD"}, Recipient{}, "HPAYMT", true},
		{"no purpose restriction", `{"status":"active","provision":{"type":"permit",` + toH + `}}`, []string{"SUD"}, Recipient{}, "", true},
		{"no actor restriction", `{"status":"active","provision":{"type":"permit",` + treat + `}}`, []string{"SUD"}, Recipient{}, "", true},
		{"expired", `{"status":"active","provision":{` + permit + `,"period":{"start":"2025-01-01","end":"2026-05-31"}}}`, []string{"SUD"}, Recipient{}, "", false},
		{"ends today: open until the end of the day", `{"status":"active","provision":{` + permit + `,"period":{"end":"2026-06-01"}}}`, []string{"SUD"}, Recipient{}, "", true},
		{"not yet", `{"status":"active","provision":{` + permit + `,"period":{"start":"2026-07-01T00:00:00Z"}}}`, []string{"SUD"}, Recipient{}, "", false},
		{"labels listed, all covered", `{"status":"active","provision":{` + permit + `,"securityLabel":[` + sud + `,` + part2 + `]}}`, []string{"SUD", "42CFRPart2"}, Recipient{}, "", true},
		{"labels listed, one missing", `{"status":"active","provision":{` + permit + `,"securityLabel":[` + sud + `]}}`, []string{"SUD", "42CFRPart2"}, Recipient{}, "", false},
		{"nested deny of the label", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","securityLabel":[` + part2 + `]}]}}`, []string{"42CFRPart2"}, Recipient{}, "", false},
		{"nested deny of another label", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","securityLabel":[` + sud + `]}]}}`, []string{"42CFRPart2"}, Recipient{}, "", true},
		{"nested deny of everything", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny"}]}}`, []string{"42CFRPart2"}, Recipient{}, "", false},
		{"nested deny for another recipient", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","actor":[{"reference":{"reference":"Organization/other"}}]}]}}`, []string{"42CFRPart2"}, Recipient{}, "", true},
		{"nested deny for another purpose", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny",
			"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HPAYMT"}]}]}}`, []string{"42CFRPart2"}, Recipient{}, "", true},
		{"deny nested deeper", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"permit","provision":[{"type":"deny","securityLabel":[` + part2 + `]}]}]}}`, []string{"42CFRPart2"}, Recipient{}, "", false},
		{"expired deny", `{"status":"active","provision":{` + permit + `,"provision":[{"type":"deny","period":{"end":"2026-01-01"}}]}}`, []string{"42CFRPart2"}, Recipient{}, "", true},
		{"class covers the type", `{"status":"active","provision":{` + permit + `,"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}]}}`, []string{"SUD"}, Recipient{}, "", true},
		{"class of another type", `{"status":"active","provision":{` + permit + `,"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}]}}`, []string{"SUD"}, Recipient{}, "", false},
		{"data names the resource", `{"status":"active","provision":{` + permit + `,"data":[{"meaning":"instance","reference":{"reference":"Observation/o1"}}]}}`, []string{"SUD"}, Recipient{}, "", true},
		{"data names another", `{"status":"active","provision":{` + permit + `,"data":[{"meaning":"instance","reference":{"reference":"Observation/o2"}}]}}`, []string{"SUD"}, Recipient{}, "", false},
		{"the token's user, absolute", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"reference":"https://ehr.example/fhir/Practitioner/p1"}}]}}`,
			[]string{"SUD"}, Recipient{Actors: []string{"Practitioner/p1"}}, "", true},
		{"the token's client", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"identifier":{"system":"urn:kapfhir:oauth-client-id","value":"app"}}}]}}`,
			[]string{"SUD"}, Recipient{ClientID: "app"}, "", true},
		{"another client", `{"status":"active","provision":{"type":"permit","actor":[{"reference":{"identifier":{"system":"urn:kapfhir:oauth-client-id","value":"other"}}}]}}`,
			[]string{"SUD"}, Recipient{ClientID: "app"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c consent
			if err := json.Unmarshal([]byte(tc.consent), &c); err != nil {
				t.Fatal(err)
			}
			to, purpose := tc.to, tc.purpose
			if to.Actors == nil && to.ClientID == "" {
				to = hospital
			}
			if purpose == "" {
				purpose = Treatment
			}
			s := subject{typ: "Observation", id: "o1", labels: tc.labels, to: to, purpose: purpose, now: now}
			if got := c.permits(s); got != tc.want {
				t.Errorf("permits = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeStore holds raw Consents by patient and counts the searches.
type fakeStore struct {
	consents map[string][]string
	searches int
}

func (f *fakeStore) Search(_ context.Context, q *store.Query) ([]*store.Record, bool, error) {
	f.searches++
	var out []*store.Record
	for patient, cs := range f.consents {
		if strings.Contains(mustJSON(q.And), patient) {
			for i, c := range cs {
				out = append(out, &store.Record{Type: "Consent", ID: patient[len("Patient/"):] + "-" + string(rune('a'+i)), Raw: c})
			}
		}
	}
	return out, false, nil
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func observation(id, patient string, labels ...string) string {
	var sec []string
	for _, l := range labels {
		sec = append(sec, `{"system":"`+SysActCode+`","code":"`+l+`"}`)
	}
	return `{"resourceType":"Observation","id":"` + id + `","meta":{"security":[` + strings.Join(sec, ",") +
		`]},"status":"final","code":{"text":"x"},"subject":{"reference":"` + patient + `"}}`
}

// TestScope: the purpose gate, break the glass, the anonymous operator,
// resources without a patient, and one Consent search per patient.
func TestScope(t *testing.T) {
	ctx := context.Background()
	st := &fakeStore{consents: map[string][]string{
		"Patient/p1": {`{"resourceType":"Consent","status":"active","provision":{"type":"permit","actor":[{"reference":{"reference":"Practitioner/doc"}}],` + treat + `}}`},
	}}
	pol := New(st, fhir.NewRegistry(), nil)
	recs := []*store.Record{
		{Type: "Observation", ID: "plain", Raw: observation("plain", "Patient/p1")},
		{Type: "Observation", ID: "s1", Raw: observation("s1", "Patient/p1", "42CFRPart2", "SUD")},
		{Type: "Observation", ID: "s2", Raw: observation("s2", "Patient/p1", "SUD")},
		{Type: "Observation", ID: "other", Raw: observation("other", "Patient/p2", "SUD")},
		{Type: "Observation", ID: "nobody", Raw: observation("nobody", "Group/g", "SUD")},
		{Type: "Observation", ID: "gone", Deleted: true},
	}
	for _, tc := range []struct {
		name     string
		p        *auth.Principal
		want     []string
		glass    bool
		searches int
	}{
		{"anonymous: everything", &auth.Principal{Anonymous: true}, []string{"plain", "s1", "s2", "other", "nobody", "gone"}, false, 0},
		{"no purpose", &auth.Principal{FHIRUser: "Practitioner/doc"}, []string{"plain", "gone"}, false, 0},
		{"a purpose the policy does not allow", &auth.Principal{FHIRUser: "Practitioner/doc", PurposeOfUse: []string{"MARKT"}}, []string{"plain", "gone"}, false, 0},
		{"treatment, consented actor", &auth.Principal{FHIRUser: "Practitioner/doc", PurposeOfUse: []string{"TREAT"}}, []string{"plain", "s1", "s2", "gone"}, false, 2},
		{"treatment, another actor", &auth.Principal{FHIRUser: "Practitioner/nurse", PurposeOfUse: []string{"TREAT"}}, []string{"plain", "gone"}, false, 2},
		{"payment, consent for treatment only", &auth.Principal{FHIRUser: "Practitioner/doc", PurposeOfUse: []string{"HPAYMT"}}, []string{"plain", "gone"}, false, 2},
		{"break the glass", &auth.Principal{FHIRUser: "Practitioner/nurse", PurposeOfUse: []string{"ETREAT"}}, []string{"plain", "s1", "s2", "other", "nobody", "gone"}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.searches = 0
			s := pol.Scope(RecipientOf(tc.p))
			kept, n, err := s.Filter(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range kept {
				ids = append(ids, r.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if n != len(recs)-len(tc.want) || s.Withheld() != n {
				t.Errorf("withheld %d, counted %d; want %d", n, s.Withheld(), len(recs)-len(tc.want))
			}
			if s.BrokeGlass() != tc.glass {
				t.Errorf("BrokeGlass = %v", s.BrokeGlass())
			}
			if st.searches != tc.searches {
				t.Errorf("%d Consent searches, want %d (one per patient)", st.searches, tc.searches)
			}
		})
	}
	var none *Scope
	if ok, err := none.Allows(ctx, "Observation", "s1", recs[1].Raw); !ok || err != nil {
		t.Errorf("a nil scope (no request) refused: %v %v", ok, err)
	}
}

func TestLabels(t *testing.T) {
	for raw, want := range map[string][]string{
		observation("a", "Patient/p"):                      nil,
		observation("a", "Patient/p", "PSY", "R"):          nil,
		observation("a", "Patient/p", "SUD", "42CFRPart2"): {"SUD", "42CFRPart2"},
		`{"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActUSPrivacyLaw","code":"42CFRPart2"}]}}`: {"42CFRPart2"},
		`{"meta":{"security":[{"system":"urn:other","code":"SUD"}]}}`:                                                       nil,
	} {
		got, err := Labels(raw)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Labels(%s) (-want +got):\n%s", raw, diff)
		}
	}
}
