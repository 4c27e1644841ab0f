package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kapfhir/kapfhir/internal/httpapi"
)

// all grants every interaction: these tests are about limits, not scopes.
var all = []string{"system/*.cruds"}

// outcomeCode is the first issue's code of an OperationOutcome.
func outcomeCode(t *testing.T, r *response) string {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	return m["issue"].([]any)[0].(map[string]any)["code"].(string)
}

func TestSecurityHeaders(t *testing.T) {
	for _, tls := range []bool{false, true} {
		e := newEnvWith(t, func(c *httpapi.Config) { c.TLS = tls })
		for _, path := range []string{"/fhir/metadata", "/fhir/Patient/none", "/fhir/Patient?name=x", "/nothing", "/healthz", "/kap/v1/clients"} {
			r := e.get(path)
			for h, want := range map[string]string{
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-store",
			} {
				if got := r.header.Get(h); got != want {
					t.Errorf("%s: %s %q, want %q", path, h, got, want)
				}
			}
			if got := r.header.Get("Strict-Transport-Security"); (got != "") != tls {
				t.Errorf("%s with TLS %v: Strict-Transport-Security %q", path, tls, got)
			}
		}
	}
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.org"
	e := newEnvWith(t, func(c *httpapi.Config) {
		c.CORSOrigins = []string{app}
		c.Auth = tokens{"good": {Issuer: "https://idp", ClientID: "app", Scopes: all}}
	})
	preflight := func(origin, path string) (*http.Response, string) {
		return raw(t, "OPTIONS", e.srv.URL+path, "", "Origin", origin,
			"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization, content-type, if-match")
	}
	// A preflight carries no credentials: it is answered before
	// authentication, for any path the app may call.
	for _, path := range []string{"/fhir/Patient/1", "/fhir", "/kap/v1/clients"} {
		res, _ := preflight(app, path)
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("preflight %s: %s", path, res.Status)
		}
		for h, want := range map[string]string{
			"Access-Control-Allow-Origin":  app,
			"Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
			"Access-Control-Max-Age":       "600",
			"Vary":                         "Origin",
		} {
			if got := res.Header.Get(h); got != want {
				t.Errorf("preflight %s: %s %q, want %q", path, h, got, want)
			}
		}
		for _, h := range []string{"Authorization", "Content-Type", "If-Match", "Prefer"} {
			if !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), h) {
				t.Errorf("preflight %s: Allow-Headers %q lacks %s", path, res.Header.Get("Access-Control-Allow-Headers"), h)
			}
		}
	}
	// Another origin gets no CORS header: its preflight is the router's 405.
	res, body := preflight("https://evil.example.com", "/fhir/Patient/1")
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(body, "OperationOutcome") {
		t.Errorf("preflight of another origin: %s, Allow-Origin %q: %s", res.Status, res.Header.Get("Access-Control-Allow-Origin"), body)
	}
	// Simple requests: the allowed origin may read the answer and its
	// headers, a 401 included (the app must see it to log in again).
	for _, tc := range []struct {
		origin, auth string
		status       int
		shared       bool
	}{
		{app, "Bearer good", http.StatusNotFound, true},
		{app, "", http.StatusUnauthorized, true},
		{"https://evil.example.com", "Bearer good", http.StatusNotFound, false},
		{"", "Bearer good", http.StatusNotFound, false},
	} {
		r := e.get("/fhir/Patient/none", "Origin", tc.origin, "Authorization", tc.auth)
		if r.status != tc.status {
			t.Errorf("%q %q: %d, want %d", tc.origin, tc.auth, r.status, tc.status)
		}
		got := r.header.Get("Access-Control-Allow-Origin")
		if (got != "") != tc.shared || (tc.shared && got != tc.origin) {
			t.Errorf("%q: Allow-Origin %q, shared %v", tc.origin, got, tc.shared)
		}
		expose := r.header.Get("Access-Control-Expose-Headers")
		for _, h := range []string{"ETag", "Location", "Content-Location", "Last-Modified", "X-Request-Id", "Retry-After"} {
			if tc.shared && !strings.Contains(expose, h) {
				t.Errorf("%q: Expose-Headers %q lacks %s", tc.origin, expose, h)
			}
		}
		if r.header.Get("Vary") != "Origin" {
			t.Errorf("%q: Vary %q", tc.origin, r.header.Get("Vary"))
		}
	}
}

