package audit

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/resource"
)

// blockingWriter holds the first batch until released, and keeps what it
// was given.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	got     []*fhir.Resource
}

func (w *blockingWriter) Import(_ context.Context, batch []*fhir.Resource) ([]resource.ImportResult, error) {
	if w.started != nil {
		close(w.started)
		w.started = nil
		<-w.release
	}
	w.got = append(w.got, batch...)
	return make([]resource.ImportResult, len(batch)), nil
}

// TestSinkDropsWhenFullAndDrainsOnClose: a full queue never blocks the
// recorder: the event is dropped and counted; Close writes what is queued.
func TestSinkDropsWhenFullAndDrainsOnClose(t *testing.T) {
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	s := New(w, reg, Options{Queue: 2})
	started := w.started
	s.Record(Event{Interaction: "read", Status: 200}) // taken by the writer, which blocks
	<-started
	for range 3 { // two fill the queue, the third is dropped
		s.Record(Event{Interaction: "read", Status: 200})
	}
	if got := testutil.ToFloat64(s.dropped.WithLabelValues(dropFull)); got != 1 {
		t.Errorf("dropped (queue full) = %v, want 1", got)
	}
	close(w.release)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.got) != 3 {
		t.Errorf("%d events written, want 3", len(w.got))
	}
	if got := testutil.ToFloat64(s.written); got != 3 {
		t.Errorf("written = %v, want 3", got)
	}
	s.Record(Event{Interaction: "read"})
	if got := testutil.ToFloat64(s.dropped.WithLabelValues(dropClosed)); got != 1 {
		t.Errorf("dropped (closed) = %v, want 1", got)
	}
	var nilSink *Sink // no audit: recording is a no-op
	nilSink.Record(Event{})
	if err := nilSink.Flush(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestEventRendering: each interaction's action and each status's
// outcome, rendered as an AuditEvent the R4 validator accepts.
func TestEventRendering(t *testing.T) {
	for _, tc := range []struct {
		status          int
		action, outcome string
		interaction     string
	}{
		{200, "R", "0", "read"},
		{201, "C", "0", "create"},
		{404, "U", "4", "patch"},
		{503, "E", "8", "search-type"},
		{200, "E", "0", "transaction"},
	} {
		e := Event{Interaction: tc.interaction, Status: tc.status}
		b, err := e.render("x", "kapfhir")
		if err != nil {
			t.Fatal(err)
		}
		r, err := fhir.ParseResource(b)
		if err != nil {
			t.Fatalf("%s: not a valid AuditEvent: %v\n%s", tc.interaction, err, b)
		}
		if r.Type() != ResourceType {
			t.Errorf("%s: %s", tc.interaction, r.Type())
		}
		if e.action() != tc.action || outcome(tc.status) != tc.outcome {
			t.Errorf("%s %d: action %s outcome %s, want %s %s", tc.interaction, tc.status, e.action(), outcome(tc.status), tc.action, tc.outcome)
		}
	}
}
