package auth_test

import (
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/auth/authtest"
)

// BenchmarkAuthenticate measures what every authenticated request pays:
// verifying a valid token whose issuer's keys are already cached (no fetch
// happens inside the loop).
func BenchmarkAuthenticate(b *testing.B) {
	is := authtest.New(b) // an RS256 key (2048 bits)
	rsaKey := is.Key()
	is.AddKey(b, jose.ES256)
	ecKey := is.Key()
	j, err := auth.NewJWT(auth.Options{Issuers: []auth.Issuer{{URL: is.URL}}, Audience: audience})
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range []jose.JSONWebKey{rsaKey, ecKey} {
		b.Run(key.Algorithm, func(b *testing.B) {
			claims := is.Claims(audience)
			claims["scope"] = "user/*.cruds openid fhirUser"
			claims["fhirUser"] = "Practitioner/p1"
			r := bearer(authtest.Sign(b, key, claims))
			// The first call fetches the key set; the loop must not.
			if _, err := j.Authenticate(r); err != nil {
				b.Fatal(err)
			}
			fetches := is.JWKSFetches.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Authenticate(r); err != nil {
					b.Fatal(err)
				}
			}
			if n := is.JWKSFetches.Load(); n != fetches {
				b.Fatalf("the key set was fetched %d times during the loop", n-fetches)
			}
		})
	}
}
