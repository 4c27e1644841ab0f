package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/resource"
)

func ds(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", ds(7), 50, 7 * time.Millisecond},
		{"one value p99", ds(7), 99, 7 * time.Millisecond},
		{"two values p50 is the lower", ds(1, 2), 50, 1 * time.Millisecond},
		{"two values p51 is the upper", ds(1, 2), 51, 2 * time.Millisecond},
		{"odd count median", ds(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"even count median", ds(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ds(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ds(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 10 is the max", ds(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p0 is the min", ds(3, 4, 5), 0, 3 * time.Millisecond},
		{"p100 is the max", ds(3, 4, 5), 100, 5 * time.Millisecond},
		{"tiny q is the min", ds(3, 4, 5), 0.001, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.q, got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" means valid
		check   func(t *testing.T, o params)
	}{
		{name: "defaults are self-hosted and embedded", args: nil, check: func(t *testing.T, o params) {
			if !o.selfHosted() || !o.embedded || o.n != 1000 || o.concurrency != 4 {
				t.Errorf("got %+v", o)
			}
			if strings.Join(o.scenarios, ",") != "create,read,update,search-patient-code,search-patient-date,search-include,transaction" {
				t.Errorf("scenarios %v", o.scenarios)
			}
		}},
		{name: "self-hosted on MongoDB is not embedded", args: []string{"-mongodb-uri", "mongodb://db:27017"}, check: func(t *testing.T, o params) {
			if !o.selfHosted() || o.embedded {
				t.Errorf("got %+v", o)
			}
		}},
		{name: "remote with store", args: []string{"-base", "http://h:8080/fhir/", "-mongodb-uri", "mongodb://h:27017", "-embedded"}, check: func(t *testing.T, o params) {
			if o.selfHosted() || !o.embedded || o.base != "http://h:8080/fhir" {
				t.Errorf("got %+v", o)
			}
		}},
		{name: "duration only", args: []string{"-n", "0", "-d", "5s"}},
		{name: "count and duration", args: []string{"-n", "10", "-d", "5s", "-c", "1"}},
		{name: "scenario subset", args: []string{"-scenarios", "create, read"}},
		{name: "unbounded", args: []string{"-n", "0"}, wantErr: "must be bounded"},
		{name: "negative n", args: []string{"-n", "-1"}, wantErr: "-n must not be negative"},
		{name: "negative d", args: []string{"-d", "-1s"}, wantErr: "-d must not be negative"},
		{name: "zero concurrency", args: []string{"-c", "0"}, wantErr: "-c must be between"},
		{name: "huge concurrency", args: []string{"-c", "5000"}, wantErr: "-c must be between"},
		{name: "zero timeout", args: []string{"-timeout", "0s"}, wantErr: "-timeout must be positive"},
		{name: "zero op timeout", args: []string{"-op-timeout", "0s"}, wantErr: "-op-timeout must be positive"},
		{name: "remote without store", args: []string{"-base", "http://h:8080/fhir"}, wantErr: "needs -mongodb-uri"},
		{name: "base not http", args: []string{"-base", "ftp://h/fhir", "-mongodb-uri", "mongodb://h"}, wantErr: "not an http(s) URL"},
		{name: "base with query", args: []string{"-base", "http://h/fhir?x=1", "-mongodb-uri", "mongodb://h"}, wantErr: "not an http(s) URL"},
		{name: "bad mongodb uri", args: []string{"-mongodb-uri", "http://h"}, wantErr: "not a mongodb:// URI"},
		{name: "bad database", args: []string{"-database", "a.b"}, wantErr: "not a valid database name"},
		{name: "empty database", args: []string{"-database", ""}, wantErr: "not a valid database name"},
		{name: "unknown scenario", args: []string{"-scenarios", "create,search"}, wantErr: `unknown scenario "search"`},
		{name: "scenario twice", args: []string{"-scenarios", "create,create"}, wantErr: "listed twice"},
		{name: "read without create", args: []string{"-scenarios", "read"}, wantErr: `needs "create"`},
		{name: "update before create", args: []string{"-scenarios", "update,create"}, wantErr: `needs "create"`},
		{name: "no scenarios", args: []string{"-scenarios", " , "}, wantErr: "names none"},
		{name: "sync with -base", args: []string{"-base", "http://127.0.0.1:8080/fhir", "-mongodb-uri", "mongodb://x", "-sync-ehr", "http://127.0.0.1:9/fhir"}, wantErr: "-sync-ehr needs the self-hosted service"},
		{name: "unknown flag", args: []string{"-x"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, errUsage) {
				t.Errorf("error %v is not a usage error", err)
			}
		})
	}
}

func TestIDFromLocation(t *testing.T) {
	tests := []struct{ loc, want, wantErr string }{
		{loc: "http://h/fhir/Observation/abc-1/_history/1", want: "abc-1"},
		{loc: "http://h/fhir/Observation/abc", want: "abc"},
		{loc: "http://h/fhir/Patient/abc/_history/1", wantErr: "names no Observation"},
		{loc: "http://h/fhir/Observation//_history/1", wantErr: "has no id"},
		{loc: "", wantErr: "names no Observation"},
	}
	for _, tt := range tests {
		got, err := idFromLocation(tt.loc, "Observation")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("idFromLocation(%q) error %v, want %q", tt.loc, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("idFromLocation(%q) = %q, %v; want %q", tt.loc, got, err, tt.want)
		}
	}
}

// The bodies must be valid for the server, and an update must never repeat a
// create's value (it would be a no-op).
func TestObservationBodies(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 99, 100, 12345} {
		for _, update := range []bool{false, true} {
			id := ""
			if update {
				id = resource.NewID()
			}
			body := observation(i, update, id, "", time.Time{})
			res, err := fhir.ParseResource(body)
			if err != nil {
				t.Fatalf("observation(%d, %v) is not valid: %v\n%s", i, update, err, body)
			}
			if res.Type() != "Observation" || res.ID() != id {
				t.Errorf("observation(%d, %v): type %q id %q", i, update, res.Type(), res.ID())
			}
			w := weight(i, update)
			if seen[w] {
				t.Errorf("weight %s repeats", w)
			}
			seen[w] = true
		}
	}
	stored := observation(3, true, "x", "2", time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC))
	if _, err := fhir.ParseResource(stored); err != nil {
		t.Fatalf("stored form is not valid: %v\n%s", err, stored)
	}
	if !bytes.Contains(stored, []byte(`"lastUpdated":"2025-01-02T03:04:05.006Z"`)) {
		t.Errorf("stored form has no millisecond UTC lastUpdated: %s", stored)
	}
}

func TestMeasureStopsAtCount(t *testing.T) {
	var calls atomic.Int64
	p := measure(context.Background(), load{concurrency: 3, n: 25}, func(_ context.Context, i int) error {
		calls.Add(1)
		if i%5 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if p.ops != 25 || calls.Load() != 25 || p.errors != 5 || len(p.latencies) != 20 || p.firstError != "boom" {
		t.Errorf("ops %d calls %d errors %d latencies %d first %q", p.ops, calls.Load(), p.errors, len(p.latencies), p.firstError)
	}
}

func TestMeasureStopsAtDuration(t *testing.T) {
	start := time.Now()
	p := measure(context.Background(), load{concurrency: 2, duration: 50 * time.Millisecond}, func(context.Context, int) error {
		time.Sleep(time.Millisecond)
		return nil
	})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v", el)
	}
	if p.ops == 0 || p.errors != 0 {
		t.Errorf("ops %d errors %d", p.ops, p.errors)
	}
}

// TestSelfHostedRun runs the tool end to end against the embedded server.
func TestSelfHostedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	// Small: under -race a 100-entry transaction takes seconds, and the
	// test shares the machine with the other packages' tests.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	const n = 5
	if err := run(ctx, []string{"-n", "5", "-c", "2", "-json", "-timeout", "5m", "-op-timeout", "2m"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	got := map[string]result{}
	for _, r := range rep.Results {
		got[r.Scenario+"/"+r.Side] = r
	}
	for _, name := range scenarioNames() {
		for _, side := range []string{"http", "raw"} {
			r, ok := got[name+"/"+side]
			if !ok {
				t.Errorf("no result for %s/%s", name, side)
				continue
			}
			if r.Ops != n || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms {
				t.Errorf("%s/%s: %+v", name, side, r)
			}
		}
	}
	if len(rep.Ratios) != len(scenarios) {
		t.Errorf("ratios %+v", rep.Ratios)
	}
	// create then update: one version each on both sides; transaction:
	// txnEntries new resources per operation, counted as such.
	if r := got["transaction/http"]; r.ResourcesPerSec != r.OpsPerSec*txnEntries {
		t.Errorf("transaction resources/s %v at %v ops/s", r.ResourcesPerSec, r.OpsPerSec)
	}
	// The service's own definitions are stored at its start (one version each).
	defs := int64(len(kap.Definitions()))
	want := map[string]int64{"resources": n + n*txnEntries + defs, "history": 2*n + n*txnEntries + defs,
		benchResources: n + n*txnEntries, benchHistory: 2*n + n*txnEntries}
	for k, v := range want {
		if rep.CollectionDocs[k] != v {
			t.Errorf("collection %s has %d documents, want %d (all: %v)", k, rep.CollectionDocs[k], v, rep.CollectionDocs)
		}
	}
	if rep.Store.DriverPoolSize != 1 || !strings.HasPrefix(rep.Store.Kind, "embedded-ferretdb") {
		t.Errorf("store %+v", rep.Store)
	}
}

func TestTableOutput(t *testing.T) {
	rep := &report{
		Machine:  machine{GOOS: "linux", GOARCH: "amd64", NumCPU: 2, GOMAXPROCS: 2, GoVersion: "go1.26"},
		Store:    storeDoc{Kind: "embedded-ferretdb (SQLite)", FerretDBVersion: "v1.24.2", Database: "kapfhir", DriverPoolSize: 1},
		Settings: settings{Base: "http://x/fhir", SelfHosted: true, Concurrency: 4, N: 10, Scenarios: []string{"create"}},
		Results: []result{
			{Scenario: "create", Side: "http", Ops: 10, OpsPerSec: 50, P50Ms: 20, P99Ms: 30},
			{Scenario: "create", Side: "raw", Ops: 10, OpsPerSec: 100, P50Ms: 10, P99Ms: 15},
		},
	}
	rep.Ratios = []ratio{newRatio(rep.Results[0], rep.Results[1])}
	if q := rep.Ratios[0]; q.Throughput != 0.5 || q.P50 != 2 {
		t.Errorf("ratio %+v", q)
	}
	var b bytes.Buffer
	writeTable(&b, rep)
	for _, want := range []string{"linux/amd64, 2 CPUs", "v1.24.2", "driver pool size 1", "throughput http/raw", "0.50", "2.00"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
