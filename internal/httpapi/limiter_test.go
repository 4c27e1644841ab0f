package httpapi

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 2, func() time.Time { return now })
	step := func(d time.Duration, key string, wantOK bool, wantWait time.Duration) {
		t.Helper()
		now = now.Add(d)
		wait, ok := l.allow(key)
		if ok != wantOK || wait != wantWait {
			t.Errorf("at %v %s: ok %v wait %v, want %v %v", now.Sub(time.Unix(0, 0)), key, ok, wait, wantOK, wantWait)
		}
	}
	step(0, "a", true, 0)
	step(0, "a", true, 0)
	step(0, "a", false, time.Second) // the burst is spent
	step(0, "b", true, 0)            // another client has its own bucket
	step(500*time.Millisecond, "a", false, 500*time.Millisecond)
	step(500*time.Millisecond, "a", true, 0) // one token back after a second
	// Idle buckets refill and are dropped by the next sweep: a new one is
	// the same.
	step(time.Minute, "c", true, 0)
	if n := l.clients(); n != 1 {
		t.Errorf("%d buckets after a sweep, want 1", n)
	}
}

// However many clients there are, at most maxBuckets buckets are held.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(0.001, 1, func() time.Time { return now })
	for i := range maxBuckets + 10 {
		if _, ok := l.allow(strconv.Itoa(i)); !ok {
			t.Fatalf("client %d refused its first request", i)
		}
	}
	if n := l.clients(); n > maxBuckets {
		t.Errorf("%d buckets, bound %d", n, maxBuckets)
	}
}
