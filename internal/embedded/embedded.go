// Package embedded runs FerretDB (SQLite backend) inside the process, so the
// service and its tests speak the real MongoDB wire protocol with no server to
// install.
package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses, for IndexIDs
)

// ferretdb.New writes a package-level variable: starting two servers at once
// is a data race.
var newMu sync.Mutex

// Server is a running embedded FerretDB.
type Server struct {
	dir    string   // absolute: the SQLite files
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
	s := &Server{dir: abs, lock: lock, cancel: cancel, done: make(chan struct{})}
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

// IndexIDs makes the `{_id: value}` lookups of database db use an index.
// FerretDB 1.24 pushes such a filter down to SQLite as
// `_ferretdb_sjson->'$._id' = ?` but declares its `_id` index on
// `_ferretdb_sjson->"_id"`, an expression SQLite does not match, so every
// read, update and delete by _id scanned the table (~130 ms at 4,000
// resources, 2.4 ms with this index). The index is added to each of the
// database's collections that exist (call it once the store has created
// its collections); FerretDB does not list it and drops it with its table.
func (s *Server) IndexIDs(ctx context.Context, db string) error {
	return IndexIDs(ctx, s.dir, db)
}

// IndexIDs is Server.IndexIDs on the files in dir, for a server run by
// another process.
func IndexIDs(ctx context.Context, dir, db string) error {
	if db == "" || filepath.Base(db) != db {
		return fmt.Errorf("embedded store: %q is not a database name", db)
	}
	file := filepath.Join(dir, db+".sqlite")
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	// FerretDB's own connections wait up to 10 s for a lock; so does this one.
	conn, err := sql.Open("sqlite", "file:"+file+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return fmt.Errorf("embedded store: list collections: %w", err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			_ = rows.Close()
			return fmt.Errorf("embedded store: list collections: %w", err)
		}
		tables = append(tables, t)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("embedded store: list collections: %w", err)
	}
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+"_kapfhir_id", t)
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("embedded store: index _id: %w", err)
		}
	}
	return nil
}
