package fhir

import (
	"os"
	"runtime"
	"testing"

	"github.com/kapfhir/kapfhir/internal/memtest"
)

// BenchmarkParseLargeBundle parses the largest Synthea bundle (750
// entries, 2.2 MB) as a transaction does, and reports the live heap the
// parsed form holds relative to the body (live-heap/body: the entries as
// compact JSON) and the peak while parsing (peak-heap/body).
func BenchmarkParseLargeBundle(b *testing.B) {
	body, err := os.ReadFile("../testdata/synthea/Darron_Feeney_ff447d4a-3e5c-4e90-9854-a66a1d0bdfac.json")
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	var kept *Bundle
	var peak uint64
	b.ReportAllocs()
	for range b.N {
		kept = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		peak = max(peak, memtest.PeakLive(func() { kept, err = ParseBundle(body, true) }))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/float64(len(body)), "live-heap/body")
	b.ReportMetric(float64(peak)/float64(len(body)), "peak-heap/body")
	runtime.KeepAlive(kept)
}
