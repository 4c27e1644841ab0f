package resource_test

import (
	"context"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// BenchmarkCreateProvenance measures what the Provenance of an
// authenticated write costs: the same create as the anonymous operator
// (one version, three store commands) and as an authenticated clinician
// (the version and its Provenance committed together through the
// transaction path). docs/performance.md has the ratio.
func BenchmarkCreateProvenance(b *testing.B) {
	for _, tc := range []struct {
		name string
		who  *auth.Principal
	}{
		{"anonymous", &auth.Principal{Anonymous: true}},
		{"authenticated", &auth.Principal{Issuer: "https://idp.example", ClientID: "chart", FHIRUser: "Practitioner/pr1"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			commands := &metrics.CommandCounter{}
			st, _ := storetest.Open(b, commands.Monitor())
			svc := resource.New(st, fhir.NewRegistry(), time.Now)
			ctx := auth.NewContext(context.Background(), tc.who)
			body := []byte(`{"resourceType":"Patient","gender":"female","birthDate":"1980-05-17"}`)
			commands.Take()
			b.ResetTimer()
			for b.Loop() {
				res, err := fhir.ParseResource(body)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := svc.Create(ctx, res); err != nil {
					b.Fatal(err)
				}
			}
			n := 0
			for _, c := range commands.Take() {
				n += c
			}
			b.ReportMetric(float64(n)/float64(b.N), "commands/op")
		})
	}
}
