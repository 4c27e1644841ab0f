// Command kapfhir serves the FHIR R4 API of a KAP clinic. All configuration
// comes from the environment (see README.md).
//
//	kapfhir             serve
//	kapfhir import DIR  load the NDJSON files of DIR (a bulk export) and exit
//	kapfhir healthcheck exit 0 when the server at KAPFHIR_HTTP_ADDR answers /healthz
package main

import (
	"context"
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
		return app.Healthcheck(ctx, cfg.HTTPAddr)
	}
	return fmt.Errorf("usage: kapfhir [import DIR | healthcheck]")
}
