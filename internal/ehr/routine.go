package ehr

import (
	"context"
	"sync"
)

// Routine is the goroutine of one endpoint's worker in an engine that
// starts and stops its workers as the endpoint definitions change (the
// outbound engine, the inbound puller). Its fields are guarded by the
// mutex of their Workers.
type Routine struct {
	stop   context.CancelFunc
	exited chan struct{}
	halted bool
}

// Start runs f in a goroutine of wg, in a child of parent, unless the
// routine was halted. The caller holds the engine's mutex.
func (r *Routine) Start(parent context.Context, wg *sync.WaitGroup, f func(context.Context)) {
	if r.halted {
		return
	}
	ctx, stop := context.WithCancel(parent)
	r.stop, r.exited = stop, make(chan struct{})
	wg.Go(func() {
		defer close(r.exited)
		f(ctx)
	})
}

// Halt marks the routine halted and, if it runs, stops it and waits until
// f has returned (the worker has given its lease up). mu is the engine's
// mutex, not held by the caller.
func (r *Routine) Halt(mu *sync.Mutex) {
	mu.Lock()
	r.halted = true
	stop, exited := r.stop, r.exited
	mu.Unlock()
	if stop != nil {
		stop()
		<-exited
	}
}
