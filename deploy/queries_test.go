package deploy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// scrapeLabels are the labels Prometheus adds to every scraped series.
var scrapeLabels = map[string]bool{"job": true, "instance": true}

// prometheusSeries are the series Prometheus itself writes for a scrape
// target; the only names a query may use that the service does not
// export.
var prometheusSeries = map[string]bool{"up": true}

var promql = parser.NewParser(parser.Options{})

// selector is one series selector of a query.
type selector struct {
	name     string
	matchers []*labels.Matcher
}

// selectors parses a PromQL expression and returns its series selectors.
func selectors(expr string) ([]selector, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []selector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, selector{name: vs.Name, matchers: vs.LabelMatchers})
		}
		return nil
	})
	return out, nil
}

// index maps every series name a query may select to its family.
func index(fams map[string]family) map[string]string {
	out := map[string]string{}
	for name, f := range fams {
		for _, s := range f.series(name) {
			out[s] = name
		}
	}
	return out
}

// checkQuery reports the series and labels expr uses that the service
// does not export, and returns the families it selects.
func checkQuery(expr string, fams map[string]family) ([]string, error) {
	sels, err := selectors(expr)
	if err != nil {
		return nil, fmt.Errorf("%q does not parse: %w", expr, err)
	}
	series := index(fams)
	var used []string
	for _, s := range sels {
		if s.name == "" {
			return nil, fmt.Errorf("%q: a selector without a metric name", expr)
		}
		if prometheusSeries[s.name] {
			continue
		}
		fam, ok := series[s.name]
		if !ok {
			return nil, fmt.Errorf("%q: %s is not a series the service exports", expr, s.name)
		}
		used = append(used, fam)
		f := fams[fam]
		for _, m := range s.matchers {
			ok := m.Name == labels.MetricName || scrapeLabels[m.Name] || f.labels[m.Name] ||
				(m.Name == "le" && strings.HasSuffix(s.name, "_bucket")) ||
				(m.Name == "quantile" && f.typed && f.typ.String() == "SUMMARY")
			if !ok {
				return nil, fmt.Errorf("%q: %s has no label %q", expr, s.name, m.Name)
			}
		}
	}
	return used, nil
}

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile("prometheus/alerts.yml", false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// anchors are the GitHub anchors of the headings of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

// TestAlertRules parses the alert rules with Prometheus' rule parser
// (which also parses every expression and annotation template) and
// checks each one's annotations and runbook link.
func TestAlertRules(t *testing.T) {
	groups := loadRules(t)
	docs := anchors(t, "../docs/operations.md")
	names := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%q)", g.Name, r.Record)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			want := "docs/operations.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !docs[strings.ToLower(r.Alert)] {
				t.Errorf("alert %s: docs/operations.md has no heading %s", r.Alert, r.Alert)
			}
		}
	}
	// The list: each concern has at least one alert on it.
	for _, m := range []string{"kapfhir_http_requests_total", "kapfhir_http_request_duration_seconds_bucket",
		"kapfhir_store_command_errors_total", "kapfhir_sync_lag_seconds", "kapfhir_sync_dead_lettered_total",
		"kapfhir_kap_rule_overrides_total"} {
		found := false
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				sels, _ := selectors(r.Expr)
				found = found || slices.ContainsFunc(sels, func(s selector) bool { return s.name == m })
			}
		}
		if !found {
			t.Errorf("no alert on %s", m)
		}
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/dashboards/kapfhir.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return d
}

// grafanaVars are Grafana's variables in a query; the values put in
// their place only need to keep the PromQL valid.
var grafanaVars = regexp.MustCompile(`\$(__rate_interval|__interval|__range|[a-z_]+)`)

func expand(q string) string {
	return grafanaVars.ReplaceAllStringFunc(q, func(v string) string {
		if strings.HasPrefix(v, "$__") {
			return "5m"
		}
		return "x"
	})
}

// labelValues reads Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+), *([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardQueries lists each panel query and variable query (as a
// PromQL selector) of the dashboard, keyed by where it is.
func dashboardQueries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for i, tg := range p.Targets {
				out[fmt.Sprintf("panel %d %q target %d", p.ID, p.Title, i)] = expand(tg.Expr)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %d %q has no query", p.ID, p.Title)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, q.Query)
		}
		out["variable "+v.Name] = expand(fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
	}
	return out
}

// TestQueriesUseExportedMetrics checks, against the metric families the
// real service registers, that every alert and dashboard query uses only
// series and labels it exports, and that the dashboard shows every family.
func TestQueriesUseExportedMetrics(t *testing.T) {
	fams := exportedFamilies(t)
	if len(fams) == 0 {
		t.Fatal("the service exports no metrics")
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if _, err := checkQuery(r.Expr, fams); err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
		}
	}
	shown := map[string]bool{}
	for where, q := range dashboardQueries(t, loadDashboard(t)) {
		used, err := checkQuery(q, fams)
		if err != nil {
			t.Errorf("dashboard %s: %v", where, err)
		}
		for _, f := range used {
			shown[f] = true
		}
	}
	for name := range fams {
		if !shown[name] {
			t.Errorf("the dashboard has no panel on %s", name)
		}
	}
}

// TestQueryCheckRejects makes sure the checks above can fail: a wrong
// name, a histogram's base name, a label the family lacks.
func TestQueryCheckRejects(t *testing.T) {
	fams := exportedFamilies(t)
	for _, q := range []string{
		`rate(kapfhir_http_requests_totl[5m])`,
		`rate(kapfhir_http_request_duration_seconds[5m])`,
		`kapfhir_http_requests_total{status="500"}`,
		`{__name__=~"kapfhir_.+"}`,
		`sum(rate(kapfhir_http_requests_total[5m])`,
	} {
		if _, err := checkQuery(q, fams); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	if used, err := checkQuery(`histogram_quantile(0.9, rate(kapfhir_http_request_duration_seconds_bucket{le="1", interaction="read"}[5m]))`, fams); err != nil || !slices.Equal(used, []string{"kapfhir_http_request_duration_seconds"}) {
		t.Errorf("a histogram bucket query: %v %v", used, err)
	}
}
