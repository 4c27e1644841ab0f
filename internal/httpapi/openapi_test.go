package httpapi

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir"
	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/metrics"
)

// loadOpenAPI parses and validates the embedded openapi.yaml.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(kapfhir.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml does not load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi.yaml declares OpenAPI %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	return doc
}

// specRoutes returns "METHOD /path" for every operation in doc.
func specRoutes(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return ops
}

// openAPIPath turns a gin route (/fhir/:type/:id, /files/*path) into an
// OpenAPI path template (/fhir/{type}/{id}).
func openAPIPath(ginPath string) string {
	parts := strings.Split(ginPath, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

func newTestEngine(t *testing.T) *gin.Engine {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := New(Config{
		Metrics:      metrics.New(reg),
		Gatherer:     reg,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:        func(context.Context) error { return nil },
		MaxBodyBytes: 1 << 20,
		Version:      "test",
	})
	engine, ok := h.(*gin.Engine)
	if !ok {
		t.Fatalf("New returned %T, want *gin.Engine", h)
	}
	return engine
}

// TestOpenAPIMatchesRouter keeps openapi.yaml and the router in step: every
// registered route is documented, and every documented operation is served.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := specRoutes(doc)

	served := map[string]bool{}
	for _, r := range newTestEngine(t).Routes() {
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	if len(served) == 0 {
		t.Fatal("the router has no routes")
	}

	var undocumented, unserved []string
	for k := range served {
		if _, ok := documented[k]; !ok {
			undocumented = append(undocumented, k)
		}
	}
	for k := range documented {
		if !served[k] {
			unserved = append(unserved, k)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unserved)
	for _, k := range undocumented {
		t.Errorf("route %s is served but missing from openapi.yaml", k)
	}
	for _, k := range unserved {
		t.Errorf("operation %s is in openapi.yaml but the router does not serve it", k)
	}
}

// TestOpenAPIRoutesTable checks the spec against the routes table too, so a
// route added there without a handler registration still shows up.
func TestOpenAPIRoutesTable(t *testing.T) {
	documented := specRoutes(loadOpenAPI(t))
	for _, rt := range routes {
		if _, ok := documented[rt.method+" "+openAPIPath(rt.path)]; !ok {
			t.Errorf("routes table entry %s %s (%s) is missing from openapi.yaml", rt.method, rt.path, rt.interaction)
		}
	}
}

// TestOpenAPIConventions checks what the spec promises for every FHIR
// operation: the format parameters, the history paging parameters, the
// conditional headers, JSON bodies and OperationOutcome errors.
func TestOpenAPIConventions(t *testing.T) {
	doc := loadOpenAPI(t)

	if len(doc.Servers) == 0 {
		t.Error("openapi.yaml has no servers")
	} else {
		def, err := config.Load(map[string]string{})
		if err != nil {
			t.Fatalf("default config: %v", err)
		}
		if want := "http://" + def.HTTPAddr; doc.Servers[0].URL != want {
			t.Errorf("servers[0].url = %q, want the default listen address %q", doc.Servers[0].URL, want)
		}
	}

	params := func(path string, op *openapi3.Operation) map[string]string {
		in := map[string]string{}
		for _, ps := range []openapi3.Parameters{doc.Paths.Value(path).Parameters, op.Parameters} {
			for _, p := range ps {
				if p.Value != nil {
					in[p.Value.Name] = p.Value.In
				}
			}
		}
		return in
	}
	want := func(t *testing.T, key string, in map[string]string, name, where string) {
		t.Helper()
		if in[name] != where {
			t.Errorf("%s: no %s parameter %q", key, where, name)
		}
	}

	for key, op := range specRoutes(doc) {
		method, path, _ := strings.Cut(key, " ")
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", key)
		}
		if !strings.HasPrefix(path, "/fhir/") {
			continue
		}
		in := params(path, op)
		want(t, key, in, "_format", "query")
		want(t, key, in, "_pretty", "query")
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") {
				want(t, key, in, strings.Trim(seg, "{}"), "path")
			}
		}
		if strings.HasSuffix(path, "/_history") {
			for _, q := range []string{"_count", "_since", "_page"} {
				want(t, key, in, q, "query")
			}
		}
		if op.Responses.Value("406") == nil {
			t.Errorf("%s: no 406 response", key)
		}

		switch key {
		case "POST /fhir/{type}":
			want(t, key, in, "If-None-Exist", "header")
		case "PUT /fhir/{type}", "DELETE /fhir/{type}", "PATCH /fhir/{type}":
			want(t, key, in, "identifier", "query")
		case "GET /fhir/{type}/{id}":
			want(t, key, in, "If-None-Match", "header")
			want(t, key, in, "If-Modified-Since", "header")
			if op.Responses.Value("304") == nil {
				t.Errorf("%s: no 304 response", key)
			}
		case "PUT /fhir/{type}/{id}", "DELETE /fhir/{type}/{id}", "PATCH /fhir/{type}/{id}":
			want(t, key, in, "If-Match", "header")
		}

		if method == "POST" || method == "PUT" || method == "PATCH" {
			media := []string{"application/fhir+json"}
			switch {
			case strings.HasSuffix(path, "/_search"):
				media = []string{"application/x-www-form-urlencoded"}
			case path == "/fhir/$import":
				media = []string{"application/fhir+ndjson"}
			}
			if method == "PATCH" {
				media = append(media, "application/json-patch+json")
			}
			for _, m := range media {
				if op.RequestBody == nil || op.RequestBody.Value == nil || op.RequestBody.Value.Content.Get(m) == nil {
					t.Errorf("%s: no %s request body", key, m)
				}
			}
			for _, code := range []string{"413", "415"} {
				if op.Responses.Value(code) == nil {
					t.Errorf("%s: no %s response", key, code)
				}
			}
		}

		for code, resp := range op.Responses.Map() {
			if code == "304" || code == "204" || resp.Value == nil {
				continue
			}
			mt := resp.Value.Content.Get("application/fhir+json")
			if mt == nil && code == "200" {
				// A bulk export's manifest and files are not FHIR resources.
				if mt = resp.Value.Content.Get("application/json"); mt == nil {
					mt = resp.Value.Content.Get(ndjson)
				}
			}
			if mt == nil || mt.Schema == nil {
				t.Errorf("%s: response %s has no application/fhir+json schema", key, code)
				continue
			}
			if code >= "400" && mt.Schema.Ref != "#/components/schemas/OperationOutcome" {
				t.Errorf("%s: error response %s is %q, want an OperationOutcome", key, code, mt.Schema.Ref)
			}
		}
	}

	for _, name := range []string{"Resource", "Bundle", "OperationOutcome", "CapabilityStatement"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("components.schemas has no %s", name)
		}
	}
}

