package httpapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// Scope enforcement (docs/fhir-behaviour.md, "Scopes and compartments").
// Each route's scope column says what it needs of the principal's SMART
// scopes; enforce checks it before the handler runs, and records the
// context of the grant so that handlers serving patient/ grants keep to
// the patient's compartment.
//
// The column is one of
//
//	public   no credentials needed (metadata)
//	handler  the handler checks, per type or per entry (bundles, system
//	         search and history, export, import)
//
// or space-separated needs [system/]<Type|:type|:ctype>.<cruds>, where
// :type and :ctype are the route's parameters, and system/ accepts only a
// system/ grant; plus the flags
//
//	patient  a patient/ grant serves: the handler limits it to the
//	         compartment of the token's patient (without the flag a
//	         patient/ grant is refused)
//	client   a patient/ grant serves when the KAP client (:id) is the
//	         token's patient
type scopeRule struct {
	public, handler bool
	needs           []scopeNeed
	patient, client bool
}

type scopeNeed struct {
	typ    string
	perm   auth.Perm
	system bool
}

// parseScopeRule parses a routes table's scope column; an error is a
// defect of the table (TestScopeRuleColumn parses every route's).
func parseScopeRule(s string) (scopeRule, error) {
	var r scopeRule
	for _, f := range strings.Fields(s) {
		switch f {
		case "public":
			r.public = true
		case "handler":
			r.handler = true
		case "patient":
			r.patient = true
		case "client":
			r.client = true
		default:
			var n scopeNeed
			f, n.system = strings.CutPrefix(f, "system/")
			typ, perm, _ := strings.Cut(f, ".")
			var ok bool
			if n.perm, ok = auth.ParsePerm(perm); !ok || !(typ == ":type" || typ == ":ctype" || typ == "*" || fhir.IsResourceType(typ)) {
				return r, fmt.Errorf("scope need %q: want [system/]<Type|:type|:ctype|*>.<cruds>", f)
			}
			n.typ = typ
			r.needs = append(r.needs, n)
		}
	}
	if (r.public || r.handler) != (len(r.needs) == 0) || (r.public && r.handler) {
		return r, fmt.Errorf("scope rule %q: give public, handler or needs", s)
	}
	return r, nil
}

// grantKey holds, in a gin context, the context enforce granted the
// route's needs in.
const grantKey = "kapfhir.grant"

// principal is the request's principal. Every route but the public ones
// runs after authenticate, so a missing one is a wiring defect: refused.
func principal(c *gin.Context) (*auth.Principal, error) {
	p := auth.FromContext(c.Request.Context())
	if p == nil {
		return nil, fault.New(fault.Unauthorized, "", "the request has no authenticated principal")
	}
	return p, nil
}

// enforce checks a route's scope rule for the request.
func (a *api) enforce(c *gin.Context, r scopeRule) error {
	if r.public {
		return nil
	}
	p, err := principal(c)
	if err != nil || r.handler {
		return err
	}
	grant := auth.SystemContext
	for _, n := range r.needs {
		typ := n.typ
		if strings.HasPrefix(typ, ":") {
			typ = c.Param(typ[1:])
			if !fhir.IsResourceType(typ) {
				continue // the handler answers 404
			}
		}
		g := p.Grant(n.perm, typ)
		switch {
		case g == auth.None:
			return forbidden(auth.Missing(auth.None, p.Lacking(n.perm, typ), typ))
		case n.system && g != auth.SystemContext:
			return forbidden(auth.Missing(auth.SystemContext, n.perm, typ))
		}
		grant = min(grant, g)
	}
	if grant == auth.PatientContext {
		ok := r.patient || (r.client && c.Param("id") == p.Patient)
		if !ok {
			return fault.New(fault.Forbidden, "", "a patient/ scope does not grant this request; it needs a user/ or system/ scope")
		}
	}
	c.Set(grantKey, grant)
	return nil
}

// forbidden is the 403 of a missing scope. It names the scope, never the
// resource asked for.
func forbidden(scope string) error {
	return fault.New(fault.Forbidden, "", "the token's scopes do not grant this request: it needs %s", scope)
}

// compartmentPatient returns the token's patient when the route was
// granted in the patient context only, so that the handler keeps to its
// compartment.
func compartmentPatient(c *gin.Context) (string, bool) {
	if g, _ := c.Get(grantKey); g != auth.PatientContext {
		return "", false
	}
	return auth.FromContext(c.Request.Context()).Patient, true
}

// outsideCompartment is the 403 of a patient/ grant on a resource outside
// the patient's compartment: HAPI's authorization interceptor also answers
// 403 (and a 404 would lie about a resource that exists).
func outsideCompartment() error {
	return fault.New(fault.Forbidden, "", "the resource is outside the compartment of the token's patient, which its patient/ scopes are limited to")
}

