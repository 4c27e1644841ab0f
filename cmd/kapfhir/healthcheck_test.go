package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRunHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	addr := srv.Listener.Addr().String()
	env := []string{"KAPFHIR_HTTP_ADDR=" + addr}
	if err := run(context.Background(), []string{"healthcheck"}, env, io.Discard); err != nil {
		t.Fatalf("healthcheck of a healthy server: %v", err)
	}
	srv.Close()
	if err := run(context.Background(), []string{"healthcheck"}, env, io.Discard); err == nil {
		t.Fatal("healthcheck of a stopped server succeeded")
	}
}
