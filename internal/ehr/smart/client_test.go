package smart

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/ehr/smart/smarttest"
)

// clock is a settable clock shared by the client and the token server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const clientID = "kapfhir-clinic"

// setup is a token server that knows one key for alg and a client for it.
func setup(t *testing.T, alg Algorithm, clk *clock) (*smarttest.Server, *Client, Key) {
	t.Helper()
	srv := smarttest.New(t, clientID)
	srv.Now = clk.Now
	pemData, pub := smarttest.NewKey(t, string(alg))
	srv.Register("k1", pub)
	key, err := ParseKey(pemData, alg, "k1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{TokenURL: srv.URL, ClientID: clientID, Key: key, Now: clk.Now,
		Scopes: []string{"system/Observation.c", "system/DocumentReference.cu"}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, key
}

func TestTokenExchange(t *testing.T) {
	for _, alg := range []Algorithm{RS384, ES384} {
		t.Run(string(alg), func(t *testing.T) {
			srv, c, _ := setup(t, alg, newClock())
			tok, err := c.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok != "token-1" || !srv.Valid(tok) {
				t.Errorf("token %q, valid %v", tok, srv.Valid(tok))
			}
			if diff := cmp.Diff([]string{"system/Observation.c system/DocumentReference.cu"}, srv.Scopes()); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
			if r := srv.Refusals(); len(r) != 0 {
				t.Errorf("refusals %v", r)
			}
		})
	}
}

// TestAssertionChecked: the endpoint refuses assertions that are wrong in
// each way SMART names, and the client's error says why without the
// assertion itself.
func TestAssertionChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change breaks one thing about the exchange
		change func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock)
		want   string
	}{
		{"key not the registered one", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			pemData, _ := smarttest.NewKey(t, string(cfg.Key.Algorithm()))
			cfg.Key = mustKey(t, pemData, cfg.Key.Algorithm(), "k1")
		}, "bad signature"},
		{"unknown kid", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			cfg.Key.m.kid = "k2"
		}, `unknown kid "k2"`},
		{"other client id", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			cfg.ClientID = "someone-else"
		}, "is not the client id"},
		{"aud another endpoint", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			srv.URL += "/other"
		}, "is not the token URL"},
		{"client clock behind: expired", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			srv.Now = func() time.Time { return clk.Now().Add(10 * time.Minute) }
		}, "assertion expired"},
		{"client clock ahead: exp too far", func(t *testing.T, srv *smarttest.Server, cfg *Config, clk *clock) {
			srv.Now = func() time.Time { return clk.Now().Add(-2 * time.Minute) }
		}, "exp more than 5 minutes ahead"},
	} {
		for _, alg := range []Algorithm{RS384, ES384} {
			t.Run(tc.name+"/"+string(alg), func(t *testing.T) {
				clk := newClock()
				srv, c, _ := setup(t, alg, clk)
				cfg := c.cfg
				tc.change(t, srv, &cfg, clk)
				c, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Token(t.Context())
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "400 Bad Request: invalid_client") {
					t.Fatalf("error %v, want 400 invalid_client with %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "eyJ") {
					t.Errorf("error repeats the assertion: %v", err)
				}
			})
		}
	}
}

// TestReplayRefused: the endpoint refuses a jti it has seen, and the
// client never sends one twice.
func TestReplayRefused(t *testing.T) {
	clk := newClock()
	srv, c, key := setup(t, ES384, clk)
	a, err := NewAssertion(clientID, srv.URL, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	jws, err := a.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	post := func() int {
		form := url.Values{"grant_type": {grantType}, "client_assertion_type": {assertionType}, "client_assertion": {jws}}
		resp, err := http.PostForm(srv.URL, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := []int{post(), post()}; !cmp.Equal(got, []int{200, 400}) {
		t.Errorf("statuses %v, want [200 400]", got)
	}
	for range 3 {
		c.Invalidate(mustToken(t, c))
	}
	if diff := cmp.Diff([]string{"jti reused"}, srv.Refusals()); diff != "" {
		t.Errorf("refusals (-want +got):\n%s", diff)
	}
}

func TestWrongGrant(t *testing.T) {
	srv, _, _ := setup(t, RS384, newClock())
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"grant_type": {"password"}}, `grant_type "password"`},
		{url.Values{"grant_type": {grantType}, "client_assertion_type": {"x"}}, `client_assertion_type "x"`},
		{url.Values{"grant_type": {grantType}, "client_assertion_type": {assertionType}, "client_assertion": {"a.b"}}, "not a compact JWS"},
	} {
		resp, err := http.PostForm(srv.URL, tc.form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%v: status %d", tc.form, resp.StatusCode)
		}
	}
	refusals := srv.Refusals()
	if len(refusals) != 3 || !strings.Contains(refusals[0], "password") || !strings.Contains(refusals[2], "compact JWS") {
		t.Errorf("refusals %q", refusals)
	}
}

