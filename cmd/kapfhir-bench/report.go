package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the outcome of a run.
type report struct {
	Machine  machine  `json:"machine"`
	Store    storeDoc `json:"store"`
	Settings settings `json:"settings"`
	Results  []result `json:"results"`
	Ratios   []ratio  `json:"ratios"`
	// CollectionDocs counts the documents of the service's and the driver
	// side's collections at the end of the run, before the latter are dropped.
	CollectionDocs map[string]int64 `json:"collection_docs,omitempty"`
	// Sync is the EHR sync measured with -sync-ehr.
	Sync *syncResult `json:"sync,omitempty"`
}

type machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
}

type storeDoc struct {
	Kind            string `json:"kind"` // embedded-ferretdb, ferretdb or mongodb
	ServerVersion   string `json:"server_version,omitempty"`
	FerretDBVersion string `json:"ferretdb_version,omitempty"`
	Database        string `json:"database"`
	DriverPoolSize  int    `json:"driver_pool_size,omitempty"` // 0: driver default
}

type settings struct {
	Base        string   `json:"base"`
	SelfHosted  bool     `json:"self_hosted"`
	Concurrency int      `json:"concurrency"`
	N           int      `json:"n"`
	Duration    string   `json:"duration,omitempty"`
	Scenarios   []string `json:"scenarios"`
}

// result is one scenario on one side.
type result struct {
	Scenario   string  `json:"scenario"`
	Side       string  `json:"side"` // http or raw
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	// ResourcesPerSec is set for scenarios whose operations write many
	// resources (transaction).
	ResourcesPerSec float64 `json:"resources_per_sec,omitempty"`
}

// ratio compares the sides of one scenario: HTTP value / raw value.
// Throughput below 1 and p50 above 1 both mean HTTP is slower.
type ratio struct {
	Scenario   string  `json:"scenario"`
	Throughput float64 `json:"throughput_http_over_raw"`
	P50        float64 `json:"p50_http_over_raw"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func newResult(sc scenario, side string, p phase) result {
	r := result{
		Scenario: sc.name, Side: side, Ops: p.ops, Errors: p.errors, FirstError: p.firstError,
		Seconds:   p.elapsed.Seconds(),
		OpsPerSec: p.throughput(),
		P50Ms:     ms(percentile(p.latencies, 50)),
		P99Ms:     ms(percentile(p.latencies, 99)),
	}
	if sc.perOp > 1 {
		r.ResourcesPerSec = r.OpsPerSec * float64(sc.perOp)
	}
	return r
}

func newRatio(h, r result) ratio {
	q := ratio{Scenario: h.Scenario}
	if r.OpsPerSec > 0 {
		q.Throughput = h.OpsPerSec / r.OpsPerSec
	}
	if r.P50Ms > 0 {
		q.P50 = h.P50Ms / r.P50Ms
	}
	return q
}

func (r *report) errors() int {
	n := 0
	for _, x := range r.Results {
		n += x.Errors
	}
	return n
}

func writeJSON(w io.Writer, r *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func writeTable(w io.Writer, r *report) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s\n", m.GOOS, m.GOARCH, m.NumCPU, m.GOMAXPROCS, m.GoVersion)
	s := r.Store
	fmt.Fprintf(w, "store:   %s", s.Kind)
	if s.FerretDBVersion != "" {
		fmt.Fprintf(w, " %s", s.FerretDBVersion)
	}
	if s.ServerVersion != "" {
		fmt.Fprintf(w, " (reports MongoDB %s)", s.ServerVersion)
	}
	fmt.Fprintf(w, ", database %s", s.Database)
	if s.DriverPoolSize > 0 {
		fmt.Fprintf(w, ", driver pool size %d", s.DriverPoolSize)
	}
	fmt.Fprintln(w)
	st := r.Settings
	where := st.Base
	if st.SelfHosted {
		where += " (self-hosted)"
	}
	fmt.Fprintf(w, "target:  %s\n", where)
	fmt.Fprintf(w, "load:    -c %d -n %d", st.Concurrency, st.N)
	if st.Duration != "" {
		fmt.Fprintf(w, " -d %s", st.Duration)
	}
	fmt.Fprintf(w, " -scenarios %s\n\n", strings.Join(st.Scenarios, ","))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tside\tops\terrors\tops/s\tp50 ms\tp99 ms\t")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t\n", x.Scenario, x.Side, x.Ops, x.Errors, x.OpsPerSec, x.P50Ms, x.P99Ms)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tthroughput http/raw\tp50 http/raw\t")
	for _, q := range r.Ratios {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t\n", q.Scenario, q.Throughput, q.P50)
	}
	_ = tw.Flush()
	if y := r.Sync; y != nil {
		fmt.Fprintf(w, "\nEHR sync to %s: %d Observations delivered, %.1f/s (%.2f of the HTTP create rate), lag p50 %.2f s, p95 %.2f s\n",
			y.EHR, y.Delivered, y.PerSec, y.OverCreate, y.LagP50, y.LagP95)
	}
	if len(r.CollectionDocs) > 0 {
		names := make([]string, 0, len(r.CollectionDocs))
		for k := range r.CollectionDocs {
			names = append(names, k)
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s %d", k, r.CollectionDocs[k])
		}
		fmt.Fprintf(w, "\ndocuments at the end: %s\n", strings.Join(parts, ", "))
	}
	for _, x := range r.Results {
		if x.ResourcesPerSec > 0 {
			fmt.Fprintf(w, "resources/s of %s/%s: %.0f\n", x.Scenario, x.Side, x.ResourcesPerSec)
		}
	}
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(w, "first error of %s/%s: %s\n", x.Scenario, x.Side, x.FirstError)
		}
	}
}

// findResult returns the result of scenario on side, if it ran.
func findResult(rs []result, scenario, side string) *result {
	for i := range rs {
		if rs[i].Scenario == scenario && rs[i].Side == side {
			return &rs[i]
		}
	}
	return nil
}
