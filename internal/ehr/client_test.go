package ehr

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/ehr/smart"
	"github.com/kapfhir/kapfhir/internal/ehr/smart/smarttest"
)

// ehrDouble is a FHIR endpoint that accepts a request when valid says its
// bearer token is good, and records what it saw.
type ehrDouble struct {
	*httptest.Server
	valid func(token string) bool

	mu   sync.Mutex
	seen []string // "METHOD path auth body"
}

func newEHR(t *testing.T, valid func(string) bool) *ehrDouble {
	d := &ehrDouble{valid: valid}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		d.mu.Lock()
		d.seen = append(d.seen, strings.TrimSpace(strings.Join([]string{r.Method, r.URL.Path, auth, string(body)}, " ")))
		d.mu.Unlock()
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if d.valid != nil && (!ok || !d.valid(token)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/fhir/metadata", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/fhir+json")
			_, _ = w.Write([]byte(`{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[{"type":"Observation","interaction":[{"code":"create"}]}]}]}`))
		}
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *ehrDouble) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

func do(t *testing.T, c *http.Client, method, url, body string) int {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// smartEndpoint is an endpoint whose tokens come from a verifying token
// server sharing clk.
func smartEndpoint(t *testing.T, alg smart.Algorithm, now func() time.Time) (Endpoint, *smarttest.Server) {
	ts := smarttest.New(t, "kapfhir-clinic")
	ts.Now = now
	pemData, pub := smarttest.NewKey(t, string(alg))
	ts.Register("k1", pub)
	key, err := smart.ParseKey(pemData, alg, "k1")
	if err != nil {
		t.Fatal(err)
	}
	return Endpoint{Name: "st-mary", Auth: Auth{Type: AuthSMARTBackend, TokenURL: ts.URL, ClientID: "kapfhir-clinic", Key: key,
		Scopes: []string{"system/Observation.c"}}}, ts
}

// TestSMARTClient: discovery and writes through a client that gets its
// tokens from a SMART token endpoint; a revoked token is replaced once,
// and a POST body is sent again with the new token.
func TestSMARTClient(t *testing.T) {
	for _, alg := range []smart.Algorithm{smart.RS384, smart.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			clk := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			now := func() time.Time { return clk }
			e, ts := smartEndpoint(t, alg, now)
			ehr := newEHR(t, ts.Valid)
			e.BaseURL = ehr.URL + "/fhir"
			c, err := NewClient(e, ClientOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			p, err := Discover(t.Context(), c, e.BaseURL)
			if err != nil {
				t.Fatal(err)
			}
			if !p["Observation"].Create {
				t.Errorf("profile %+v", p)
			}
			ts.Revoke("token-1")
			if got := do(t, c, "POST", e.BaseURL+"/Observation", `{"resourceType":"Observation"}`); got != 200 {
				t.Errorf("POST after revocation: %d", got)
			}
			clk = clk.Add(5 * time.Minute) // token-2 expired: renewed before sending
			if got := do(t, c, "GET", e.BaseURL+"/Observation/1", ""); got != 200 {
				t.Errorf("GET after expiry: %d", got)
			}
			want := []string{
				"GET /fhir/metadata Bearer token-1",
				`POST /fhir/Observation Bearer token-1 {"resourceType":"Observation"}`,
				`POST /fhir/Observation Bearer token-2 {"resourceType":"Observation"}`,
				"GET /fhir/Observation/1 Bearer token-3",
			}
			if diff := cmp.Diff(want, ehr.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if ts.Hits() != 3 || len(ts.Refusals()) != 0 {
				t.Errorf("%d token requests, refusals %v", ts.Hits(), ts.Refusals())
			}
		})
	}
}

// TestUnauthorizedRetriedOnce: an EHR that refuses every token gets the
// request twice, not more, and the caller sees the 401.
func TestUnauthorizedRetriedOnce(t *testing.T) {
	e, ts := smartEndpoint(t, smart.ES384, time.Now)
	ehr := newEHR(t, func(string) bool { return false })
	e.BaseURL = ehr.URL
	c, err := NewClient(e, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := do(t, c, "PUT", ehr.URL+"/Observation/1", "{}"); got != 401 {
		t.Errorf("status %d", got)
	}
	if diff := cmp.Diff([]string{"PUT /Observation/1 Bearer token-1 {}", "PUT /Observation/1 Bearer token-2 {}"}, ehr.requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if ts.Hits() != 2 {
		t.Errorf("%d token requests", ts.Hits())
	}
}

func TestStaticAuth(t *testing.T) {
	for _, tc := range []struct {
		auth  Auth
		valid func(string) bool
		want  []string
		code  int
	}{
		{Auth{Type: AuthNone}, nil, []string{"GET /Patient/1"}, 200},
		{Auth{Type: AuthBearer, Token: secretOf("abc")}, func(s string) bool { return s == "abc" }, []string{"GET /Patient/1 Bearer abc"}, 200},
		// A static token is not asked for again: one request.
		{Auth{Type: AuthBearer, Token: secretOf("old")}, func(s string) bool { return s == "abc" }, []string{"GET /Patient/1 Bearer old"}, 401},
	} {
		ehr := newEHR(t, tc.valid)
		c, err := NewClient(Endpoint{Name: "x", BaseURL: ehr.URL, Auth: tc.auth}, ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := do(t, c, "GET", ehr.URL+"/Patient/1", ""); got != tc.code {
			t.Errorf("%s: status %d, want %d", tc.auth.Type, got, tc.code)
		}
		if diff := cmp.Diff(tc.want, ehr.requests()); diff != "" {
			t.Errorf("%s: requests (-want +got):\n%s", tc.auth.Type, diff)
		}
	}
}

// TestTokenStaysAtTheEHR: no token on requests to another origin, and
// redirects are not followed.
func TestTokenStaysAtTheEHR(t *testing.T) {
	ehr := newEHR(t, nil)
	other := newEHR(t, nil)
	c, err := NewClient(Endpoint{Name: "x", BaseURL: ehr.URL + "/fhir", Auth: Auth{Type: AuthBearer, Token: secretOf("abc")}}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := do(t, c, "GET", other.URL+"/fhir/metadata", ""); got != 200 {
		t.Errorf("other origin: %d", got)
	}
	if got := do(t, c, "GET", ehr.URL+"/moved", ""); got != http.StatusFound {
		t.Errorf("redirect: %d, want 302 returned", got)
	}
	if diff := cmp.Diff([]string{"GET /fhir/metadata"}, other.requests()); diff != "" {
		t.Errorf("other origin saw (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"GET /moved Bearer abc"}, ehr.requests()); diff != "" {
		t.Errorf("EHR saw (-want +got):\n%s", diff)
	}
}

// TestTokenFailure: when no token can be had the request is not sent and
// the error says why.
func TestTokenFailure(t *testing.T) {
	e, ts := smartEndpoint(t, smart.RS384, time.Now)
	ts.Register("k1", nil) // the EHR lost our key
	ehr := newEHR(t, ts.Valid)
	e.BaseURL = ehr.URL
	c, err := NewClient(e, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ehr.URL + "/metadata")
	if err == nil || !strings.Contains(err.Error(), "authorization: token request to "+ts.URL+": 400 Bad Request: invalid_client") {
		t.Errorf("error %v", err)
	}
	if len(ehr.requests()) != 0 {
		t.Errorf("EHR saw %v", ehr.requests())
	}
}