func mustKey(t *testing.T, pemData []byte, alg Algorithm, kid string) Key {
	t.Helper()
	k, err := ParseKey(pemData, alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustToken(t *testing.T, c *Client) string {
	t.Helper()
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestCache: the token is reused until RefreshMargin before expires_in,
// then a new one is fetched; the clock is injected, nothing sleeps.
func TestCache(t *testing.T) {
	clk := newClock()
	srv, c, _ := setup(t, RS384, clk)
	type step struct {
		advance time.Duration
		token   string
		hits    int
	}
	for i, s := range []step{
		{0, "token-1", 1},
		{0, "token-1", 1},
		{269 * time.Second, "token-1", 1}, // 300 s - 30 s margin not reached
		{time.Second, "token-2", 2},       // 270 s: replaced
		{time.Minute, "token-2", 2},
	} {
		clk.Advance(s.advance)
		if got := (step{s.advance, mustToken(t, c), srv.Hits()}); got != s {
			t.Errorf("step %d: got %+v, want %+v", i, got, s)
		}
	}
}

func TestShortLifetimesAndNoExpiry(t *testing.T) {
	for _, tc := range []struct {
		expiresIn int64
		// tokens after 0, 29 and 30 seconds
		want []string
	}{
		{60, []string{"token-1", "token-1", "token-2"}}, // half of 60 s
		{0, []string{"token-1", "token-2", "token-3"}},  // no expires_in: never cached
	} {
		clk := newClock()
		srv, c, _ := setup(t, ES384, clk)
		srv.ExpiresIn = tc.expiresIn
		var got []string
		for _, d := range []time.Duration{0, 29 * time.Second, time.Second} {
			clk.Advance(d)
			got = append(got, mustToken(t, c))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("expires_in %d (-want +got):\n%s", tc.expiresIn, diff)
		}
	}
}

func TestConcurrentCallersShareOneFetch(t *testing.T) {
	srv, c, _ := setup(t, ES384, newClock())
	arrived, release := srv.Hold()
	const callers = 8
	tokens := make(chan string, callers)
	for range callers {
		go func() {
			tok, err := c.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			tokens <- tok
		}()
	}
	<-arrived
	// Release only once every caller waits on the request under way.
	for waiting := 0; waiting < callers; runtime.Gosched() {
		c.mu.Lock()
		if c.inflight != nil {
			waiting = c.inflight.waiters
		}
		c.mu.Unlock()
	}
	release()
	for range callers {
		if tok := <-tokens; tok != "token-1" {
			t.Errorf("token %q", tok)
		}
	}
	if srv.Hits() != 1 {
		t.Errorf("%d token requests, want 1", srv.Hits())
	}
}

// TestCallerGivesUp: a caller whose context ends stops waiting, and the
// request it started still fills the cache for the next one.
func TestCallerGivesUp(t *testing.T) {
	srv, c, _ := setup(t, RS384, newClock())
	arrived, release := srv.Hold()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error)
	go func() {
		_, err := c.Token(ctx)
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Errorf("error %v, want context.Canceled", err)
	}
	release()
	if tok := mustToken(t, c); tok != "token-1" || srv.Hits() != 1 {
		t.Errorf("token %q after %d requests, want token-1 after 1", tok, srv.Hits())
	}
}

func TestInvalidateOnce(t *testing.T) {
	srv, c, _ := setup(t, RS384, newClock())
	t1 := mustToken(t, c)
	if !c.Invalidate(t1) {
		t.Error("Invalidate = false")
	}
	t2 := mustToken(t, c)
	c.Invalidate(t1) // a second request refused with the old token
	if t3 := mustToken(t, c); t3 != t2 || t2 == t1 || srv.Hits() != 2 {
		t.Errorf("tokens %q %q %q after %d requests, want a second token kept", t1, t2, t3, srv.Hits())
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		ctype   string
		body    string
		wantErr string
	}{
		{"unauthorized", 401, "application/json", `{"error":"invalid_client","error_description":"no such client"}`, "401 Unauthorized: invalid_client (no such client)"},
		{"server error, html", 503, "text/html", `<html>down</html>`, "503 Service Unavailable"},
		{"not json", 200, "text/plain", `token`, `answer is "text/plain"`},
		{"no token", 200, "application/json", `{"token_type":"bearer","expires_in":300}`, "no access_token"},
		{"mac token", 200, "application/json", `{"access_token":"a","token_type":"mac","expires_in":300}`, `token_type "mac" is not bearer`},
		{"negative expiry", 200, "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":-1}`, "negative expires_in"},
		{"long description", 400, "application/json", `{"error":"invalid_scope","error_description":"` + strings.Repeat("é", 300) + `"}`, "invalid_scope (" + strings.Repeat("é", 100) + "…)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newStatic(t, tc.status, tc.ctype, tc.body)
			pemData, _ := smarttest.NewKey(t, "ES384")
			c, err := New(Config{TokenURL: srv, ClientID: clientID, Key: mustKey(t, pemData, ES384, "k")})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Token(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// newStatic is a token endpoint that always gives the same answer.
func newStatic(t *testing.T, status int, ctype, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/token"
}

func TestNewChecksConfig(t *testing.T) {
	pemData, _ := smarttest.NewKey(t, "ES384")
	key := mustKey(t, pemData, ES384, "k")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{TokenURL: "/token", ClientID: "c", Key: key}, "not an absolute URL"},
		{Config{TokenURL: "https://ehr.example/token", Key: key}, "client id is empty"},
		{Config{TokenURL: "https://ehr.example/token", ClientID: "c"}, "no signing key"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	rsaPEM, _ := smarttest.NewKey(t, "RS384")
	ecPEM, _ := smarttest.NewKey(t, "ES384")
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := strings.Replace(string(ecPEM), "M", "A", 5)
	for _, tc := range []struct {
		name string
		pem  []byte
		alg  Algorithm
		kid  string
		want string
	}{
		{"not PEM", []byte("secret-not-a-key"), ES384, "k", "no PEM block found"},
		{"certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ES384, "k", `PEM block "CERTIFICATE" is not a private key`},
		{"corrupt", []byte(corrupt), ES384, "k", "cannot parse the PRIVATE KEY"},
		{"RSA for ES384", rsaPEM, ES384, "k", "ES384 needs an EC P-384 key, got an RSA key"},
		{"EC for RS384", ecPEM, RS384, "k", "RS384 needs an RSA key, got an EC key on P-384"},
		{"P-256", smarttest.EncodePEM(t, p256), ES384, "k", "got curve P-256"},
		{"RSA 1024", smarttest.EncodePEM(t, small), RS384, "k", "RSA key has 1024 bits"},
		{"HS256", ecPEM, "HS256", "k", `algorithm "HS256" is not RS384 or ES384`},
		{"no kid", ecPEM, ES384, "", "key id is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKey(tc.pem, tc.alg, tc.kid)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "MII") {
				t.Errorf("error repeats the key: %v", err)
			}
		})
	}
}

// TestKeyRedacted: no way of printing or marshalling a Key shows the
// private key.
func TestKeyRedacted(t *testing.T) {
	for _, alg := range []Algorithm{RS384, ES384} {
		pemData, _ := smarttest.NewKey(t, string(alg))
		key := mustKey(t, pemData, alg, "kid-1")
		var private string
		if key.m.rsa != nil {
			private = key.m.rsa.D.String()
		} else {
			private = key.m.ecdsa.D.String()
		}
		holder := struct {
			Key    Key
			hidden Key
			Ptr    *Key
		}{key, key, &key}
		jsonOut, err := json.Marshal(holder)
		if err != nil {
			t.Fatal(err)
		}
		var logged strings.Builder
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", key, "holder", holder)
		outputs := map[string]string{
			"json": string(jsonOut), "slog": logged.String(),
			"%v": fmt.Sprintf("%v", holder), "%+v": fmt.Sprintf("%+v", holder), "%#v": fmt.Sprintf("%#v", holder),
			"%s": fmt.Sprintf("%s", key), "%x": fmt.Sprintf("%x", key), "%d": fmt.Sprintf("%d", key), "String": key.String(),
		}
		for name, out := range outputs {
			if strings.Contains(out, private) || strings.Contains(out, "PRIVATE") || strings.Contains(out, string(pemData[30:60])) {
				t.Errorf("%s %s shows the key: %s", alg, name, out)
			}
		}
		if want := `{"alg":"` + string(alg) + `","kid":"kid-1","key":"[redacted]"}`; !strings.Contains(string(jsonOut), want) {
			t.Errorf("json %s, want %s", jsonOut, want)
		}
	}
}
