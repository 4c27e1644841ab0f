package fhir

import (
	"os"
	"runtime"
	"testing"
)

// BenchmarkParseLargeBundle parses the largest Synthea bundle (750
// entries, 2.2 MB) as a transaction does, and reports the live heap the
// parsed form holds relative to the body: the copies a big bundle costs
// while it is prepared.
func BenchmarkParseLargeBundle(b *testing.B) {
	body, err := os.ReadFile("../testdata/synthea/Darron_Feeney_ff447d4a-3e5c-4e90-9854-a66a1d0bdfac.json")
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	var kept *Bundle
	b.ReportAllocs()
	for range b.N {
		runtime.GC()
		runtime.ReadMemStats(&before)
		if kept, err = ParseBundle(body, true); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/float64(len(body)), "live-heap/body")
	runtime.KeepAlive(kept)
}
