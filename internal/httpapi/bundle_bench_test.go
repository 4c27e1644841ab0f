package httpapi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/httpapi"
	"github.com/kapfhir/kapfhir/internal/memtest"
	"github.com/kapfhir/kapfhir/internal/metrics"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

// BenchmarkLargeBundle posts the largest Synthea bundle (750 entries,
// 2.2 MB) as a transaction and as a batch, and reports the peak live heap
// of handling it relative to the body (peak-heap/body; the body itself,
// held by the benchmark, is not counted). The embedded store runs in the
// same process and counts too. Run with -benchtime=3x: each post stores
// 750 more resources.
func BenchmarkLargeBundle(b *testing.B) {
	body, err := os.ReadFile("../../testdata/synthea/Darron_Feeney_ff447d4a-3e5c-4e90-9854-a66a1d0bdfac.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, typ := range []string{"transaction", "batch"} {
		b.Run(typ, func(b *testing.B) {
			body := bytes.Replace(body, []byte(`"type": "transaction"`), []byte(`"type": "`+typ+`"`), 1)
			st, _ := storetest.Open(b, nil)
			reg := fhir.NewRegistry()
			h := httpapi.New(httpapi.Config{
				Resources: resource.New(st, reg, time.Now), Registry: reg, Ready: st.Ping,
				Metrics: metrics.New(prometheus.NewRegistry()), Gatherer: prometheus.NewRegistry(),
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), MaxBodyBytes: 3 << 20,
				Started: time.Now(), Cursors: search.NewCursors("bench"),
			})
			var peak uint64
			for range b.N {
				req := httptest.NewRequest("POST", "/fhir", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/fhir+json")
				rw := httptest.NewRecorder()
				peak = max(peak, memtest.PeakLive(func() { h.ServeHTTP(rw, req) }))
				if rw.Code != http.StatusOK {
					b.Fatalf("%d %.500s", rw.Code, rw.Body)
				}
			}
			b.ReportMetric(float64(peak)/float64(len(body)), "peak-heap/body")
		})
	}
}
