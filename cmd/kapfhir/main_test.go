package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kapfhir/kapfhir/internal/kap"
)

// envTestMongoURI names a MongoDB to run the binary against instead of the
// embedded store (the same variable the store tests use).
const envTestMongoURI = "KAPFHIR_TEST_MONGODB_URI"

// goTool finds the go command that is running this test.
func goTool(t *testing.T) string {
	t.Helper()
	name := "go"
	if runtime.GOOS == "windows" {
		name = "go.exe"
	}
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", name); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", name); fileExists(p) { // the GOROOT this test was built with
		return p
	}
	t.Skip("no go command found to build the binary")
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// buildBinary builds this command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kapfhir")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(t), "build", "-o", bin, ".")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// logBuffer collects the process's stdout as lines.
type logBuffer struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
	return len(p), nil
}

// Lines returns the complete lines so far, plus any unterminated tail.
func (b *logBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]string(nil), b.lines...)
	if len(b.partial) > 0 {
		out = append(out, string(b.partial))
	}
	return out
}

func (b *logBuffer) String() string { return strings.Join(b.Lines(), "\n") }

// find returns the first JSON log line whose msg is msg.
func (b *logBuffer) find(msg string) map[string]any {
	for _, l := range b.Lines() {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// process is the binary under test.
type process struct {
	cmd    *exec.Cmd
	stdout *logBuffer
	stderr *logBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

func startBinary(t *testing.T, bin string, env []string) *process {
	t.Helper()
	p := &process{stdout: &logBuffer{}, stderr: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = env
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("kapfhir stdout:\n%s", p.stdout)
			t.Logf("kapfhir stderr:\n%s", p.stderr)
		}
	})
	return p
}

// waitLog waits for a log line with msg, failing when the process exits
// first or the timeout passes.
func (p *process) waitLog(t *testing.T, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if rec := p.stdout.find(msg); rec != nil {
			return rec
		}
		select {
		case <-p.exited:
			if rec := p.stdout.find(msg); rec != nil {
				return rec
			}
			t.Fatalf("kapfhir exited (%v) before logging %q", p.err, msg)
		case <-deadline:
			t.Fatalf("kapfhir did not log %q within %v", msg, timeout)
		case <-tick.C:
		}
	}
}

// childEnv is the parent's environment without any KAPFHIR_ setting, plus
// extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAPFHIR_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func (c *client) do(method, path string, header map[string]string, body string) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (c *client) expect(method, path string, header map[string]string, body string, status int) (*http.Response, []byte) {
	c.t.Helper()
	resp, b := c.do(method, path, header, body)
	if resp.StatusCode != status {
		c.t.Fatalf("%s %s: status %d, want %d\n%s", method, path, resp.StatusCode, status, b)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		c.t.Errorf("%s %s: no X-Request-Id in the response", method, path)
	}
	return resp, b
}

