// Package embedded runs FerretDB (SQLite backend) inside the process, so the
// service and its tests speak the real MongoDB wire protocol with no server to
// install.
package embedded

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// ferretdb.New writes a package-level variable: starting two servers at once
// is a data race.
var newMu sync.Mutex

// Server is a running embedded FerretDB.
type Server struct {
	lock   *os.File // held while the server runs
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs FerretDB with its SQLite files in dir (created if missing),
// listening on a free loopback port. It fails when another process runs
// on dir. Its own logging is limited to errors and
// goes to logw; it never logs documents at that level.
func Start(dir string, logw io.Writer) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store dir: %w", err)
	}
	lock, err := lockDir(abs)
	if err != nil {
		return nil, err
	}
	newMu.Lock()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    slog.New(slog.NewJSONHandler(logw, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	newMu.Unlock()
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("start embedded FerretDB: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{lock: lock, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = f.Run(ctx)
	}()
	s.uri = f.MongoDBURI() // blocks until the listener is bound
	return s, nil
}

// URI is the mongodb:// address of the server.
func (s *Server) URI() string { return s.uri }

// Close stops the server and waits until its files are closed.
func (s *Server) Close() {
	s.cancel()
	<-s.done
	_ = s.lock.Close() // releases the lock
}
