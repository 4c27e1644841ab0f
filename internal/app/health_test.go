package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name   string
		addr   string
		status int
		ok     bool
	}{
		{"up", "127.0.0.1:" + port, http.StatusOK, true},
		{"wildcard address probed on loopback", "0.0.0.0:" + port, http.StatusOK, true},
		{"empty host probed on loopback", ":" + port, http.StatusOK, true},
		{"not healthy", "127.0.0.1:" + port, http.StatusServiceUnavailable, false},
		{"nothing listening", closedAddr, http.StatusOK, false},
		{"port chosen at start", "127.0.0.1:0", http.StatusOK, false},
		{"not an address", "localhost", http.StatusOK, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status = tc.status
			err := Healthcheck(context.Background(), tc.addr, false)
			if (err == nil) != tc.ok {
				t.Errorf("Healthcheck(%q) = %v, want ok %v", tc.addr, err, tc.ok)
			}
		})
	}
}

// With TLS the probe speaks HTTPS to the local listener and accepts its
// certificate, which names the public host, not the loopback address.
func TestHealthcheckTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	if err := Healthcheck(context.Background(), addr, true); err != nil {
		t.Errorf("HTTPS: %v", err)
	}
	if err := Healthcheck(context.Background(), addr, false); err == nil {
		t.Error("plain HTTP to a TLS listener succeeded")
	}
}
