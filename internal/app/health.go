package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Healthcheck asks the server listening on addr (KAPFHIR_HTTP_ADDR) for
// /healthz, for `kapfhir healthcheck`: container images without a shell
// or curl (distroless) probe with the binary itself. A wildcard address
// is probed on loopback.
func Healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: KAPFHIR_HTTP_ADDR %q: %w", addr, err)
	}
	if port == "0" {
		return fmt.Errorf("healthcheck: KAPFHIR_HTTP_ADDR %q has no fixed port to probe", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}
