// Command kapfhir serves the FHIR R4 API of a KAP clinic. All configuration
// comes from the environment (see README.md).
//
//	kapfhir             serve
//	kapfhir import DIR  load the NDJSON files of DIR (a bulk export) and exit
//	kapfhir healthcheck exit 0 when the server at KAPFHIR_HTTP_ADDR answers /healthz
//	kapfhir seed [--clients N] [--seed S] [--force]
//	                    load a synthetic clinic and exit
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/internal/app"
	"github.com/kapfhir/kapfhir/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kapfhir:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args, environ []string, stdout io.Writer) error {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg, err := config.Load(env)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	opts := app.Options{Logger: logger, Registry: prometheus.NewRegistry(), ErrorLog: stdout}
	switch {
	case len(args) == 0:
		a, err := app.Start(ctx, cfg, opts)
		if err != nil {
			return err
		}
		return a.Serve(ctx)
	case len(args) == 2 && args[0] == "import":
		rep, err := app.Import(ctx, cfg, args[1], stdout, opts)
		if err == nil && rep.Failed() > 0 {
			err = fmt.Errorf("%d lines were not imported", rep.Failed())
		}
		return err
	case len(args) == 1 && args[0] == "healthcheck":
		return app.Healthcheck(ctx, cfg.HTTPAddr, cfg.TLS())
	case len(args) > 0 && args[0] == "seed":
		so, err := seedOptions(args[1:])
		if err != nil {
			return err
		}
		return app.Seed(ctx, cfg, so, stdout, opts)
	}
	return fmt.Errorf("usage: kapfhir [import DIR | seed [--clients N] [--seed S] [--force] | healthcheck]")
}

func seedOptions(args []string) (app.SeedOptions, error) {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error returned says what is wrong
	so := app.SeedOptions{}
	fs.IntVar(&so.Clients, "clients", defaultSeedClients, "number of clients")
	fs.Uint64Var(&so.Seed, "seed", 1, "random seed: the same seed gives the same clinic")
	fs.BoolVar(&so.Force, "force", false, "seed even when the store already holds KAP clients")
	if err := fs.Parse(args); err != nil {
		return so, fmt.Errorf("seed: %w (usage: kapfhir seed [--clients N] [--seed S] [--force])", err)
	}
	if fs.NArg() > 0 || so.Clients < 1 || so.Clients > 10000 {
		return so, fmt.Errorf("usage: kapfhir seed [--clients N (1 to 10000)] [--seed S] [--force]")
	}
	return so, nil
}

// defaultSeedClients is the clinic of the KAP issue: about 6 minutes on
// the embedded store of a busy 2-CPU machine (docs/performance.md,
// "Seeding").
const defaultSeedClients = 50
