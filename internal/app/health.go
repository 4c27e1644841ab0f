package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Healthcheck asks the server listening on addr (KAPFHIR_HTTP_ADDR) for
// /healthz, for `kapfhir healthcheck`: container images without a shell
// or curl (distroless) probe with the binary itself. A wildcard address
// is probed on loopback. With useTLS (KAPFHIR_TLS_CERT_FILE set) it speaks
// HTTPS without verifying the certificate: the probe only ever dials this
// host's own listener, on loopback or the configured address, whose
// certificate names the service's public host rather than that address.
func Healthcheck(ctx context.Context, addr string, useTLS bool) error {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme(useTLS)+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}, // the local listener, see above
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}
