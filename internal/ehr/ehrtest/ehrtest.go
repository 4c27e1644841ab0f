// Package ehrtest runs the stand-in hospital EHR of the EHR sync tests: an
// independent FHIR R4 server (standin/server.mjs, medplum's FHIR router and
// in-memory repository under Node), started as a child process on a
// loopback port (issue 6, acceptance 1). Put faultproxy in front of it to
// inject faults.
package ehrtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/internal/syncbuf"
)

// BasePath is where the stand-in serves FHIR: its base URL is the origin
// followed by BasePath.
const BasePath = "/fhir"

// startTimeout bounds the stand-in's start (indexing the R4 definitions
// takes seconds on a busy machine).
const startTimeout = 90 * time.Second

// Options shape one stand-in.
type Options struct {
	// Capability is the CapabilityStatement (JSON) the stand-in serves at
	// metadata and enforces: an interaction it does not list for a type is
	// refused with 405. Nil: every interaction is allowed.
	Capability []byte
	// Token, when set, is the bearer token every FHIR request but
	// metadata must carry (401 otherwise).
	Token string
}

// StandIn is a running stand-in EHR.
type StandIn struct {
	origin string
	stderr *syncbuf.Buffer
}

// Dir is the stand-in's directory (server.mjs and its package.json); `npm
// ci` must have been run there (.ci/run does).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "standin")
}

// EpicCapability is the CapabilityStatement shaped like Epic's (mapping
// spec §13): Observation and DocumentReference create and update,
// Condition and Patient create, Encounter, Consent, EpisodeOfCare and
// MedicationAdministration read only, no conditional writes.
func EpicCapability(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "capability-epic.json"))
	if err != nil {
		t.Fatalf("ehrtest: %v", err)
	}
	return data
}

// Start starts a stand-in on a free loopback port; it stops when the test
// ends. A missing Node or a missing `npm ci` fails the test: the sync
// tests are not skipped.
func Start(t testing.TB, opts Options) *StandIn {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("ehrtest: the stand-in EHR needs Node 20.19+ on PATH: %v", err)
	}
	dir := Dir()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@medplum", "fhir-router")); err != nil {
		t.Fatalf("ehrtest: the stand-in EHR is not installed: run `npm ci --prefix %s` (.ci/run does)", dir)
	}
	args := []string{"server.mjs", "--port", "0"}
	if opts.Capability != nil {
		f := filepath.Join(t.TempDir(), "capability.json")
		if err := os.WriteFile(f, opts.Capability, 0o600); err != nil {
			t.Fatalf("ehrtest: %v", err)
		}
		args = append(args, "--capability", f)
	}
	if opts.Token != "" {
		args = append(args, "--token", opts.Token)
	}

	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	// Its own process group, so the cleanup kills whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &StandIn{stderr: &syncbuf.Buffer{}}
	cmd.Stderr = s.stderr
	// The server exits when stdin closes: if this test process dies
	// without cleaning up, the stand-in does not outlive it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("ehrtest: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("ehrtest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ehrtest: starting the stand-in EHR: %v", err)
	}
	port := make(chan string, 1)
	done := make(chan struct{})
	var waitErr error
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
		waitErr = cmd.Wait()
		close(done)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = stdin.Close()
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
	t.Cleanup(func() {
		select {
		case <-done:
			if !stopped {
				t.Errorf("ehrtest: the stand-in EHR exited during the test: %v", waitErr)
			}
		default:
		}
		stop()
		if t.Failed() && s.stderr.Len() > 0 {
			t.Logf("ehrtest: stand-in EHR stderr:\n%s", s.stderr)
		}
	})

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case p := <-port:
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			stop()
			t.Fatalf("ehrtest: the stand-in EHR did not start (first line %q; its stderr is logged below)", p)
		}
		s.origin = "http://127.0.0.1:" + p
	case <-timer.C:
		stop()
		t.Fatalf("ehrtest: the stand-in EHR did not start within %v (its stderr is logged below)", startTimeout)
	}
	return s
}

// URL is the FHIR base URL, e.g. http://127.0.0.1:41000/fhir.
func (s *StandIn) URL() string { return s.origin + BasePath }

// Origin is the scheme and host, without BasePath (a faultproxy
// upstream).
func (s *StandIn) Origin() string { return s.origin }

// All reads everything the stand-in stored: for each "Type/id" written,
// its versions oldest first, a delete as JSON null. It bypasses any proxy
// and needs no token.
func (s *StandIn) All(ctx context.Context) (map[string][]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.origin+"/_all", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ehrtest: GET /_all: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("ehrtest: GET /_all: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ehrtest: GET /_all: %s: %.300s", resp.Status, data)
	}
	var all map[string][]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("ehrtest: GET /_all: %w", err)
	}
	return all, nil
}
