// Package storetest gives integration tests a real MongoDB-wire store: the
// embedded FerretDB in a temporary directory (run in a process of its own,
// see ./server), or the MongoDB named by KAPFHIR_TEST_MONGODB_URI, each test
// in a database of its own.
package storetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/internal/store"
)

// EnvURI names the MongoDB the integration tests use instead of the embedded one.
const EnvURI = "KAPFHIR_TEST_MONGODB_URI"

var (
	once   sync.Once
	server *process
	err    error
)

// Main wraps testing.M.Run: it stops the package's embedded server and
// removes its files after the tests.
func Main(m *testing.M) int {
	code := m.Run()
	if server != nil {
		server.stop()
	}
	return code
}

// URI returns the store URI the tests use, and whether it is the embedded
// server (one connection).
func URI(t testing.TB) (string, bool) {
	t.Helper()
	if uri := os.Getenv(EnvURI); uri != "" {
		return uri, false
	}
	once.Do(func() { server, err = start() })
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	return server.uri, true
}

// process is the embedded store running in a process of its own (see
// ./server): built without -race even when the tests are, and gone when the
// test binary is, since it stops when its stdin closes.
type process struct {
	dir    string
	uri    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	mu     sync.Mutex // one index request at a time
}

func start() (*process, error) {
	dir, err := os.MkdirTemp("", "kapfhir-test-")
	if err != nil {
		return nil, err
	}
	p := &process{dir: dir}
	if err := p.run(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

func (p *process) run() error {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("cannot locate the store server's source")
	}
	bin := filepath.Join(p.dir, "store-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(file), "server")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the store server: %v\n%s", err, out)
	}
	p.cmd = exec.Command(bin, "-dir", filepath.Join(p.dir, "data"))
	p.cmd.Stderr = os.Stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start the store server: %w", err)
	}
	p.stdout = bufio.NewReader(stdout)
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		_ = p.stdin.Close()
		_ = p.cmd.Wait()
		return fmt.Errorf("the store server did not start: %w", err)
	}
	p.uri = strings.TrimSpace(line)
	return nil
}

// indexIDs asks the server to add the _id lookup index to db (see
// embedded.IndexIDs): the store's AfterIndexes.
func (p *process) indexIDs(_ context.Context, db string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := fmt.Fprintf(p.stdin, "index %s\n", db); err != nil {
		return err
	}
	reply, err := p.stdout.ReadString('\n')
	if err != nil {
		return fmt.Errorf("store server: %w", err)
	}
	if reply = strings.TrimSpace(reply); reply != "ok" {
		return fmt.Errorf("store server: %s", reply)
	}
	return nil
}

func (p *process) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Wait()
	_ = os.RemoveAll(p.dir)
}

// Database returns a fresh database name.
func Database() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "kapfhir_test_" + hex.EncodeToString(b)
}

// Open opens a store on a fresh database, dropped when the test ends.
func Open(t testing.TB, monitor *event.CommandMonitor) (*store.Store, string) {
	t.Helper()
	db := Database()
	s := OpenDatabase(t, db, monitor)
	t.Cleanup(func() { _ = s.Drop(context.Background()) })
	return s, db
}

// OpenDatabase opens another client on db, as a second service instance
// would; it is closed when the test ends.
func OpenDatabase(t testing.TB, db string, monitor *event.CommandMonitor) *store.Store {
	t.Helper()
	return OpenWith(t, db, store.Options{Monitor: monitor})
}

// OpenWith opens another client on db with o (its URI, Database and
// Embedded set here); it is closed when the test ends.
func OpenWith(t testing.TB, db string, o store.Options) *store.Store {
	t.Helper()
	o.URI, o.Embedded = URI(t)
	o.Database = db
	if o.Embedded {
		o.AfterIndexes = server.indexIDs
	}
	if o.Timeout == 0 {
		// Under -race on a shared machine a scan of the embedded store
		// can take many seconds; only a stuck command should time out.
		o.Timeout = 2 * time.Minute
	}
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}
