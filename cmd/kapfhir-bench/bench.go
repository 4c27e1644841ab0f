package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/internal/app"
	"github.com/kapfhir/kapfhir/internal/config"
)

// bench runs the selected scenarios, each first over HTTP, then with the
// driver, so the two sides never compete for the machine. It returns the
// report of what ran, also when it stops on an error.
func bench(ctx context.Context, o params) (*report, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	base, mongoURI := o.base, o.mongoURI
	if o.selfHosted() {
		svc, err := startService(ctx, o)
		if err != nil {
			return nil, err
		}
		defer svc.stop()
		base, mongoURI = svc.app.URL()+"/fhir", svc.app.MongoURI()
	}

	raw, err := connect(ctx, mongoURI, o.database, o.embedded, o.opTimeout)
	if err != nil {
		return nil, err
	}
	defer raw.close()
	h := newHTTPSide(base, o.concurrency, o.opTimeout)
	defer h.close()

	rep := &report{
		Machine: machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
			GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()},
		Settings: settings{Base: base, SelfHosted: o.selfHosted(), Concurrency: o.concurrency, N: o.n, Scenarios: o.scenarios},
	}
	if o.duration > 0 {
		rep.Settings.Duration = o.duration.String()
	}
	rep.Store = describeStore(ctx, o, raw)

	if err := warmUp(ctx, h, raw); err != nil {
		return rep, err
	}
	if err := raw.prepare(ctx); err != nil {
		return rep, err
	}
	defer func() {
		// The run's context may be over; dropping must still happen.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*o.opTimeout)
		defer dcancel()
		_ = raw.drop(dctx)
	}()

	l := load{concurrency: o.concurrency, n: o.n, duration: o.duration}
	for _, name := range o.scenarios {
		sc, _ := scenarioByName(name)
		hp := measure(ctx, l, func(ctx context.Context, i int) error { return sc.http(h, ctx, i) })
		rp := measure(ctx, l, func(ctx context.Context, i int) error { return sc.raw(raw, ctx, i) })
		hr, rr := newResult(sc, "http", hp), newResult(sc, "raw", rp)
		rep.Results = append(rep.Results, hr, rr)
		rep.Ratios = append(rep.Ratios, newRatio(hr, rr))
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("stopped during %s: %w", sc.name, err)
		}
	}
	if o.syncEHR != "" {
		if rep.Sync, err = measureSync(ctx, h, adminBase(base), o.syncEHR); err != nil {
			return rep, err
		}
		if create := findResult(rep.Results, "create", "http"); create != nil && create.OpsPerSec > 0 {
			rep.Sync.OverCreate = rep.Sync.PerSec / create.OpsPerSec
		}
	}
	rep.CollectionDocs, err = raw.countDocs(ctx, "resources", "history", benchResources, benchHistory)
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// service is the in-process kapfhir of a self-hosted run.
type service struct {
	app    *app.App
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// startService starts kapfhir on a loopback port, storing in a temporary
// directory (embedded FerretDB) or in o.mongoURI.
func startService(ctx context.Context, o params) (*service, error) {
	dir, err := os.MkdirTemp("", "kapfhir-bench-*")
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"KAPFHIR_HTTP_ADDR":        "127.0.0.1:0",
		"KAPFHIR_DATA_DIR":         dir,
		"KAPFHIR_MONGODB_URI":      o.mongoURI,
		"KAPFHIR_MONGODB_DATABASE": o.database,
		"KAPFHIR_LOG_LEVEL":        "error",
		"KAPFHIR_STORE_TIMEOUT":    o.opTimeout.String(),
		"KAPFHIR_RATE_LIMIT":       "0", // the load is the point
	}
	if o.syncEHR != "" {
		f, err := writeSyncConfig(dir, o.syncEHR)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		env["KAPFHIR_EHR_CONFIG"] = f
	}
	cfg, err := config.Load(env)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	// The service lives until stop, even when ctx ends first.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a, err := app.Start(sctx, cfg, app.Options{Logger: logger, Registry: prometheus.NewRegistry(), ErrorLog: io.Discard})
	if err != nil {
		cancel()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start kapfhir: %w", err)
	}
	s := &service{app: a, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(sctx) }()
	return s, nil
}

// stop shuts the service down and removes its files.
func (s *service) stop() {
	s.cancel()
	<-s.done
	_ = os.RemoveAll(s.dir)
}

// describeStore says what the driver side talks to.
func describeStore(ctx context.Context, o params, raw *rawSide) storeDoc {
	d := storeDoc{Kind: "mongodb", Database: o.database}
	if o.embedded {
		d.DriverPoolSize = 1
	}
	si, err := raw.serverInfo(ctx)
	if err == nil {
		d.ServerVersion = si.Version
		if si.FerretDBVersion != "" {
			d.Kind = "ferretdb"
			d.FerretDBVersion = si.FerretDBVersion
		}
	}
	if o.selfHosted() && o.mongoURI == "" {
		d.Kind = "embedded-ferretdb (SQLite)"
		// Embedded FerretDB reports its version as unknown; the build knows it.
		if v := moduleVersion("github.com/FerretDB/FerretDB"); v != "" {
			d.FerretDBVersion = v
		}
	}
	return d
}

func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range bi.Deps {
		if m.Path == path {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return ""
}

// warmUp checks both sides answer and opens their connections before any
// clock runs.
func warmUp(ctx context.Context, h *httpSide, raw *rawSide) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.do(ctx, "GET", h.base+"/metadata", nil, 200)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the FHIR server does not answer: %w", errors.Join(err, ctx.Err()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := raw.serverInfo(ctx); err != nil {
		return fmt.Errorf("the store does not answer: %w", err)
	}
	return nil
}
