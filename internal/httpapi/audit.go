package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/resource"
)

// Gin context keys a handler sets to refine its request's AuditEvent.
const (
	auditInteraction = "audit.interaction" // the Bundle's type: batch or transaction
	auditQuery       = "audit.query"       // the search parameters, a POST _search's form included
)

type addrKey struct{}

// recordAudit queues the AuditEvent of each request of the FHIR, KAP and
// admin APIs once its handler has answered (Config.Audit nil: none). It
// runs before authentication, so a refused request is recorded too. The
// entries of a bundle dispatched through the router are recorded like
// requests of their own, with the bundle's client address.
func (a *api) recordAudit(c *gin.Context) {
	if a.Audit == nil || a.public[c.FullPath()] {
		c.Next()
		return
	}
	addr, ok := c.Request.Context().Value(addrKey{}).(string)
	if !ok {
		addr = c.ClientIP()
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), addrKey{}, addr))
	}
	var tr *resource.Trace
	if a.interactions[c.Request.Method+" "+c.FullPath()] == "kap" {
		// The KAP API speaks clinic terms: its event names the FHIR
		// resources the service read and wrote to answer.
		var ctx context.Context
		ctx, tr = resource.WithTrace(c.Request.Context())
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()
	e := a.requestEvent(c, addr)
	if tr != nil {
		refs, more := tr.Refs()
		named := map[audit.Entity]bool{}
		for _, en := range e.Entities {
			named[en] = true
		}
		for _, ref := range refs {
			for _, en := range audit.Resource(ref) {
				if !named[en] {
					named[en] = true
					e.Entities = append(e.Entities, en)
				}
			}
		}
		if more > 0 {
			e.Entities = append(e.Entities, audit.Entity{Name: strconv.Itoa(more) + " more resources"})
		}
	}
	a.Audit.Record(e)
}

// requestEvent describes the request c answered.
func (a *api) requestEvent(c *gin.Context, addr string) audit.Event {
	route := c.FullPath()
	e := audit.Event{
		Interaction: a.interactions[c.Request.Method+" "+route],
		Status:      c.Writer.Status(),
		Principal:   auth.FromContext(c.Request.Context()),
		Address:     addr,
	}
	if it := c.GetString(auditInteraction); it != "" {
		e.Interaction = it
	}
	switch {
	case route == exportFileRoute:
		e.Kind, e.Interaction, e.Action = audit.Export, "", "R"
		e.Entities = []audit.Entity{{Name: "_export/" + c.Param("job") + "/" + c.Param("file")}}
		return e
	case e.Interaction == "kap" || e.Interaction == "admin":
		// No FHIR interaction: the action by method, the path (with its
		// client, program or session id) as the entity.
		e.Interaction, e.Action = "", routeAction(c.Request.Method, route)
		e.Entities = []audit.Entity{{Name: c.Request.URL.Path}}
		if q := c.Request.URL.RawQuery; q != "" {
			e.Entities = append(e.Entities, audit.Entity{Name: route, Query: q})
		}
		if strings.HasPrefix(route, "/kap/v1/clients/:id") {
			// A KAP client is the Patient of the same id.
			e.Entities = append(e.Entities, audit.Entity{Reference: "Patient/" + c.Param("id"), Patient: true})
		}
		return e
	}
	typ, id := c.Param("type"), c.Param("id")
	if !fhir.IsResourceType(typ) {
		typ = ""
	}
	if !fhir.ValidID(id) {
		id = ""
	}
	ref := written(c.Writer.Header())
	if ref == "" && typ != "" && id != "" {
		ref = typ + "/" + id
		if v, ok := parseETag(c.Writer.Header().Get("ETag")); ok && c.Param("ctype") == "" {
			ref += "/_history/" + strconv.FormatInt(v, 10)
		}
	}
	e.Entities = append(e.Entities, audit.Resource(ref)...)
	q := c.GetString(auditQuery)
	if q == "" {
		q = c.Request.URL.RawQuery
	}
	if q != "" {
		name := c.Param("ctype")
		if name == "" {
			name = typ
		}
		e.Entities = append(e.Entities, audit.Entity{Name: name, Query: q})
	}
	return e
}

// written is the Type/id/_history/v of a Location header, if any.
func written(h http.Header) string {
	parts := strings.Split(h.Get("Location"), "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		return strings.Join(parts[n-4:], "/")
	}
	return ""
}

// routeAction is the AuditEvent action of a KAP or admin request: a POST
// on a collection creates, one on a record (a status change, a
// confirmation) updates it.
func routeAction(method, route string) string {
	switch method {
	case http.MethodGet:
		return "R"
	case http.MethodPut:
		return "U"
	case http.MethodDelete:
		return "D"
	case http.MethodPost:
		if strings.Contains(route, "/:") {
			return "U"
		}
		return "C"
	}
	return "E"
}

// auditCommitted records a bundle entry committed with others (a
// transaction's write, a batch group's) rather than dispatched.
func (a *api) auditCommitted(c *gin.Context, method string, out *resource.Outcome) {
	if a.Audit == nil || out == nil || out.Record == nil {
		return
	}
	interaction := map[string]string{"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
	}
	r := out.Record
	ref := r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
	addr, _ := c.Request.Context().Value(addrKey{}).(string)
	a.Audit.Record(audit.Event{
		Interaction: interaction, Status: status, Address: addr,
		Principal: auth.FromContext(c.Request.Context()),
		Entities:  audit.Resource(ref),
	})
}
