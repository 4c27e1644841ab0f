package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"
)

// errUsage marks errors in the command line.
var errUsage = errors.New("usage")

// params are the settings of one run.
type params struct {
	base        string // FHIR base URL; empty: start the service in process
	mongoURI    string
	database    string
	embedded    bool // the store is FerretDB: one connection for the driver side
	concurrency int
	n           int           // operations per scenario and side; 0: no count limit
	duration    time.Duration // time limit per scenario and side; 0: none
	timeout     time.Duration // hard limit on the whole run
	opTimeout   time.Duration // limit on one operation
	scenarios   []string
	json        bool
	syncEHR     string // FHIR base of an EHR the service syncs Observations to; "": no sync
}

// selfHosted reports whether the tool starts the service itself.
func (o params) selfHosted() bool { return o.base == "" }

func parseFlags(args []string, stderr io.Writer) (params, error) {
	var o params
	var list string
	fs := flag.NewFlagSet("kapfhir-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.base, "base", "", "FHIR base URL of the server under test, e.g. http://127.0.0.1:8080/fhir; empty: start the service in process on an embedded FerretDB (or on -mongodb-uri)")
	fs.StringVar(&o.mongoURI, "mongodb-uri", "", "MongoDB URI of the server's store, for the driver side (required with -base)")
	fs.StringVar(&o.database, "database", "kapfhir", "database of the server's store")
	fs.BoolVar(&o.embedded, "embedded", false, "the store is FerretDB, which is only atomic with one connection: the driver side uses a pool of 1 (implied when the tool starts an embedded FerretDB)")
	fs.IntVar(&o.concurrency, "c", 4, "concurrent workers")
	fs.IntVar(&o.n, "n", 1000, "operations per scenario and side (0: limited by -d only)")
	fs.DurationVar(&o.duration, "d", 0, "time limit per scenario and side (0: limited by -n only)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "hard limit on the whole run")
	fs.DurationVar(&o.opTimeout, "op-timeout", 30*time.Second, "limit on one operation")
	fs.StringVar(&list, "scenarios", strings.Join(scenarioNames(), ","), "comma-separated scenarios to run, in order")
	fs.BoolVar(&o.json, "json", false, "write the report as JSON")
	fs.StringVar(&o.syncEHR, "sync-ehr", "", "FHIR base of an EHR (e.g. the stand-in of internal/ehr/ehrtest) the self-hosted service pushes its Observations to; the run then measures sync throughput and lag")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.scenarios = append(o.scenarios, s)
		}
	}
	o.base = strings.TrimRight(o.base, "/")
	if o.selfHosted() && o.mongoURI == "" {
		o.embedded = true
	}
	if err := o.validate(); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	return o, nil
}

// validate checks the parameters are complete and consistent.
func (o params) validate() error {
	if o.concurrency < 1 || o.concurrency > 1024 {
		return fmt.Errorf("-c must be between 1 and 1024, not %d", o.concurrency)
	}
	if o.n < 0 {
		return fmt.Errorf("-n must not be negative")
	}
	if o.duration < 0 {
		return fmt.Errorf("-d must not be negative")
	}
	if o.n == 0 && o.duration == 0 {
		return fmt.Errorf("set -n, -d or both: the run must be bounded")
	}
	if o.timeout <= 0 {
		return fmt.Errorf("-timeout must be positive")
	}
	if o.opTimeout <= 0 {
		return fmt.Errorf("-op-timeout must be positive")
	}
	if o.database == "" || strings.ContainsAny(o.database, "/\\. \"$") {
		return fmt.Errorf("-database %q is not a valid database name", o.database)
	}
	if o.base != "" {
		u, err := url.Parse(o.base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("-base %q is not an http(s) URL such as http://127.0.0.1:8080/fhir", o.base)
		}
		if o.mongoURI == "" {
			return fmt.Errorf("-base needs -mongodb-uri: the driver side runs against the same store")
		}
	}
	if o.mongoURI != "" && !strings.HasPrefix(o.mongoURI, "mongodb://") && !strings.HasPrefix(o.mongoURI, "mongodb+srv://") {
		return fmt.Errorf("-mongodb-uri %q is not a mongodb:// URI", o.mongoURI)
	}
	if o.syncEHR != "" && !o.selfHosted() {
		return fmt.Errorf("-sync-ehr needs the self-hosted service (no -base): the tool configures its EHR endpoint")
	}
	if len(o.scenarios) == 0 {
		return fmt.Errorf("-scenarios names none")
	}
	for i, name := range o.scenarios {
		sc, ok := scenarioByName(name)
		if !ok {
			return fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(scenarioNames(), ", "))
		}
		if slices.Contains(o.scenarios[:i], name) {
			return fmt.Errorf("scenario %q is listed twice", name)
		}
		for _, req := range sc.requires {
			if !slices.Contains(o.scenarios[:i], req) {
				return fmt.Errorf("scenario %q needs %q to run before it", name, req)
			}
		}
	}
	return nil
}