// TestBinary runs the built command as an operator would: it starts, serves
// the probes, metrics and FHIR API, keeps patient data out of its log, and
// stops cleanly on SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	bin := buildBinary(t)

	env := childEnv(
		"KAPFHIR_HTTP_ADDR=127.0.0.1:0",
		"KAPFHIR_DATA_DIR="+t.TempDir(),
		"KAPFHIR_LOG_LEVEL=info",
	)
	if uri := os.Getenv(envTestMongoURI); uri != "" {
		db := "kapfhir_test_" + randomHex(6)
		env = append(env, "KAPFHIR_MONGODB_URI="+uri, "KAPFHIR_MONGODB_DATABASE="+db)
		t.Cleanup(func() { dropDatabase(t, uri, db) })
	}

	p := startBinary(t, bin, env)
	listening := p.waitLog(t, "kapfhir listening", 2*time.Minute)
	addr, _ := listening["addr"].(string)
	if addr == "" {
		t.Fatalf("the listening line has no addr: %v", listening)
	}
	c := &client{t: t, base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}

	// Probes and metrics.
	if _, b := c.expect("GET", "/healthz", nil, "", http.StatusOK); !strings.HasPrefix(string(b), "ok") {
		t.Errorf("/healthz body %q", b)
	}
	if _, b := c.expect("GET", "/readyz", nil, "", http.StatusOK); !strings.HasPrefix(string(b), "ready") {
		t.Errorf("/readyz body %q", b)
	}

	// PHI canaries: strings that must never reach the log.
	family := "Zqxcanary" + randomHex(4)
	given := "Vwkgiven" + randomHex(4)
	mrn := "mrn-" + randomHex(6)
	patient := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:kapfhir:test:mrn","value":%q}],"name":[{"family":%q,"given":[%q]}],"birthDate":"1970-01-02"}`,
		mrn, family, given)
	fhirJSON := map[string]string{"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

	resp, b := c.expect("POST", "/fhir/Patient", fhirJSON, patient, http.StatusCreated)
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatal("create: no Location header")
	}
	var created struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatalf("create: body is not JSON: %v\n%s", err, b)
	}
	if created.ResourceType != "Patient" || created.ID == "" || created.Meta.VersionID != "1" {
		t.Fatalf("create: body %s", b)
	}
	if want := "/fhir/Patient/" + created.ID + "/_history/1"; !strings.HasSuffix(loc, want) {
		t.Errorf("create: Location %q does not end in %q", loc, want)
	}
	if et := resp.Header.Get("ETag"); et != `W/"1"` {
		t.Errorf("create: ETag %q, want W/\"1\"", et)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("create: Content-Type %q", ct)
	}

	// The caller's request id comes back.
	reqID := "e2e-" + randomHex(4)
	resp, b = c.expect("GET", "/fhir/Patient/"+created.ID, map[string]string{"X-Request-Id": reqID}, "", http.StatusOK)
	if got := resp.Header.Get("X-Request-Id"); got != reqID {
		t.Errorf("read: X-Request-Id %q, want %q", got, reqID)
	}
	if !strings.Contains(string(b), family) || !strings.Contains(string(b), `"id":"`+created.ID+`"`) {
		t.Errorf("read: body is not the created patient:\n%s", b)
	}
	c.expect("GET", "/fhir/Patient/"+created.ID, map[string]string{"If-None-Match": `W/"1"`}, "", http.StatusNotModified)

	// A conditional create with the canary identifier finds the patient.
	cond := map[string]string{"Content-Type": "application/fhir+json", "If-None-Exist": "identifier=urn:kapfhir:test:mrn|" + mrn}
	resp, b = c.expect("POST", "/fhir/Patient", cond, patient, http.StatusOK)
	if !strings.Contains(string(b), `"id":"`+created.ID+`"`) {
		t.Errorf("conditional create: not the existing patient:\n%s", b)
	}
	if resp.Header.Get("Location") != "" {
		t.Errorf("conditional create that matched sent a Location")
	}
	c.expect("GET", "/fhir/Patient/"+created.ID+"/_history?_count=5", nil, "", http.StatusOK)

	_, b = c.expect("GET", "/metrics", nil, "", http.StatusOK)
	if !strings.Contains(string(b), "kapfhir_http_requests_total") {
		t.Errorf("/metrics lacks kapfhir_http_requests_total")
	}
	for _, canary := range []string{family, given, mrn} {
		if strings.Contains(string(b), canary) {
			t.Errorf("/metrics contains patient data %q", canary)
		}
	}

	// SIGTERM: a graceful stop with exit status 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("kapfhir did not exit within 20s of SIGTERM")
	}
	if p.err != nil {
		t.Errorf("kapfhir exited with %v, want status 0; stderr:\n%s", p.err, p.stderr)
	}
	if p.stdout.find("stopped") == nil {
		t.Error(`kapfhir did not log "stopped"`)
	}
	if p.stdout.find("request") == nil {
		t.Error("kapfhir logged no request lines")
	}

	// The log is JSON lines and holds no patient data.
	logged := p.stdout.Lines()
	for i, l := range logged {
		if !json.Valid([]byte(l)) {
			t.Errorf("stdout line %d is not JSON: %s", i+1, l)
		}
		for _, canary := range []string{family, given, mrn, created.ID} {
			if strings.Contains(l, canary) {
				t.Errorf("stdout line %d contains patient data %q: %s", i+1, canary, l)
			}
		}
	}
	for _, l := range p.stderr.Lines() {
		if strings.Contains(l, family) || strings.Contains(l, mrn) {
			t.Errorf("stderr contains patient data: %s", l)
		}
	}
}

func dropDatabase(t *testing.T, uri, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Logf("drop %s: %v", db, err)
		return
	}
	defer func() { _ = cl.Disconnect(ctx) }()
	if err := cl.Database(db).Drop(ctx); err != nil {
		t.Logf("drop %s: %v", db, err)
	}
}

// TestRunBadConfig checks that run refuses a bad configuration before it
// starts anything.
func TestRunBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, env, want string
	}{
		{"log level", "KAPFHIR_LOG_LEVEL=loud", "KAPFHIR_LOG_LEVEL"},
		{"zero body limit", "KAPFHIR_MAX_BODY_BYTES=0", "KAPFHIR_MAX_BODY_BYTES"},
		{"huge body limit", "KAPFHIR_MAX_BODY_BYTES=1073741824", "KAPFHIR_MAX_BODY_BYTES"},
		// Values that do not parse are reported by field; want only the prefix.
		{"body limit not a number", "KAPFHIR_MAX_BODY_BYTES=lots", "configuration:"},
		{"timeout not a duration", "KAPFHIR_SHUTDOWN_TIMEOUT=soon", "configuration:"},
		// Authentication off is refused beyond loopback.
		{"no issuers on 0.0.0.0", "KAPFHIR_HTTP_ADDR=0.0.0.0:0", "KAPFHIR_AUTH_ISSUERS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, nil, []string{"KAPFHIR_HTTP_ADDR=127.0.0.1:0", "KAPFHIR_DATA_DIR=" + dir, tc.env}, &out)
			if err == nil {
				t.Fatalf("run with %s succeeded", tc.env)
			}
			if !strings.HasPrefix(err.Error(), "configuration:") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run with %s: error %q, want a configuration error naming %s", tc.env, err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run with %s touched the data directory (stat: %v)", tc.env, err)
			}
		})
	}
}

