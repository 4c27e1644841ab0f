package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/faultproxy"
)

// TestKillMidSync SIGKILLs the binary twice while it delivers to the
// stand-in EHR (medplum's FHIR server behind the fault proxy): first while
// the proxy holds the answer to a create the EHR applied, then, after a
// restart on the same data, while it holds the answer to an update the EHR
// applied. A third start finishes. Reading the stand-in back, every
// Observation written is there once, with each of its versions once and in
// order (issue 6, acceptance 2; the in-process variant is
// internal/ehr/acceptance TestKillMidDelivery).
func TestKillMidSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if runtime.GOOS == "windows" || os.Getenv(envTestMongoURI) != "" {
		t.Skip("kills the binary with its embedded store")
	}
	bin := buildBinary(t)
	ehr := ehrtest.Start(t, ehrtest.Options{Capability: ehrtest.EpicCapability(t)})
	proxy, err := faultproxy.New(ehr.Origin())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	t.Cleanup(proxy.Close)

	const endpoint = "st-mary"
	cfg := filepath.Join(t.TempDir(), "ehr.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("endpoints:\n  - name: %s\n    baseUrl: %s\n    auth: {type: none}\n    send: {types: [Observation], part2: never}\n",
		endpoint, srv.URL+ehrtest.BasePath)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A short lease: each restart is a new owner, which waits for the
	// dead one's lease to expire.
	env := childEnv("KAPFHIR_HTTP_ADDR=127.0.0.1:0", "KAPFHIR_DATA_DIR="+t.TempDir(),
		"KAPFHIR_EHR_CONFIG="+cfg, "KAPFHIR_SYNC_LEASE=2s")
	start := func() (*process, *client) {
		p := startBinary(t, bin, env)
		addr, _ := p.waitLog(t, "kapfhir listening", 2*time.Minute)["addr"].(string)
		return p, &client{t: t, base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}
	}
	sigkill := func(p *process) {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}
	// held waits until the proxy holds the answer to a method, and until
	// the stand-in applied it.
	held := func(method string, applied func(map[string][]json.RawMessage) bool) {
		t.Helper()
		poll(t, "the held "+method, func() bool {
			return slices.ContainsFunc(proxy.Events(), func(ev faultproxy.Event) bool {
				return ev.Method == method && ev.Fault == faultproxy.Slow
			}) && applied(standIn(t, ehr))
		})
	}
	hold := faultproxy.Fault{Kind: faultproxy.Slow, Delay: time.Hour}
	t.Cleanup(func() {
		if t.Failed() {
			for _, ev := range proxy.Events() {
				t.Logf("proxy: %s %s %s, upstream %d, client %d", ev.Method, ev.Path, ev.Fault, ev.Upstream, ev.Status)
			}
		}
	})

	// What is written: wrote[id] is the status of each version, in order.
	wrote := map[string][]string{}
	write := func(c *client, id, status string) {
		code := http.StatusOK
		if len(wrote[id]) == 0 {
			code = http.StatusCreated
		}
		c.expect("PUT", "/fhir/Observation/"+id, map[string]string{"Content-Type": "application/fhir+json"},
			fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":%q,"code":{"text":"craving score"},"valueQuantity":{"value":%d,"unit":"score"}}`,
				id, status, len(wrote[id])), code)
		wrote[id] = append(wrote[id], status)
	}

	// Kill 1: the first create is applied, its answer held.
	proxy.Add(faultproxy.Rule{Method: "POST", Fault: hold, Times: 1})
	p, c := start()
	for i := range 6 {
		write(c, fmt.Sprintf("k%d", i), "preliminary")
	}
	for i := range 6 {
		if i%2 == 0 {
			write(c, fmt.Sprintf("k%d", i), "final")
			write(c, fmt.Sprintf("k%d", i), "amended")
		}
	}
	held("POST", func(all map[string][]json.RawMessage) bool { return len(all) > 0 })
	sigkill(p)

	// Kill 2: after the restart, an update is applied, its answer held.
	proxy.Add(faultproxy.Rule{Method: "PUT", Fault: hold, Times: 1})
	p, _ = start()
	held("PUT", func(all map[string][]json.RawMessage) bool {
		return slices.ContainsFunc(slices.Collect(maps.Values(all)), func(v []json.RawMessage) bool { return len(v) > 1 })
	})
	sigkill(p)

	// The third start delivers the rest, and what is written meanwhile.
	_, c = start()
	write(c, "k1", "final")
	write(c, "k6", "preliminary")
	type status struct {
		Cursor, Head           int64
		InFlight, DeadLettered int
	}
	state := func() status {
		_, b := c.expect("GET", "/admin/sync/endpoints/"+endpoint, nil, "", http.StatusOK)
		var s status
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		if s.DeadLettered != 0 {
			t.Fatalf("dead letters: %s", b)
		}
		return s
	}
	// Every change up to the last write is delivered or skipped. (Not
	// "nothing pending": each status request is audited, and its
	// AuditEvent is a change after the cursor until the worker's next
	// read skips it.)
	written := state().Head
	poll(t, "nothing pending", func() bool {
		s := state()
		return s.Cursor >= written && s.InFlight == 0
	})

	if n := proxy.Counts().Slow; n != 2 {
		t.Errorf("the proxy held %d answers, want the 2 the kills cut off", n)
	}

	// The stand-in holds each Observation once, each version once, in
	// order: read by our identifier and version tag.
	got := map[string][]string{}
	for key, versions := range standIn(t, ehr) {
		var local string
		for i, v := range versions {
			var r struct {
				Status     string
				Identifier []struct{ System, Value string }
				Meta       struct {
					Tag []struct{ System, Code string }
				}
			}
			if err := json.Unmarshal(v, &r); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			id := ""
			for _, ident := range r.Identifier {
				if ident.System == "urn:kapfhir:kapfhir" {
					id = ident.Value
				}
			}
			version := ""
			for _, tag := range r.Meta.Tag {
				if tag.System == "urn:kapfhir:version" {
					version = tag.Code
				}
			}
			if local == "" {
				local = id
			}
			if id != local || version != fmt.Sprint(i+1) {
				t.Errorf("%s version %d is our %q version %q, want %q version %d", key, i+1, id, version, local, i+1)
			}
			got[local] = append(got[local], r.Status)
		}
	}
	want := map[string][]string{}
	for id, statuses := range wrote {
		want["Observation/"+id] = statuses
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the stand-in EHR holds (-want +got), per local Observation its versions' status:\n%s", diff)
	}
}

func standIn(t *testing.T, ehr *ehrtest.StandIn) map[string][]json.RawMessage {
	t.Helper()
	all, err := ehr.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// poll waits until cond holds; the bound guards against a hang, it is no
// timing assertion.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
