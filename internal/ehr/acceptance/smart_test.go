package acceptance

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/ehr"
	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/smart"
	"github.com/kapfhir/kapfhir/internal/ehr/smart/smarttest"
)

// TestSMARTBackend: the engine authenticates to the stand-in with SMART
// Backend Services against the verifying token endpoint (acceptance 4).
// The stand-in takes only the first token the endpoint issues, so every
// delivery rides on one verified assertion: the token is cached.
func TestSMARTBackend(t *testing.T) {
	for _, alg := range []smart.Algorithm{smart.RS384, smart.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			tokens := smarttest.New(t, "kapfhir-clinic")
			pemKey, pub := smarttest.NewKey(t, string(alg))
			tokens.Register("clinic-key", pub)
			key, err := smart.ParseKey(pemKey, alg, "clinic-key")
			if err != nil {
				t.Fatal(err)
			}
			// smarttest numbers its tokens from token-1.
			e := setup(t, ehrtest.Options{Token: "token-1"})
			e.ep.Auth = ehr.Auth{Type: ehr.AuthSMARTBackend, TokenURL: tokens.URL, ClientID: "kapfhir-clinic", Key: key,
				Scopes: []string{"system/Observation.cu", "system/Condition.c", "system/Patient.rs"}}
			eng := e.engine("a", 0)
			run(t, eng)
			e.stretch("smart", 3)
			if s := e.waitCaughtUp(eng); s.DeadLettered != 0 {
				t.Errorf("%d dead letters: %+v", s.DeadLettered, s)
			}
			e.check()
			if got := tokens.Hits(); got != 1 {
				t.Errorf("the token endpoint was asked %d times, want once", got)
			}
			if r := tokens.Refusals(); len(r) != 0 {
				t.Errorf("refused assertions: %v", r)
			}
			if diff := cmp.Diff([]string{"system/Observation.cu system/Condition.c system/Patient.rs"}, tokens.Scopes()); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
		})
	}
}
