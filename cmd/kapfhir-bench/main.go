// Command kapfhir-bench puts load on kapfhir's FHIR create, read and update
// interactions and, in the same run, sends the equivalent store commands to
// the same database with the MongoDB driver directly. Reporting both side by
// side shows what the HTTP and FHIR layers cost on top of the store.
//
// With no -base it starts the service itself, in process, on an embedded
// FerretDB in a temporary directory, and removes it afterwards:
//
//	go run ./cmd/kapfhir-bench -n 2000 -c 4
//
// Against a running server, name its FHIR base and its store:
//
//	kapfhir-bench -base http://127.0.0.1:8080/fhir \
//	    -mongodb-uri mongodb://127.0.0.1:27017 -database kapfhir
//
// The driver side writes to its own collections (bench_resources,
// bench_history, bench_counters), which it drops at the end. The HTTP side
// creates real Observations: point it at a test server only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "kapfhir-bench:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "kapfhir-bench:", err)
		os.Exit(1)
	}
}

// run parses args, runs every selected scenario on both sides and writes the
// report to stdout. It returns an error when the run could not be completed
// or when any operation failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	rep, err := bench(ctx, o)
	if rep != nil {
		if o.json {
			if werr := writeJSON(stdout, rep); werr != nil && err == nil {
				err = werr
			}
		} else {
			writeTable(stdout, rep)
		}
	}
	if err != nil {
		return err
	}
	if n := rep.errors(); n > 0 {
		return fmt.Errorf("%d operations failed", n)
	}
	return nil
}
