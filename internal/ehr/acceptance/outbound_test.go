package acceptance

import (
	"slices"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/faultproxy"
)

// TestOutage: the EHR is down (connections closed, then 503 with
// Retry-After) while the clinic writes; once it is back every change
// arrives once in effect and in order per resource, nothing is
// dead-lettered (acceptance 2).
func TestOutage(t *testing.T) {
	e := setup(t, ehrtest.Options{})
	eng := e.engine("a", 0)
	run(t, eng)
	// The EHR goes down once the engine has read its capabilities.
	e.waitCaughtUp(eng)
	e.proxy.Add(
		faultproxy.Rule{Fault: faultproxy.Fault{Kind: faultproxy.Down}, Times: 6},
		faultproxy.Rule{Fault: faultproxy.Fault{Kind: faultproxy.Unavailable, RetryAfter: 3}},
	)
	e.stretch("out", 8)
	// The engine kept trying during the outage.
	waitFor(t, "503 answers", func() bool { return e.proxy.Counts().Unavailable >= 3 })
	e.proxy.Clear()
	s := e.waitCaughtUp(eng)
	if s.DeadLettered != 0 {
		t.Errorf("%d dead letters after an outage: %+v", s.DeadLettered, s)
	}
	e.check()
	if c := e.proxy.Counts(); c.Down == 0 {
		t.Errorf("no request met the EHR down: %+v", c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Contains(e.waits, 3*time.Second) {
		t.Errorf("no wait of the 503's Retry-After (3 s) among %v", e.waits)
	}
}

// TestRandomFaults: 429 with Retry-After, 503, answers dropped after the
// EHR applied the request and slow answers, at random (seeded) while the
// clinic writes: no change is lost or duplicated (acceptance 1, 2).
func TestRandomFaults(t *testing.T) {
	e := setup(t, ehrtest.Options{})
	e.proxy.SetRandom(&faultproxy.Random{PathPrefix: ehrtest.BasePath + "/", Seed: 5, Rate: 0.5, Faults: []faultproxy.Fault{
		{Kind: faultproxy.TooManyRequests, RetryAfter: 2},
		{Kind: faultproxy.Unavailable},
		{Kind: faultproxy.DropAfterApply},
		{Kind: faultproxy.Slow, Delay: 20 * time.Millisecond},
	}})
	eng := e.engine("a", 0)
	run(t, eng)
	e.stretch("rnd", 8)
	s := e.waitCaughtUp(eng)
	if s.DeadLettered != 0 {
		t.Errorf("%d dead letters: %+v", s.DeadLettered, s)
	}
	e.check()
	if c := e.proxy.Counts(); c.DropAfterApply == 0 || c.TooManyRequests == 0 {
		t.Errorf("the faults did not meet the sync: %+v", c)
	}
}

// TestKillMidDelivery kills the service while the EHR holds its answer
// to a create it applied, then, on the next instance (started once the
// dead one's lease expired), while it holds the answer to an update; a
// third instance finishes. Nothing is lost, nothing duplicated
// (acceptance 2).
func TestKillMidDelivery(t *testing.T) {
	e := setup(t, ehrtest.Options{})
	e.stretch("kill", 6)
	held := func(method string) func() bool {
		return func() bool {
			return slices.ContainsFunc(e.proxy.Events(), func(ev faultproxy.Event) bool {
				return ev.Method == method && ev.Fault == faultproxy.Slow
			})
		}
	}
	slow := faultproxy.Fault{Kind: faultproxy.Slow, Delay: time.Hour}

	e.proxy.Add(faultproxy.Rule{Method: "POST", Fault: slow, Times: 1})
	stopA := kill(t, e.engine("a", 0))
	waitFor(t, "the held create", held("POST"))
	waitFor(t, "the create applied", func() bool { return len(e.all()) == 2 })
	stopA()

	e.proxy.Add(faultproxy.Rule{Method: "PUT", Fault: slow, Times: 1})
	stopB := kill(t, e.engine("b", 2*time.Minute))
	waitFor(t, "the held update", held("PUT"))
	waitFor(t, "the update applied", func() bool {
		for _, versions := range e.all() {
			if len(versions) > 1 {
				return true
			}
		}
		return false
	})
	stopB()

	eng := e.engine("c", 4*time.Minute)
	run(t, eng)
	e.stretch("after", 2)
	s := e.waitCaughtUp(eng)
	if s.DeadLettered != 0 {
		t.Errorf("%d dead letters: %+v", s.DeadLettered, s)
	}
	e.check()
}

// TestTwoInstances: two instances on one store run at once while the
// clinic writes; the one holding the endpoint stops halfway and the other
// takes over. Each change is delivered once (acceptance 3).
func TestTwoInstances(t *testing.T) {
	e := setup(t, ehrtest.Options{})
	e.proxy.SetRandom(&faultproxy.Random{PathPrefix: ehrtest.BasePath + "/", Seed: 3, Rate: 0.2, Faults: []faultproxy.Fault{
		{Kind: faultproxy.DropAfterApply}, {Kind: faultproxy.Slow, Delay: 10 * time.Millisecond},
	}})
	a, b := e.engine("a", 0), e.engine("b", 0)
	stop := map[string]func(){"a": run(t, a), "b": run(t, b)}
	e.stretch("one", 6)
	var owner string
	waitFor(t, "an instance holding the endpoint", func() bool {
		state, err := e.st.SyncEndpointState(t.Context(), endpoint)
		if err == nil {
			owner = state.Owner
		}
		return owner != ""
	})
	if stop[owner] == nil {
		t.Fatalf("the endpoint is held by %q, not by one of the instances", owner)
	}
	stop[owner]()
	e.stretch("two", 6)
	s := e.waitCaughtUp(a)
	if s.DeadLettered != 0 {
		t.Errorf("%d dead letters: %+v", s.DeadLettered, s)
	}
	e.check()
}
