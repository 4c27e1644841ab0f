package lease

import (
	"context"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	if _, err := (Holder{}).WithDefaults(); err == nil {
		t.Error("a holder without an owner was accepted")
	}
	h, err := Holder{Owner: "host/1"}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if h.Owner != "host/1" || h.Lease != 90*time.Second || h.Now == nil || h.Sleep == nil {
		t.Errorf("defaults: %+v", h)
	}
	if h, _ := (Holder{Owner: "a", Lease: time.Minute}).WithDefaults(); h.Lease != time.Minute {
		t.Errorf("a set lease was replaced: %v", h.Lease)
	}
}

// Sleep ends with its context, with the context's error.
func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Errorf("Sleep after cancel = %v", err)
	}
	if err := Sleep(context.Background(), time.Nanosecond); err != nil {
		t.Errorf("Sleep = %v", err)
	}
}