// inCompartment reports whether a stored record is in the compartment of
// the Patient patient. A deleted version has no content: not in it.
func (a *api) inCompartment(patient string, rec *store.Record) bool {
	if rec.Deleted || rec.Raw == "" {
		return false
	}
	res, err := fhir.ParseResource([]byte(rec.Raw))
	return err == nil && search.ResourceInCompartment(a.Registry, "Patient", patient, res)
}

// checkRecord refuses a record a patient/ grant does not reach.
func (a *api) checkRecord(c *gin.Context, rec *store.Record) error {
	if patient, ok := compartmentPatient(c); ok && !a.inCompartment(patient, rec) {
		return outsideCompartment()
	}
	return nil
}

// checkContent refuses to write a resource a patient/ grant would place
// outside the patient's compartment.
func checkContent(c *gin.Context, reg *fhir.Registry, res *fhir.Resource) error {
	if patient, ok := compartmentPatient(c); ok && !search.ResourceInCompartment(reg, "Patient", patient, res) {
		return fault.New(fault.Forbidden, "", "a patient/ scope writes only resources in the compartment of the token's patient")
	}
	return nil
}

// checkSubscription refuses a Subscription whose criteria the principal
// may not read and search beyond a patient compartment: its notifications
// would disclose every matching resource to the endpoint. raw is the
// Subscription's JSON.
func checkSubscription(p *auth.Principal, raw []byte) error {
	if p.Anonymous {
		return nil
	}
	var s struct {
		Criteria string `json:"criteria"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fault.New(fault.Invalid, "Subscription", "not a Subscription: %v", err)
	}
	typ, _, _ := strings.Cut(s.Criteria, "?")
	if !fhir.IsResourceType(typ) {
		return nil // the Subscription check answers 422
	}
	if p.Grant(auth.Read|auth.Search, typ) < auth.UserContext {
		return fault.Locate(forbidden(auth.Missing(auth.UserContext, auth.Read|auth.Search, typ)), "Subscription.criteria")
	}
	return nil
}

// readable keeps the records the principal may read: of a type it holds
// r on, and, where that is a patient/ grant, in the patient's compartment.
// It filters what a request returns beside what it asked for by type
// (included resources, history, $everything).
func (a *api) readable(c *gin.Context, recs []*store.Record) []*store.Record {
	p := auth.FromContext(c.Request.Context())
	if p == nil || p.Anonymous {
		return recs
	}
	grants := map[string]auth.Context{}
	return slices.DeleteFunc(recs, func(r *store.Record) bool {
		g, ok := grants[r.Type]
		if !ok {
			g = p.Grant(auth.Read, r.Type)
			grants[r.Type] = g
		}
		return g == auth.None || (g == auth.PatientContext && !a.inCompartment(p.Patient, r))
	})
}

// grantedTypes narrows types to those the principal holds perm on beyond a
// patient/ grant (user/ or system/): where one request spans types, a
// patient/ grant's compartment cannot be applied per type. explicit says
// the client named the types: then a type it may not see is a 403 rather
// than dropped. No type left is a 403 as well: an empty list would mean
// every type to the store.
func grantedTypes(p *auth.Principal, perm auth.Perm, types []string, explicit bool) ([]string, error) {
	var out []string
	for _, t := range types {
		if p.Grant(perm, t) >= auth.UserContext {
			out = append(out, t)
		} else if explicit {
			return nil, forbidden(auth.Missing(auth.UserContext, perm, t) + " (or system/)")
		}
	}
	if len(out) == 0 {
		return nil, forbidden("user/ or system/ scopes on the types asked for")
	}
	return out, nil
}

// needAlso checks a permission a request needs beyond its route's rule (a
// conditional create also searches). It must be granted at least as
// widely as the route was: a patient/ grant of it serves only where the
// route itself is limited to the compartment.
func needAlso(c *gin.Context, perm auth.Perm, typ string) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	g, _ := c.Get(grantKey)
	route, _ := g.(auth.Context)
	if got := p.Grant(perm, typ); got == auth.None || (got == auth.PatientContext && route > auth.PatientContext) {
		return forbidden(auth.Missing(auth.None, perm, typ))
	}
	return nil
}

// restrictToCompartment limits a search to the compartment of the Patient
// patient. A type whose resources are never in it is refused: a patient/
// grant reaches nothing of it.
func restrictToCompartment(req *search.Request, patient string) error {
	if req.Type != "Patient" && len(fhir.CompartmentParams("Patient", req.Type)) == 0 {
		return fault.New(fault.Forbidden, "", "%s resources are not in a Patient compartment, so patient/ scopes do not reach them", req.Type)
	}
	return req.InCompartment("Patient", patient)
}
