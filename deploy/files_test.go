package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/store"
)

// doc is one YAML document, read loosely: the checks below name the
// fields they need.
type doc = map[string]any

func yamlDocs(t *testing.T, path string) []doc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []doc
	for {
		var d doc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
}

// at walks a path of map keys and list indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(doc)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := at(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := at(v, path...).([]any)
	return l
}

// configVars are the environment variables the service reads.
func configVars() []string {
	var out []string
	ty := reflect.TypeFor[config.Config]()
	for i := range ty.NumField() {
		if v := ty.Field(i).Tag.Get("env"); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// secretName says whether an environment variable holds a secret.
var secretName = regexp.MustCompile(`(URI|SECRET|TOKEN|PASSWORD|KEY)$`)

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, users []string
	var healthcheck, build string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, line)
			users = nil // USER applies to its own stage
		case "USER":
			users = append(users, f[1])
		case "HEALTHCHECK":
			healthcheck = line
		case "RUN":
			if strings.Contains(line, "go build") {
				build = line
			}
		}
	}
	if len(from) < 2 {
		t.Errorf("not a multi-stage build: %q", from)
	}
	if len(users) == 0 {
		t.Error("the final stage sets no USER")
	}
	for _, u := range users {
		if name, _, _ := strings.Cut(u, ":"); name == "root" || name == "0" {
			t.Errorf("the final stage runs as %s", u)
		}
	}
	if !strings.Contains(string(b), `"healthcheck"]`) || healthcheck == "" {
		t.Error("no HEALTHCHECK running kapfhir healthcheck")
	}
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Errorf("the binary is not built static: %q", build)
	}
}

func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	services, _ := docs[0]["services"].(doc)
	for _, s := range []string{"mongo", "kapfhir", "prometheus", "grafana"} {
		if services[s] == nil {
			t.Errorf("no service %s", s)
		}
	}
	if cmd := list(services, "mongo", "command"); !slices.Contains(cmd, "--replSet") {
		t.Errorf("mongo is not a replica set member: %v", cmd)
	}
	env, _ := at(services, "kapfhir", "environment").(doc)
	if uri := str(env, "KAPFHIR_MONGODB_URI"); !strings.Contains(uri, "replicaSet=") {
		t.Errorf("KAPFHIR_MONGODB_URI %q does not name the replica set", uri)
	}
	known := configVars()
	for name, s := range services {
		senv, _ := at(s, "environment").(doc)
		for k, v := range senv {
			if strings.HasPrefix(k, "KAPFHIR_") && !slices.Contains(known, k) {
				t.Errorf("service %s: %s is not a setting of the service", name, k)
			}
			if secretName.MatchString(k) && k != "KAPFHIR_MONGODB_URI" {
				if vs, _ := v.(string); !strings.HasPrefix(vs, "${") {
					t.Errorf("service %s: %s has its value inline", name, k)
				}
			}
		}
		// Every file mounted from the repository exists.
		for _, vol := range list(s, "volumes") {
			src, _, _ := strings.Cut(vol.(string), ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}

	// Prometheus reads the rules at the path compose mounts them, and
	// scrapes the job the rules and the dashboard select.
	mounts := map[string]string{}
	for _, vol := range append(list(services, "prometheus", "volumes"), list(services, "grafana", "volumes")...) {
		parts := strings.Split(vol.(string), ":")
		mounts[parts[0]] = parts[1]
	}
	prom := yamlDocs(t, "prometheus/prometheus.yml")[0]
	if rules := list(prom, "rule_files"); !slices.Contains(rules, any(mounts["./prometheus/alerts.yml"])) {
		t.Errorf("prometheus.yml loads %v, compose mounts the rules at %q", rules, mounts["./prometheus/alerts.yml"])
	}
	if str(prom, "scrape_configs", 0, "job_name") != "kapfhir" || str(prom, "scrape_configs", 0, "static_configs", 0, "targets", 0) != "kapfhir:8080" {
		t.Errorf("prometheus.yml does not scrape job kapfhir at kapfhir:8080: %v", prom["scrape_configs"])
	}
	if !strings.HasSuffix(str(env, "KAPFHIR_HTTP_ADDR"), ":8080") {
		t.Errorf("kapfhir listens on %q, not 8080", str(env, "KAPFHIR_HTTP_ADDR"))
	}

	// Grafana: the provider's path is where the dashboards are mounted,
	// and the data source has the uid the dashboard variable finds.
	provider := yamlDocs(t, "grafana/provisioning/dashboards/kapfhir.yml")[0]
	if p := str(provider, "providers", 0, "options", "path"); p != mounts["./grafana/dashboards"] {
		t.Errorf("dashboard provider reads %q, compose mounts the dashboards at %q", p, mounts["./grafana/dashboards"])
	}
	ds := yamlDocs(t, "grafana/provisioning/datasources/prometheus.yml")[0]
	if str(ds, "datasources", 0, "type") != "prometheus" || str(ds, "datasources", 0, "url") != "http://prometheus:9090" {
		t.Errorf("data source: %v", ds["datasources"])
	}
}

// k8sObjects reads every manifest of k8s/ by kind/name.
func k8sObjects(t *testing.T) map[string]doc {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]doc{}
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			kind, name := str(d, "kind"), str(d, "metadata", "name")
			if kind == "Kustomization" {
				for _, r := range list(d, "resources") {
					if _, err := os.Stat(filepath.Join("k8s", r.(string))); err != nil {
						t.Errorf("kustomization: %v", err)
					}
				}
				continue
			}
			if kind == "" || name == "" || str(d, "apiVersion") == "" {
				t.Errorf("%s: a document without apiVersion, kind or name", f)
			}
			out[kind+"/"+name] = d
		}
	}
	return out
}