// TestOpenAPIPath covers the gin-to-OpenAPI path conversion.
func TestOpenAPIPath(t *testing.T) {
	for in, want := range map[string]string{
		"/healthz":                      "/healthz",
		"/fhir/:type":                   "/fhir/{type}",
		"/fhir/:type/:id/_history/:vid": "/fhir/{type}/{id}/_history/{vid}",
		"/static/*filepath":             "/static/{filepath}",
	} {
		if got := openAPIPath(in); got != want {
			t.Errorf("openAPIPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenAPIAuthResponses checks that every operation of the routes table
// lists the refusals the route group can answer with, as the shared
// components: 429 on all of them (the rate limit), 401 and 403 on those
// that need a token, and neither of these on the public ones.
func TestOpenAPIAuthResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := specRoutes(doc)
	for _, rt := range routes {
		key := rt.method + " " + openAPIPath(rt.path)
		op, ok := documented[key]
		if !ok {
			continue // TestOpenAPIRoutesTable reports it
		}
		rule, err := parseScopeRule(rt.scope)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		want := map[string]string{"429": "TooManyRequests"}
		if !rule.public {
			want["401"], want["403"] = "Unauthorized", "Forbidden"
		}
		for _, code := range []string{"401", "403", "429"} {
			got := op.Responses.Value(code)
			switch {
			case want[code] == "" && got != nil:
				t.Errorf("%s (public) lists %s", key, code)
			case want[code] != "" && got == nil:
				t.Errorf("%s does not list %s", key, code)
			case got != nil && got.Ref != "#/components/responses/"+want[code]:
				t.Errorf("%s: %s is %q, want the %s component", key, code, got.Ref, want[code])
			}
		}
	}
	if h := doc.Components.Responses["TooManyRequests"].Value.Headers["Retry-After"]; h == nil {
		t.Error("the TooManyRequests response has no Retry-After header")
	}
}
