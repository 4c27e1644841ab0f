package audit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/resource"
)

// Writer stores a batch of AuditEvents: resource.Service.Import, so that
// they are ordinary versioned resources, searchable like any other.
type Writer interface {
	Import(ctx context.Context, batch []*fhir.Resource) ([]resource.ImportResult, error)
}

// Options tune a Sink; zero values take the defaults.
type Options struct {
	Queue    int    // events waiting to be written (10000); beyond, new ones are dropped
	Batch    int    // events written at once (100)
	Observer string // names this server as the events' source (kapfhir)
	Logger   *slog.Logger
	Now      func() time.Time
	// Timeout bounds the write of one batch (30 s).
	Timeout time.Duration
}

// Drop reasons, the values of the reason label.
const (
	dropFull   = "queue_full"
	dropFailed = "write_failed"
	dropClosed = "closed"
)

// Sink queues events and writes them in batches from one goroutine. A
// request only renders nothing and sends on a buffered channel: when the
// queue is full the event is dropped and counted, never waited for. A nil
// *Sink records nothing.
type Sink struct {
	w       Writer
	o       Options
	q       chan item
	stop    chan struct{}
	done    chan struct{}
	mu      sync.RWMutex // Close holds it to stop senders; Record reads closed under it
	closed  bool
	written prometheus.Counter
	dropped *prometheus.CounterVec
	logged  atomic.Int64 // unix seconds of the last drop logged
}

// item is an event, or a flush marker closed once everything before it is
// written.
type item struct {
	ev    *Event
	flush chan struct{}
}

// New starts the sink's writer; Close stops it. Its metrics
// (kapfhir_audit_events_written_total, kapfhir_audit_dropped_total{reason})
// are registered on reg.
func New(w Writer, reg prometheus.Registerer, o Options) *Sink {
	if o.Queue <= 0 {
		o.Queue = 10000
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Observer == "" {
		o.Observer = "kapfhir"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	s := &Sink{w: w, o: o, q: make(chan item, o.Queue), stop: make(chan struct{}), done: make(chan struct{}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kapfhir_audit_events_written_total",
			Help: "AuditEvents this instance wrote to the store.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kapfhir_audit_dropped_total",
			Help: "AuditEvents this instance lost, by reason (queue_full, write_failed, closed).",
		}, []string{"reason"}),
	}
	for _, r := range []string{dropFull, dropFailed, dropClosed} {
		s.dropped.WithLabelValues(r) // present from the start, so rates and alerts work
	}
	reg.MustRegister(s.written, s.dropped)
	go s.run()
	return s
}

// Record queues e without waiting. Recorded defaults to now.
func (s *Sink) Record(e Event) {
	if s == nil {
		return
	}
	if e.Recorded.IsZero() {
		e.Recorded = s.o.Now()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.drop(dropClosed, 1)
		return
	}
	select {
	case s.q <- item{ev: &e}:
	default:
		s.drop(dropFull, 1)
	}
}

// drop counts lost events and logs it, at most once a second (an
// overloaded store would otherwise flood the log). Nothing of the event is
// logged.
func (s *Sink) drop(reason string, n int) {
	s.dropped.WithLabelValues(reason).Add(float64(n))
	now := time.Now().Unix()
	if last := s.logged.Load(); now > last && s.logged.CompareAndSwap(last, now) {
		s.o.Logger.Warn("audit events dropped", "reason", reason, "count", n)
	}
}

// Flush waits until every event recorded before it is written (or lost),
// or ctx ends.
func (s *Sink) Flush(ctx context.Context) error {
	if s == nil {
		return nil
	}
	f := make(chan struct{})
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil
	}
	select {
	case s.q <- item{flush: f}:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking events and waits until the queued ones are written,
// or ctx ends.
func (s *Sink) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes batches until Close, then drains the queue.
func (s *Sink) run() {
	defer close(s.done)
	var batch []*Event
	// take adds an item to the batch; a flush marker writes the batch
	// first.
	take := func(it item) {
		if it.flush != nil {
			s.write(batch)
			batch = batch[:0]
			close(it.flush)
			return
		}
		batch = append(batch, it.ev)
		if len(batch) == s.o.Batch {
			s.write(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case it := <-s.q:
			take(it)
			// Whatever else is waiting goes in the same batch.
			for more := true; more; {
				select {
				case it := <-s.q:
					take(it)
				default:
					more = false
				}
			}
			s.write(batch)
			batch = batch[:0]
		case <-s.stop:
			// Senders are stopped (Close holds the lock): the queue only
			// shrinks now.
			for len(s.q) > 0 {
				take(<-s.q)
			}
			s.write(batch)
			return
		}
	}
}

// write stores a batch; a failure loses it (counted, logged without
// content).
func (s *Sink) write(batch []*Event) {
	if len(batch) == 0 {
		return
	}
	res := make([]*fhir.Resource, 0, len(batch))
	for _, e := range batch {
		b, err := e.render(resource.NewID(), s.o.Observer)
		if err == nil {
			var r *fhir.Resource
			if r, err = fhir.ParseResource(b); err == nil {
				res = append(res, r)
				continue
			}
		}
		// The events are built here: one that does not render is a bug.
		s.o.Logger.Error("audit event not valid", "error", err)
		s.drop(dropFailed, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	out, err := s.w.Import(ctx, res)
	if err != nil {
		s.o.Logger.Error("audit batch not written", "events", len(res), "error", err)
		s.drop(dropFailed, len(res))
		return
	}
	for _, r := range out {
		if r.Err != nil {
			s.drop(dropFailed, 1)
			continue
		}
		s.written.Inc()
	}
}