// Each authenticated client has its bucket; an empty one answers 429 with
// Retry-After; the entries of a batch are one request.
func TestRateLimit(t *testing.T) {
	e := newEnvWith(t, func(c *httpapi.Config) {
		c.RateLimit, c.RateBurst = 0.001, 2 // no refill within the test
		c.Auth = tokens{
			"a":  {Issuer: "https://idp", ClientID: "app-a", Scopes: all},
			"a2": {Issuer: "https://idp", ClientID: "app-a", Subject: "another user", Scopes: all},
			"b":  {Issuer: "https://idp", ClientID: "app-b", Scopes: all},
		}
	})
	a, a2, b := []string{"Authorization", "Bearer a"}, []string{"Authorization", "Bearer a2"}, []string{"Authorization", "Bearer b"}
	for i := range 2 {
		if r := e.get("/fhir/Patient/none", a...); r.status != http.StatusNotFound {
			t.Fatalf("request %d of client a: %d", i, r.status)
		}
	}
	// The same client under another user shares the bucket.
	r := e.get("/fhir/Patient/none", a2...)
	if r.status != http.StatusTooManyRequests || outcomeCode(t, r) != "throttled" {
		t.Fatalf("third request: %d %s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	batch := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(`{"request":{"method":"GET","url":"Patient/none"}},`, 4) +
		`{"request":{"method":"GET","url":"Patient/none"}}]}`
	r = e.do("POST", "/fhir", batch, b...)
	if r.status != http.StatusOK || strings.Contains(string(r.body), "429") {
		t.Errorf("batch of client b: %d %s", r.status, r.body)
	}
	if r := e.get("/fhir/Patient/none", b...); r.status != http.StatusNotFound {
		t.Errorf("second request of client b: %d", r.status)
	}
	if r := e.get("/healthz"); r.status != http.StatusOK {
		t.Errorf("healthz: %d", r.status)
	}
	if n := counterValue(t, e, "kapfhir_http_throttled_total"); n != 1 {
		t.Errorf("kapfhir_http_throttled_total %v, want 1", n)
	}
}

// counterValue is the value of a counter without labels of the env.
func counterValue(t *testing.T, e *env, name string) float64 {
	t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Refused credentials count against the remote address: a flood of bad
// tokens is throttled like anonymous requests, while an authenticated
// client from the same address keeps its own bucket.
func TestRateLimitRefusedCredentials(t *testing.T) {
	e := newEnvWith(t, func(c *httpapi.Config) {
		c.RateLimit, c.RateBurst = 0.001, 2 // no refill within the test
		c.Auth = tokens{"a": {Issuer: "https://idp", ClientID: "app-a", Scopes: all}}
	})
	bad := []string{"Authorization", "Bearer forged"}
	for i, h := range [][]string{bad, nil} { // with a bad token, and with none
		r := e.get("/fhir/Patient/none", h...)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("refused request %d: %d %s", i, r.status, r.body)
		}
	}
	r := e.get("/fhir/Patient/none", bad...)
	if r.status != http.StatusTooManyRequests || outcomeCode(t, r) != "throttled" {
		t.Fatalf("third refused request: %d %s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if r := e.get("/fhir/Patient/none", "Authorization", "Bearer a"); r.status != http.StatusNotFound {
		t.Errorf("authenticated client from the same address: %d %s", r.status, r.body)
	}
	if n := counterValue(t, e, "kapfhir_http_throttled_total"); n != 1 {
		t.Errorf("kapfhir_http_throttled_total %v, want 1", n)
	}
}

// Unauthenticated clients are told apart by their address.
func TestRateLimitAnonymous(t *testing.T) {
	e := newEnvWith(t, func(c *httpapi.Config) { c.RateLimit, c.RateBurst = 0.001, 1 })
	if r := e.get("/fhir/Patient/none"); r.status != http.StatusNotFound {
		t.Fatalf("first: %d", r.status)
	}
	if r := e.get("/fhir/metadata"); r.status != http.StatusTooManyRequests {
		t.Errorf("second from the same address: %d", r.status)
	}
}

func TestRequestTimeout(t *testing.T) {
	e := newEnvWith(t, func(c *httpapi.Config) { c.RequestTimeout = time.Nanosecond })
	res, body := raw(t, "GET", e.srv.URL+"/fhir/Patient/none", "")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"transient"`) {
		t.Errorf("past the deadline: %s %s", res.Status, body)
	}
	// A bulk import has no deadline.
	r := e.do("POST", "/fhir/$import", `{"resourceType":"Patient","id":"p1"}`+"\n", "Content-Type", "application/fhir+ndjson")
	if r.status != http.StatusOK {
		t.Errorf("import: %d %s", r.status, r.body)
	}
}

// Oversized input of every kind is a 4xx OperationOutcome, before any
// work is done.
func TestOversizedInput(t *testing.T) {
	e := newEnvWith(t, func(c *httpapi.Config) {
		c.MaxBodyBytes, c.MaxBundleEntries, c.MaxQueryBytes, c.MaxSearchParams = 4096, 3, 512, 5
	})
	big := `{"resourceType":"Patient","name":[{"family":"` + strings.Repeat("x", 5000) + `"}]}`
	entry := `{"request":{"method":"GET","url":"Patient/none"}}`
	deep := `{"resourceType":"Patient","extension":[{"url":"http://e","valueString":"x","extension":` +
		strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}]}`
	form := url.Values{"name": {"a", "b", "c", "d", "e", "f"}}.Encode()
	for _, tc := range []struct {
		name, method, path, body, ctype string
		status                          int
		code, expr                      string
	}{
		{"create", "POST", "/fhir/Patient", big, "", 413, "too-costly", ""},
		{"update", "PUT", "/fhir/Patient/p", big, "", 413, "too-costly", ""},
		{"patch", "PATCH", "/fhir/Patient/p", `[{"op":"add","path":"/x","value":"` + strings.Repeat("x", 5000) + `"}]`, "application/json-patch+json", 413, "too-costly", ""},
		{"bundle", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(entry+",", 100) + entry + `]}`, "", 413, "too-costly", ""},
		{"import", "POST", "/fhir/$import", big + "\n", "application/fhir+ndjson", 413, "too-costly", ""},
		{"search form", "POST", "/fhir/Patient/_search", "name=" + strings.Repeat("x", 5000), "application/x-www-form-urlencoded", 413, "too-costly", ""},
		{"validate", "POST", "/fhir/Patient/$validate", big, "", 413, "too-costly", ""},
		{"KAP API", "POST", "/kap/v1/clients", `{"name":"` + strings.Repeat("x", 5000) + `"}`, "application/json", 413, "too-costly", ""},
		{"entries", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Repeat(entry+",", 3) + entry + `]}`, "", 413, "too-costly", "Bundle.entry"},
		{"depth", "POST", "/fhir/Patient", deep, "", 400, "structure", ""},
		{"query string", "GET", "/fhir/Patient?name=" + strings.Repeat("x", 600), "", "", 414, "too-costly", ""},
		{"parameters", "GET", "/fhir/Patient?" + form, "", "", 400, "too-costly", ""},
		{"parameters in a form", "POST", "/fhir/Patient/_search", form, "application/x-www-form-urlencoded", 400, "too-costly", ""},
		{"parameters in the form and URL", "POST", "/fhir/Patient/_search?name=x", "name=a&name=b&name=c&name=d&name=e", "application/x-www-form-urlencoded", 400, "too-costly", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctype := tc.ctype
			if ctype == "" && tc.body != "" {
				ctype = "application/fhir+json"
			}
			r := do(t, e.srv.URL, tc.method, tc.path, tc.body, "Content-Type", ctype)
			if r.status != tc.status {
				t.Fatalf("%d, want %d: %.300s", r.status, tc.status, r.body)
			}
			if code := outcomeCode(t, r); code != tc.code {
				t.Errorf("issue code %q, want %q", code, tc.code)
			}
			if tc.expr != "" && r.expression(t) != tc.expr {
				t.Errorf("expression %q, want %q", r.expression(t), tc.expr)
			}
		})
	}
	// Within the limits all is well.
	if r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Repeat(entry+",", 2)+entry+`]}`); r.status != http.StatusOK {
		t.Errorf("3 entries: %d %s", r.status, r.body)
	}
	if r := e.get("/fhir/Patient?name=a&name=b&name=c&name=d&name=e"); r.status != http.StatusOK {
		t.Errorf("5 parameters: %d %s", r.status, r.body)
	}
}

// Ids that try to leave their path segment are refused or not found,
// always as an OperationOutcome, and nothing is written under them. A
// path ending in a slash once decoded is redirected without it (gin's
// trailing-slash rule), which is not followed here: the client resolves
// such a Location itself.
func TestPathTricksInIDs(t *testing.T) {
	e := newEnv(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	patient := func(id string) string { return `{"resourceType":"Patient","id":"` + id + `"}` }
	for _, id := range []string{
		"..", "..%2F..%2Fmetadata", "%2e%2e", "%2e%2e%2f", "a%2Fb", "a%00b", "a%0Ab", strings.Repeat("a", 65),
		"%C3%A9", "%E2%80%AE", "a%20b", "a;b", "%252e%252e", "a%5Cb", "$where", "a$b", "~", "%7B%22%24gt%22%3A%22%22%7D",
	} {
		t.Run(id, func(t *testing.T) {
			for _, method := range []string{"GET", "DELETE", "PUT"} {
				body := ""
				if method == "PUT" {
					decoded, _ := url.PathUnescape(id)
					body = patient(strings.ReplaceAll(decoded, `"`, `\"`))
				}
				req, err := http.NewRequest(method, e.srv.URL+"/fhir/Patient/"+id, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/fhir+json")
				res, err := noRedirect.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
					outcomeCode(t, &response{status: res.StatusCode, header: res.Header, body: b})
				case http.StatusMovedPermanently, http.StatusTemporaryRedirect:
					if !strings.HasSuffix(req.URL.Path, "/") {
						t.Errorf("%s: redirected to %s", method, res.Header.Get("Location"))
					}
				default:
					t.Errorf("%s: %d %s", method, res.StatusCode, b)
				}
			}
		})
	}
	// A trailing dot and a dot inside are legal FHIR id characters: the
	// id is stored as it is, under its own key.
	for _, id := range []string{"abc.", "a.b", ".x"} {
		if r := e.do("PUT", "/fhir/Patient/"+id, patient(id)); r.status != http.StatusCreated {
			t.Errorf("PUT %s: %d %s", id, r.status, r.body)
		}
		if r := e.get("/fhir/Patient/" + id); r.status != http.StatusOK || r.json(t)["id"] != id {
			t.Errorf("GET %s: %d %s", id, r.status, r.body)
		}
	}
	if r := e.get("/fhir/Patient?_summary=count"); r.json(t)["total"] != json.Number("3") {
		t.Errorf("Patients stored: %s", r.body)
	}
}

// keyWatcher records every field name of every store command.
type keyWatcher struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (w *keyWatcher) started(ev *event.CommandStartedEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.walk(ev.Command)
}

func (w *keyWatcher) walk(doc bson.Raw) {
	elems, err := doc.Elements()
	if err != nil {
		return
	}
	for _, el := range elems {
		w.keys[el.Key()] = true
		switch v := el.Value(); v.Type {
		case bson.TypeEmbeddedDocument:
			w.walk(v.Document())
		case bson.TypeArray:
			w.walk(bson.Raw(v.Array()))
		}
	}
}

// Client text never becomes a field name or an operator of a store
// command: every input below carries the marker zz9, and no key of any
// command sent contains it. Each answer is a 4xx or a literal match.
func TestNoSQLInjection(t *testing.T) {
	w := &keyWatcher{keys: map[string]bool{}}
	e := newEnvWatching(t, nil, w.started)
	e.create("Patient", `{"resourceType":"Patient","name":[{"family":"Real"}]}`)
	q := url.QueryEscape
	for _, tc := range []struct {
		method, path, body string
		ok                 bool // 2xx: matched literally (no results)
	}{
		{"GET", "/fhir/Patient?name=" + q(`{"$gt":"zz9"}`), "", true},
		{"GET", "/fhir/Patient?family=" + q(`{"$ne":"zz9"}`), "", true},
		{"GET", "/fhir/Patient?name:exact=" + q(`zz9"}, {"$where":"1"`), "", true},
		{"GET", "/fhir/Patient?identifier=" + q(`zz9|{"$ne":null}`), "", true},
		{"GET", "/fhir/Patient?_id=" + q(`{"$ne":"zz9"}`), "", true},
		{"GET", "/fhir/Patient?_id=" + q("zz9.$where"), "", true},
		{"GET", "/fhir/Patient?general-practitioner=" + q("Practitioner/zz9$where"), "", false},
		{"GET", "/fhir/Patient?birthdate=" + q(`{"$gt":"zz9"}`), "", false},
		{"GET", "/fhir/Patient?" + q("$where") + "=zz9", "", false},
		{"GET", "/fhir/Patient?" + q("name[$ne]") + "=zz9", "", false},
		{"GET", "/fhir/Patient?" + q("zz9.name") + "=x", "", false},
		{"GET", "/fhir/Patient?" + q("$zz9") + "=x", "", false},
		{"GET", "/fhir/Patient?name:" + q("$zz9") + "=x", "", false},
		{"GET", "/fhir/Patient?_sort=" + q("$natural") + "&name=zz9", "", false},
		{"GET", "/fhir/Patient?_sort=" + q("zz9$natural"), "", false},
		{"GET", "/fhir/Patient?_sort=" + q("-zz9.name"), "", false},
		{"GET", "/fhir/Patient?_elements=" + q("zz9.$where"), "", false},
		{"GET", "/fhir/Patient?_include=" + q("Patient:zz9$where"), "", false},
		{"GET", "/fhir/Patient?_has:" + q("Observation:zz9$x:code") + "=1", "", false},
		{"GET", "/fhir/Patient?general-practitioner." + q("zz9$where") + "=1", "", false},
		{"GET", "/fhir?_type=" + q("Patient,$zz9"), "", false},
		{"GET", "/fhir/Patient/" + q("zz9$where"), "", false},
		{"GET", "/fhir/Patient/zz9.x/_history/" + q("$gt"), "", false},
		{"GET", "/fhir/Patient/zz9.x", "", false},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","$zz9":{"$gt":""}}`, false},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","name.zz9":[{"family":"x"}]}`, false},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"x","$where":"zz9"}]}`, false},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"{\"$gt\":\"zz9\"}"}]}`, true},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Basic","id":"zz9.$x","code":{"text":"x"},"$zz9":1}]}`, false},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","id":"zz9$where"}`, false},
		{"PUT", "/fhir/Patient/zz9.y", `{"resourceType":"Patient","id":"zz9.y","gender":"other"}`, true},
		{"PUT", "/fhir/Patient?name=" + q(`{"$gt":"zz9"}`), `{"resourceType":"Patient"}`, true},
		{"DELETE", "/fhir/Patient?family=" + q(`{"$ne":"zz9"}`), "", true},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/zz9$x"},"resource":{"resourceType":"Patient","id":"zz9$x"}}]}`, false},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?` + q("$where") + `=zz9"}},{"request":{"method":"GET","url":"Patient?name=` + q(`{"$gt":"zz9"}`) + `"}}]}`, true},
		{"GET", "/kap/v1/clients/" + q("zz9$where"), "", false},
		{"GET", "/kap/v1/clients?sort=" + q("zz9$natural"), "", false},
		{"GET", "/admin/sync/endpoints/" + q("zz9$where"), "", false},
	} {
		r := e.do(tc.method, tc.path, tc.body)
		if ok := r.status < 300; ok != tc.ok || r.status >= 500 {
			t.Errorf("%s %s %s: %d %.300s", tc.method, tc.path, tc.body, r.status, r.body)
		}
		if r.status == http.StatusOK && tc.method == "GET" && strings.Contains(string(r.body), `"Real"`) {
			t.Errorf("%s %s matched the stored Patient: %.300s", tc.method, tc.path, r.body)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.keys {
		if strings.Contains(k, "zz9") {
			t.Errorf("client text became a store field name or operator: %q", k)
		}
	}
	if len(w.keys) == 0 {
		t.Fatal("no store command was seen")
	}
}