// TestRunListenFails checks that run reports an address it cannot listen on
// and returns instead of serving.
func TestRunListenFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded store")
	}
	env := []string{"KAPFHIR_HTTP_ADDR=127.0.0.1:-1", "KAPFHIR_DATA_DIR=" + t.TempDir()}
	if uri := os.Getenv(envTestMongoURI); uri != "" {
		db := "kapfhir_test_" + randomHex(6)
		env = append(env, "KAPFHIR_MONGODB_URI="+uri, "KAPFHIR_MONGODB_DATABASE="+db)
		t.Cleanup(func() { dropDatabase(t, uri, db) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, nil, env, &out) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listen") {
			t.Errorf("run with an unusable address: %v, want a listen error", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not return")
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "kapfhir listening") {
			t.Errorf("run logged that it listens: %s", sc.Text())
		}
	}
}

// TestKillDuringTransaction SIGKILLs the binary while it ingests the
// largest Synthea bundle (750 entries) as a transaction, restarts it on
// the same data and checks that the bundle is there whole or not at all:
// current resources of every type, and the change log (acceptance 2).
// The kill comes after a growing delay, so rounds land before, during and
// after the commit.
func TestKillDuringTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if runtime.GOOS == "windows" || os.Getenv(envTestMongoURI) != "" {
		t.Skip("kills the binary with its embedded store")
	}
	bin := buildBinary(t)
	bundle, err := os.ReadFile("../../testdata/synthea/Darron_Feeney_ff447d4a-3e5c-4e90-9854-a66a1d0bdfac.json")
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &parsed); err != nil {
		t.Fatal(err)
	}
	perType := map[string]int{}
	for _, e := range parsed.Entry {
		perType[e.Resource.ResourceType]++
	}
	const deadline = time.Second
	outcomes := map[string]int{}
	for _, delay := range []time.Duration{50 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond, 1200 * time.Millisecond} {
		dir := t.TempDir()
		env := childEnv("KAPFHIR_HTTP_ADDR=127.0.0.1:0", "KAPFHIR_DATA_DIR="+dir, "KAPFHIR_TXN_DEADLINE="+deadline.String())
		p := startBinary(t, bin, env)
		addr, _ := p.waitLog(t, "kapfhir listening", 2*time.Minute)["addr"].(string)
		answered := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("POST", "http://"+addr+"/fhir", bytes.NewReader(bundle))
			req.Header.Set("Content-Type", "application/fhir+json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				answered <- 0
				return
			}
			res.Body.Close()
			answered <- res.StatusCode
		}()
		time.Sleep(delay)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		status := <-answered

		p = startBinary(t, bin, env)
		addr, _ = p.waitLog(t, "kapfhir listening", 2*time.Minute)["addr"].(string)
		// A pending transaction is aborted once older than the deadline,
		// by the recovery that runs every deadline.
		time.Sleep(3 * deadline)
		c := &client{t: t, base: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}
		stored := 0
		for typ, n := range perType {
			_, b := c.expect("GET", "/fhir/"+typ+"?_summary=count", nil, "", http.StatusOK)
			var res struct{ Total int }
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			if res.Total != 0 && res.Total != n {
				t.Errorf("delay %v: %d of %d %s resources are stored", delay, res.Total, n, typ)
			}
			stored += res.Total
		}
		_, b := c.expect("GET", "/fhir/_history?_count=1000", nil, "", http.StatusOK)
		var hist struct {
			Entry []struct {
				Request struct{ URL string }
			}
		}
		if err := json.Unmarshal(b, &hist); err != nil {
			t.Fatal(err)
		}
		// The service's own definitions are the changes logged before the
		// bundle; the AuditEvents of the requests (this test's and the
		// killed ones') are changes too, but not the bundle's.
		logged := 0
		for _, e := range hist.Entry {
			if typ, _, _ := strings.Cut(e.Request.URL, "/"); typ != "AuditEvent" {
				logged++
			}
		}
		if stored != 0 && stored != len(parsed.Entry) || logged != stored+len(kap.Definitions()) {
			t.Errorf("delay %v: %d resources stored and %d changes logged, want all %d or none", delay, stored, logged, len(parsed.Entry))
		}
		if status == http.StatusOK && stored == 0 {
			t.Errorf("delay %v: the transaction was answered 200 but is not stored", delay)
		}
		outcome := "none"
		if stored > 0 {
			outcome = "all"
		}
		t.Logf("kill after %v: answered %d, stored %s", delay, status, outcome)
		outcomes[outcome]++
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}
	if outcomes["none"] == 0 || outcomes["all"] == 0 {
		t.Logf("the kills did not land on both sides of the commit: %v", outcomes)
	}
}
