package deploy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kapfhir/kapfhir/internal/app"
	"github.com/kapfhir/kapfhir/internal/config"
)

// family is one metric family the service exports.
type family struct {
	typ    dto.MetricType
	typed  bool // false: registered but no series yet, so its type is unknown
	labels map[string]bool
}

// series are the series names a query may select from the family.
func (f family) series(name string) []string {
	if !f.typed {
		return []string{name}
	}
	switch f.typ {
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return []string{name + "_bucket", name + "_sum", name + "_count"}
	case dto.MetricType_SUMMARY:
		return []string{name, name + "_sum", name + "_count"}
	}
	return []string{name}
}

var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// exportedFamilies starts the real service on an embedded store, serves
// one request, and returns every metric family registered on its
// registry: names and labels from the collectors' descriptions (a vector
// without series yet is still listed), types from a gather.
func exportedFamilies(t *testing.T) map[string]family {
	t.Helper()
	cfg, err := config.Load(map[string]string{"KAPFHIR_HTTP_ADDR": "127.0.0.1:0", "KAPFHIR_DATA_DIR": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, ErrorLog: io.Discard})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	// One request, so the request histograms have series and a type.
	resp, err := http.Get(a.URL() + "/fhir/metadata")
	if err == nil {
		resp.Body.Close()
	}
	cancel()
	if serr := <-served; serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatal(err)
	}

	out := map[string]family{}
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	for d := range descs {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric description %s", d)
		}
		f := family{labels: map[string]bool{}}
		for _, l := range strings.Split(m[2], ",") {
			if name, _, ok := strings.Cut(l, "="); ok {
				f.labels[name] = true
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				f.labels[l] = true
			}
		}
		out[m[1]] = f
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		f, ok := out[mf.GetName()]
		if !ok {
			t.Fatalf("gathered %s, which no collector describes", mf.GetName())
		}
		f.typ, f.typed = mf.GetType(), true
		out[mf.GetName()] = f
	}
	return out
}
