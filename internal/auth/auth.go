// Package auth says who a request acts for. An Authenticator turns a
// request's credentials into a Principal; the HTTP layer puts it in the
// request's context, where enforcement (scopes, compartments, sensitive
// data) and audit read it.
package auth

import (
	"context"
	"net/http"
)

// Principal is the caller of one request, from a verified token. Its
// fields come from the token's claims; none of them is PHI-free by
// construction (Patient is a patient id), so none goes into a log or a
// metric label.
type Principal struct {
	Issuer   string // iss
	Subject  string // sub
	ClientID string // client_id, or azp
	// FHIRUser is the token's fhirUser claim (e.g. Practitioner/123), the
	// agent named in AuditEvents and Provenance when present.
	FHIRUser string
	// Patient is the launch context's patient id: patient/ scopes are
	// limited to its compartment.
	Patient string
	// Scopes are the granted scope strings as the token has them (SMART v1
	// or v2, plus openid, fhirUser, launch/patient and the like).
	Scopes []string
	// PurposeOfUse are codes of
	// http://terminology.hl7.org/CodeSystem/v3-ActReason (TREAT, ETREAT,
	// HPAYMT, ...) from the token's purpose_of_use claim.
	PurposeOfUse []string
	// Anonymous marks the principal of a server running without
	// authentication (allowed only on loopback): the local operator, who
	// may do everything.
	Anonymous bool
}

// Agent names the principal for AuditEvent and Provenance agents: the
// fhirUser when the token has one, else the client, else the subject.
func (p *Principal) Agent() string {
	switch {
	case p.Anonymous:
		return "anonymous"
	case p.FHIRUser != "":
		return p.FHIRUser
	case p.ClientID != "":
		return p.ClientID
	}
	return p.Subject
}

// Authenticator verifies a request's credentials. A request without
// credentials, or with credentials that do not verify, is an error of kind
// fault.Unauthorized.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal of ctx, or nil for work no request
// started (the EHR sync, recovery, seeding).
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}
