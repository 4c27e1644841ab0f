package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// load is the shape of one phase: how many workers, and when to stop.
type load struct {
	concurrency int
	n           int           // 0: no count limit
	duration    time.Duration // 0: no time limit
}

// phase is what one scenario did on one side.
type phase struct {
	ops        int // operations finished, failed ones included
	errors     int
	firstError string
	elapsed    time.Duration
	latencies  []time.Duration // of the successful operations, sorted
}

// measure runs op with l.concurrency workers until l.n operations have
// started or l.duration has passed, then waits for those in flight. ctx
// cancellation stops it early.
func measure(ctx context.Context, l load, op func(ctx context.Context, i int) error) phase {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
		p        phase
		deadline time.Time
	)
	start := time.Now()
	if l.duration > 0 {
		deadline = start.Add(l.duration)
	}
	for range l.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ops, errs int
			var first string
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if l.n > 0 && i >= int64(l.n) {
					break
				}
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					break
				}
				t0 := time.Now()
				err := op(ctx, int(i))
				d := time.Since(t0)
				ops++
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			p.ops += ops
			p.errors += errs
			if p.firstError == "" {
				p.firstError = first
			}
			p.latencies = append(p.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	slices.Sort(p.latencies)
	return p
}

// throughput is successful operations per second.
func (p phase) throughput() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.ops-p.errors) / p.elapsed.Seconds()
}

// percentile returns the nearest-rank q-th percentile (0 < q <= 100) of
// sorted: the smallest value that at least q% of the values do not exceed.
// It returns 0 for no values; q <= 0 gives the minimum.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if q <= 0 {
		return sorted[0]
	}
	if q >= 100 {
		return sorted[len(sorted)-1]
	}
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}
