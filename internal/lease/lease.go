// Package lease holds what the background workers that hold a store lease
// share (the outbound EHR sync, the inbound EHR pull, the Subscription
// notifier): their common settings and a wait that ends with its context.
package lease

import (
	"context"
	"errors"
	"time"
)

// Holder are the settings every lease-holding worker takes; the workers'
// options embed them.
type Holder struct {
	// Owner names this instance in the leases. Required: two instances
	// must never share one (the app passes host/pid).
	Owner string
	Lease time.Duration // how long a held lease stays held without progress (90 s)
	// Now and Sleep are the clock and the wait; tests inject them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// WithDefaults is h with its zero settings defaulted; an error without
// Owner.
func (h Holder) WithDefaults() (Holder, error) {
	if h.Owner == "" {
		return h, errors.New("no lease owner: the instance must be named")
	}
	if h.Lease == 0 {
		h.Lease = 90 * time.Second
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Sleep == nil {
		h.Sleep = Sleep
	}
	return h, nil
}

// Sleep waits d, or less when ctx ends (its error then).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
