package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	spec "github.com/kapfhir/kapfhir"
)

// specChecker validates requests and responses against openapi.yaml
// (acceptance 3): a call the spec does not describe fails the test.
type specChecker struct {
	router routers.Router
	base   string
}

func newSpecChecker(t *testing.T, base string) *specChecker {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(spec.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	// Routes are matched on the test server, not the documented default.
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("openapi.yaml router: %v", err)
	}
	return &specChecker{router: router, base: base}
}

// check validates one exchange: the request as sent (unless it is bad on
// purpose) and the response r.
func (s *specChecker) check(t *testing.T, method, path, body string, r *response, badRequest bool) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is not in openapi.yaml: %v", method, path, err)
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		// Authentication is tested on its own (authn_test.go); here the
		// security requirement is only known to be declared.
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && !badRequest {
		t.Errorf("%s %s: the request does not match openapi.yaml: %v\n%s", method, path, err, body)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header,
		Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: the %d response does not match openapi.yaml: %v\n%s", method, path, r.status, err, r.body)
	}
}
