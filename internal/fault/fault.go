// Package fault is the service's error type. Every error that reaches a client
// carries a Kind; this package is the one place that maps a Kind to an HTTP
// status and renders the FHIR OperationOutcome.
package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error by what the client should do about it.
type Kind int

// The kinds, each with exactly one HTTP status (see status).
const (
	Internal             Kind = iota // 500: a bug or an unexpected store failure
	Invalid                          // 400: the request cannot be parsed (syntax, unknown element, bad primitive)
	Unprocessable                    // 422: parsed, but breaks a FHIR rule (cardinality, choice, reference) or a clinic rule (internal/kap)
	NotFound                         // 404: unknown type, id or version
	Gone                             // 410: deleted
	MethodNotAllowed                 // 405
	NotAcceptable                    // 406: a response format we do not produce (XML)
	Conflict                         // 409: the write clashes with the current state
	PreconditionFailed               // 412: If-Match is stale, or a conditional matched several
	TooLarge                         // 413
	UnsupportedMediaType             // 415
	Unavailable                      // 503: the store cannot be reached
	NotModified                      // 304: not an error to the client, but it short-circuits like one
	Unauthorized                     // 401: no credentials, or credentials that do not verify
	Forbidden                        // 403: verified, but the scopes, compartment or consent do not allow it
	TooManyRequests                  // 429: the client's rate limit is spent
	URITooLong                       // 414: the query string is over the limit
)

var status = map[Kind]int{
	Internal:             http.StatusInternalServerError,
	Invalid:              http.StatusBadRequest,
	Unprocessable:        http.StatusUnprocessableEntity,
	NotFound:             http.StatusNotFound,
	Gone:                 http.StatusGone,
	MethodNotAllowed:     http.StatusMethodNotAllowed,
	NotAcceptable:        http.StatusNotAcceptable,
	Conflict:             http.StatusConflict,
	PreconditionFailed:   http.StatusPreconditionFailed,
	TooLarge:             http.StatusRequestEntityTooLarge,
	UnsupportedMediaType: http.StatusUnsupportedMediaType,
	Unavailable:          http.StatusServiceUnavailable,
	NotModified:          http.StatusNotModified,
	Unauthorized:         http.StatusUnauthorized,
	Forbidden:            http.StatusForbidden,
	TooManyRequests:      http.StatusTooManyRequests,
	URITooLong:           http.StatusRequestURITooLong,
}

// issueCode is the default OperationOutcome issue type of each kind.
var issueCode = map[Kind]string{
	Internal:             "exception",
	Invalid:              "structure",
	Unprocessable:        "invariant",
	NotFound:             "not-found",
	Gone:                 "deleted",
	MethodNotAllowed:     "not-supported",
	NotAcceptable:        "not-supported",
	Conflict:             "conflict",
	PreconditionFailed:   "conflict",
	TooLarge:             "too-costly",
	UnsupportedMediaType: "not-supported",
	Unavailable:          "transient",
	NotModified:          "informational",
	Unauthorized:         "login",
	Forbidden:            "forbidden",
	TooManyRequests:      "throttled",
	URITooLong:           "too-costly",
}

// Issue is one OperationOutcome.issue (fields in the FHIR element order).
type Issue struct {
	Severity    string           `json:"severity"`
	Code        string           `json:"code"`
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// CodeableConcept is issue.details: a machine-readable reason, such as the
// code of the clinic rule that refused a request.
type CodeableConcept struct {
	Coding []Coding `json:"coding"`
}

// Coding is one code of a CodeableConcept.
type Coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// Error is an error with a Kind and the issues to report.
type Error struct {
	Kind   Kind
	Issues []Issue
	Err    error // the cause, logged for Internal errors, never sent to the client
}

func (e *Error) Error() string {
	var b bytes.Buffer
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(is.Diagnostics)
		if len(is.Expression) > 0 {
			fmt.Fprintf(&b, " (at %s)", is.Expression[0])
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind with one issue. expression may be empty when
// the problem is not located in the resource (an HTTP header, a URL part).
func New(kind Kind, expression, format string, args ...any) *Error {
	is := Issue{Severity: "error", Code: issueCode[kind], Diagnostics: fmt.Sprintf(format, args...)}
	if expression != "" {
		is.Expression = []string{expression}
	}
	return &Error{Kind: kind, Issues: []Issue{is}}
}

// WithCode overrides the issue type of every issue (e.g. "value", "required").
func (e *Error) WithCode(code string) *Error {
	for i := range e.Issues {
		e.Issues[i].Code = code
	}
	return e
}

// Wrap makes an Internal error around err, keeping err for the log only.
func Wrap(err error, what string) *Error {
	e := New(Internal, "", "%s failed", what)
	e.Err = err
	return e
}

// Locate gives the issues of err that name no expression the expression
// expr (a search parameter's name, say), when err is an *Error.
func Locate(err error, expr string) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return err
	}
	for i := range fe.Issues {
		if len(fe.Issues[i].Expression) == 0 {
			fe.Issues[i].Expression = []string{expr}
		}
	}
	return err
}

// As returns err as an *Error; any other error becomes Internal.
func As(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return Wrap(err, "request")
}

// Is reports whether err is an *Error of kind.
func Is(err error, kind Kind) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.Kind == kind
}

// Status is the HTTP status for err.
func Status(err error) int { return status[As(err).Kind] }

// Outcome renders err as an OperationOutcome resource.
func Outcome(err error) []byte {
	return OutcomeOf(As(err).Issues)
}

// OutcomeOf renders issues as an OperationOutcome resource.
func OutcomeOf(issues []Issue) []byte {
	b, _ := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []Issue `json:"issue"`
	}{"OperationOutcome", issues})
	return b
}
