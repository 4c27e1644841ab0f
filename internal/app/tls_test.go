package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for host and its key as PEM
// files in dir.
func selfSigned(t *testing.T, dir, host string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With a certificate configured the service speaks HTTPS only, TLS 1.2 or
// later, sends Strict-Transport-Security, and `kapfhir healthcheck`
// reaches it.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir, "fhir.example.org")
	a, err := Start(context.Background(), testConfig(t, map[string]string{
		"KAPFHIR_TLS_CERT_FILE": certFile, "KAPFHIR_TLS_KEY_FILE": keyFile,
	}), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if !strings.HasPrefix(a.URL(), "https://") {
		t.Fatalf("URL %s", a.URL())
	}
	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: "fhir.example.org", MaxVersion: maxVersion,
		}}}
	}
	resp, err := client(0).Get(a.URL() + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("HTTPS metadata: %s, HSTS %q", resp.Status, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err := client(tls.VersionTLS11).Get(a.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("a TLS 1.1 client was served")
	}
	if resp, err := http.Get(strings.Replace(a.URL(), "https://", "http://", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
	}
	if err := Healthcheck(context.Background(), a.listener.Addr().String(), true); err != nil {
		t.Errorf("healthcheck over TLS: %v", err)
	}
}

// A certificate that cannot be read stops the start, naming the setting.
func TestServeTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(context.Background(), testConfig(t, map[string]string{
		"KAPFHIR_TLS_CERT_FILE": filepath.Join(dir, "none.pem"), "KAPFHIR_TLS_KEY_FILE": filepath.Join(dir, "none.key"),
	}), testOptions())
	if err == nil || !strings.Contains(err.Error(), "KAPFHIR_TLS_CERT_FILE") {
		t.Errorf("Start = %v, want an error naming KAPFHIR_TLS_CERT_FILE", err)
	}
}