func TestKubernetes(t *testing.T) {
	objs := k8sObjects(t)
	for _, want := range []string{"Deployment/kapfhir", "Service/kapfhir", "ConfigMap/kapfhir-config",
		"HorizontalPodAutoscaler/kapfhir", "PodDisruptionBudget/kapfhir", "ServiceMonitor/kapfhir"} {
		if objs[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	for k := range objs {
		if strings.HasPrefix(k, "Secret/") {
			t.Errorf("%s: secrets are referenced, never written in the manifests", k)
		}
	}
	dep := objs["Deployment/kapfhir"]
	pod := at(dep, "spec", "template")
	podLabels, _ := at(pod, "metadata", "labels").(doc)
	c := at(pod, "spec", "containers", 0)

	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if str(c, probe, "httpGet", "port") != str(c, "ports", 0, "name") {
			t.Errorf("%s does not probe the container's port", probe)
		}
	}
	if at(pod, "spec", "securityContext", "runAsNonRoot") != true || at(c, "securityContext", "runAsNonRoot") != true {
		t.Error("not runAsNonRoot")
	}
	if at(c, "securityContext", "readOnlyRootFilesystem") != true || at(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("the root filesystem is writable or privileges may escalate")
	}
	for _, r := range []string{"requests", "limits"} {
		if str(c, "resources", r, "memory") == "" || str(c, "resources", r, "cpu") == "" {
			t.Errorf("no cpu and memory %s", r)
		}
	}

	// Secrets come by reference; the ConfigMap holds only known,
	// non-secret settings.
	known := configVars()
	for _, e := range list(c, "env") {
		name := str(e, "name")
		if secretName.MatchString(name) && (at(e, "value") != nil || at(e, "valueFrom", "secretKeyRef") == nil) {
			t.Errorf("env %s is not a Secret reference", name)
		}
	}
	cm, _ := at(objs["ConfigMap/kapfhir-config"], "data").(doc)
	for k := range cm {
		if !slices.Contains(known, k) {
			t.Errorf("ConfigMap: %s is not a setting of the service", k)
		}
		if secretName.MatchString(k) {
			t.Errorf("ConfigMap: %s is a secret", k)
		}
	}
	if str(cm, "KAPFHIR_HTTP_ADDR") != "0.0.0.0:8080" {
		t.Errorf("KAPFHIR_HTTP_ADDR %q: not reachable by the probes on the container port", str(cm, "KAPFHIR_HTTP_ADDR"))
	}
	if str(c, "envFrom", 0, "configMapRef", "name") != "kapfhir-config" {
		t.Error("the Deployment does not read the ConfigMap")
	}

	selects := func(sel any) bool {
		m, _ := sel.(doc)
		for k, v := range m {
			if podLabels[k] != v {
				return false
			}
		}
		return len(m) > 0
	}
	if !selects(at(dep, "spec", "selector", "matchLabels")) {
		t.Error("the Deployment's selector does not match its pods")
	}
	svc := objs["Service/kapfhir"]
	if !selects(at(svc, "spec", "selector")) || str(svc, "spec", "ports", 0, "targetPort") != str(c, "ports", 0, "name") {
		t.Error("the Service does not reach the pods' port")
	}
	if !selects(at(objs["PodDisruptionBudget/kapfhir"], "spec", "selector", "matchLabels")) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if ref := at(objs["HorizontalPodAutoscaler/kapfhir"], "spec", "scaleTargetRef"); str(ref, "kind") != "Deployment" || str(ref, "name") != "kapfhir" {
		t.Errorf("the HPA scales %v", ref)
	}
	sm := objs["ServiceMonitor/kapfhir"]
	svcLabels, _ := at(svc, "metadata", "labels").(doc)
	for k, v := range at(sm, "spec", "selector", "matchLabels").(doc) {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor does not select the Service (%s)", k)
		}
	}
	if str(sm, "spec", "endpoints", 0, "port") != str(svc, "spec", "ports", 0, "name") || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
		t.Error("the ServiceMonitor does not scrape /metrics on the Service's port")
	}
	// The ServiceMonitor's job label is the Service's name: the one the
	// alert rules and the dashboard select.
	if str(svc, "metadata", "name") != "kapfhir" {
		t.Error("the Service is not named kapfhir (the job the alerts select)")
	}
}

// TestOperationsDoc checks docs/operations.md lists every setting and
// every index the store creates.
func TestOperationsDoc(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range configVars() {
		if !bytes.Contains(b, []byte("`"+v+"`")) {
			t.Errorf("docs/operations.md does not list %s", v)
		}
	}
	for coll, ixs := range store.Indexes() {
		for _, ix := range ixs {
			if !bytes.Contains(b, []byte("`"+coll+"."+ix.Name+"`")) {
				t.Errorf("docs/operations.md does not list the index %s.%s", coll, ix.Name)
			}
		}
	}
}
