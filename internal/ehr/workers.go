package ehr

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kapfhir/kapfhir/internal/lease"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Worker is an engine's worker of one endpoint, as Workers runs it.
type Worker interface {
	// Endpoint is the endpoint it serves.
	Endpoint() *Endpoint
	// Def is the stored definition it was made from (JSON), to tell a
	// changed one; "" for the configuration file's.
	Def() string
	// Routine is its goroutine in Workers.Run, guarded by the Workers.
	Routine() *Routine
	// Run works until ctx ends, then gives the endpoint's lease up.
	Run(ctx context.Context)
}

// Workers are the endpoint workers of an engine (the outbound engine, the
// inbound puller): the configuration file's, fixed, then those of the
// endpoints defined through the admin API, by name, started and stopped as
// their definitions change.
type Workers[W Worker] struct {
	st   *store.Store
	log  *slog.Logger
	what string          // the engine in log messages
	file map[string]bool // the file's endpoint names, with a worker or not
	// build makes the worker of an API definition; false when it has
	// nothing to run in this engine.
	build func(StoredDef) (W, bool, error)

	reloading sync.Mutex // serialises Reload
	mu        sync.Mutex // guards the fields below and the workers' routines
	workers   []W        // the file's in its order, then the API's by name
	run       context.Context
	running   sync.WaitGroup // the worker goroutines started in Run
}

// NewWorkers returns the workers of an engine named what in the logs:
// those of the file's endpoints (named fileNames, which win over API
// definitions of their names) and, once Reload read them, those build
// makes of the definitions in st.
func NewWorkers[W Worker](st *store.Store, log *slog.Logger, what string, fileNames []string, fileWorkers []W, build func(StoredDef) (W, bool, error)) *Workers[W] {
	ws := &Workers[W]{st: st, log: log, what: what, file: map[string]bool{}, build: build, workers: fileWorkers}
	for _, n := range fileNames {
		ws.file[n] = true
	}
	return ws
}

// Current is a snapshot of the workers.
func (ws *Workers[W]) Current() []W {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.workers
}

// Named is the worker of the endpoint name, if there is one.
func (ws *Workers[W]) Named(name string) (W, bool) {
	for _, w := range ws.Current() {
		if w.Endpoint().Name == name {
			return w, true
		}
	}
	var none W
	return none, false
}

// Run runs every worker until ctx ends, re-reading the endpoints defined
// through the admin API every reload, then waits until every worker has
// returned (given its lease up).
func (ws *Workers[W]) Run(ctx context.Context, reload time.Duration) {
	ws.mu.Lock()
	ws.run = ctx
	for _, w := range ws.workers {
		ws.start(w)
	}
	ws.mu.Unlock()
	for {
		if err := ws.Reload(ctx); err != nil && ctx.Err() == nil {
			ws.log.Error(ws.what+": read the endpoint definitions", "error", err.Error())
		}
		// A real wait, not the engine's injected one: a test's clock or
		// recorded waits are the workers'.
		if lease.Sleep(ctx, reload) != nil {
			break
		}
	}
	ws.mu.Lock()
	ws.run = nil // no more starts: the workers end with ctx
	ws.mu.Unlock()
	ws.running.Wait()
}

// Reload reads the endpoint definitions of the store and makes the API
// endpoints' workers match: a new definition gets a worker, a changed one
// a new worker after the old one stopped (and gave its lease up), a
// removed one's worker stops. A definition this instance cannot resolve
// (an environment variable it lacks) is logged and not run. A definition
// named like a file endpoint is ignored: the file wins.
func (ws *Workers[W]) Reload(ctx context.Context) error {
	ws.reloading.Lock()
	defer ws.reloading.Unlock()
	defs, err := StoredDefs(ctx, ws.st, func(name string) bool { return ws.file[name] }, ws.log)
	if err != nil {
		return err
	}
	old := map[string]W{}
	var keep []W
	for _, w := range ws.Current() {
		if w.Endpoint().Source == SourceFile {
			keep = append(keep, w)
		} else {
			old[w.Endpoint().Name] = w
		}
	}
	fileCount := len(keep)
	var started []W
	for _, d := range defs {
		if w, ok := old[d.Name]; ok && w.Def() == d.Def {
			keep = append(keep, w)
			delete(old, d.Name)
			continue
		}
		w, ok, err := ws.build(d)
		if err != nil {
			ws.log.Error(ws.what+": endpoint definition", "endpoint", d.Name, "error", err.Error())
			continue
		}
		if ok {
			keep = append(keep, w)
			started = append(started, w)
		}
	}
	// What is left in old was removed or replaced: stopped before the
	// new worker of its name starts (one worker per name and instance).
	for _, w := range old {
		w.Routine().Halt(&ws.mu)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.workers = keep
	if ws.run != nil {
		for _, w := range started {
			ws.start(w)
		}
	}
	if n := len(keep) - fileCount; n > 0 || len(started) > 0 {
		ws.log.Debug(ws.what+": endpoints reloaded", "file", fileCount, "api", n)
	}
	return nil
}

// start runs w in Run's context; ws.mu is held and ws.run set.
func (ws *Workers[W]) start(w W) {
	w.Routine().Start(ws.run, &ws.running, w.Run)
}
