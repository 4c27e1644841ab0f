package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const fhirJSON = "application/fhir+json"

// httpSide drives the FHIR REST API.
type httpSide struct {
	client *http.Client
	base   string // FHIR base, no trailing slash
	ids    idPool
}

func newHTTPSide(base string, concurrency int, opTimeout time.Duration) *httpSide {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	return &httpSide{client: &http.Client{Transport: tr, Timeout: opTimeout}, base: base}
}

func (h *httpSide) close() { h.client.CloseIdleConnections() }

// do sends one request, reads the whole answer and checks its status.
func (h *httpSide) do(ctx context.Context, method, url string, body []byte, want int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", fhirJSON)
	if body != nil {
		req.Header.Set("Content-Type", fhirJSON)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, bytes.TrimSpace(msg))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	return resp, nil
}

func (h *httpSide) create(ctx context.Context, i int) error {
	resp, err := h.do(ctx, http.MethodPost, h.base+"/Observation", observation(i, false, "", "", time.Time{}), http.StatusCreated)
	if err != nil {
		return err
	}
	id, err := idFromLocation(resp.Header.Get("Location"), "Observation")
	if err != nil {
		return err
	}
	h.ids.add(id)
	return nil
}

func (h *httpSide) read(ctx context.Context, i int) error {
	id, err := h.ids.pick(i)
	if err != nil {
		return err
	}
	_, err = h.do(ctx, http.MethodGet, h.base+"/Observation/"+id, nil, http.StatusOK)
	return err
}

func (h *httpSide) update(ctx context.Context, i int) error {
	id, err := h.ids.pick(i)
	if err != nil {
		return err
	}
	resp, err := h.do(ctx, http.MethodPut, h.base+"/Observation/"+id, observation(i, true, id, "", time.Time{}), http.StatusOK)
	if err != nil {
		return err
	}
	// Every update changes the value: version 1 would mean a no-op.
	if et := resp.Header.Get("ETag"); et == "" || et == `W/"1"` {
		return fmt.Errorf("PUT Observation/%s answered ETag %q: no new version was made", id, et)
	}
	return nil
}

// idFromLocation takes the id out of a Location such as
// http://host/fhir/Observation/{id}/_history/1.
func idFromLocation(loc, typ string) (string, error) {
	_, rest, ok := strings.Cut(loc, "/"+typ+"/")
	if !ok {
		return "", fmt.Errorf("create answered Location %q, which names no %s", loc, typ)
	}
	id, _, _ := strings.Cut(rest, "/")
	if id == "" {
		return "", fmt.Errorf("create answered Location %q, which has no id", loc)
	}
	return id, nil
}

// getJSON reads a JSON answer (200) into v.
func (h *httpSide) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", fhirJSON)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %.300s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, v)
}
