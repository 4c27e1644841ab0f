// Package memtest measures the peak live heap of a piece of code, for
// benchmarks that report memory as a ratio to their input (tests never
// assert it).
package memtest

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

const liveMetric = "/gc/heap/live:bytes"

// PeakLive runs f and returns the largest live heap seen at the end of a
// garbage collection while it ran, minus the live heap before it. The
// collector runs after every 5% of heap growth meanwhile, so the cycles
// sample the heap closely: the result is the peak of what f keeps
// reachable, within a few percent. Everything in the process counts (an
// embedded store included).
func PeakLive(f func()) uint64 {
	old := debug.SetGCPercent(5)
	defer debug.SetGCPercent(old)
	runtime.GC()
	base := live()
	var (
		mu      sync.Mutex
		peak    uint64
		stopped bool
	)
	// A finalizer runs once after each cycle that found its object
	// unreachable; it arms the next one.
	var arm func()
	arm = func() {
		runtime.SetFinalizer(new([32]byte), func(*[32]byte) {
			mu.Lock()
			defer mu.Unlock()
			peak = max(peak, live())
			if !stopped {
				arm()
			}
		})
	}
	arm()
	f()
	runtime.GC()
	runtime.GC() // the finalizer of the last cycle has run
	mu.Lock()
	defer mu.Unlock()
	stopped = true
	return peak - min(peak, base)
}

func live() uint64 {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
