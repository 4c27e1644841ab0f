// Package audit records who did what to which resources: each FHIR, KAP
// and admin interaction, each export file and each resource the EHR sync
// discloses becomes an R4 AuditEvent (following the FHIR AuditEvent
// guidance and IHE BALP where practical). Events are queued and written in
// batches by one worker (Sink), so a request never waits for its record.
package audit

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/resource"
)

// ResourceType is the type of the records written: the EHR sync and the
// Subscription notifier leave it alone.
const ResourceType = "AuditEvent"

// Code systems of the AuditEvent elements.
const (
	sysEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysDICOM       = "http://dicom.nema.org/resources/ontology/DCM"
	sysInteraction = "http://hl7.org/fhir/restful-interaction"
	sysActReason   = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	sysSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysParticipant = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
)

// Kind is what an event records: an interaction of the REST API, an
// export file handed out, or a resource disclosed to an EHR.
type Kind int

const (
	REST Kind = iota
	Export
	Disclosure
)

// Event is one audited happening, before it is rendered as an AuditEvent.
type Event struct {
	Kind Kind
	// Interaction is a http://hl7.org/fhir/restful-interaction code (read,
	// search-type, create, transaction, operation, ...); empty for the KAP
	// and admin APIs, which have no FHIR interaction.
	Interaction string
	// Action is C, R, U, D or E; empty: derived from Interaction.
	Action   string
	Recorded time.Time
	// Status is the HTTP status of the answer (0: success), which gives
	// the outcome.
	Status int
	// Principal is who asked; nil: a request that did not authenticate,
	// or the server itself (the EHR sync).
	Principal *auth.Principal
	Address   string // the client's network address
	// Destination is the EHR endpoint a disclosure went to.
	Destination string
	Entities    []Entity
}

// Entity is one thing the event is about.
type Entity struct {
	// Reference is Type/id or Type/id/_history/v; empty for a query or a
	// route.
	Reference string
	// Patient marks the patient involved (entity type person, role
	// patient).
	Patient bool
	// Query is the query string of a search, stored only in the event.
	Query string
	// Name describes an entity without a reference: a route template, an
	// export file.
	Name string
}

// Resource returns the entities of a resource reference (Type/id or
// Type/id/_history/v; empty: none): the resource, and for a Patient the
// patient involved too.
func Resource(ref string) []Entity {
	if ref == "" {
		return nil
	}
	es := []Entity{{Reference: ref}}
	if parts := strings.Split(ref, "/"); parts[0] == "Patient" && len(parts) > 1 {
		es = append(es, Entity{Reference: "Patient/" + parts[1], Patient: true})
	}
	return es
}

// action of a restful interaction.
var actions = map[string]string{
	"create": "C", "read": "R", "vread": "R", "update": "U", "patch": "U", "delete": "D",
	"history-instance": "R", "history-type": "R", "history-system": "R", "capabilities": "R",
}

func (e *Event) action() string {
	if e.Action != "" {
		return e.Action
	}
	if a, ok := actions[e.Interaction]; ok {
		return a
	}
	return "E" // searches, operations, bundles: executed
}

// outcome is the AuditEvent outcome of an HTTP status: 0 success, 4 a
// refusal or bad request, 8 a server failure.
func outcome(status int) string {
	switch {
	case status < 400:
		return "0"
	case status < 500:
		return "4"
	}
	return "8"
}

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding"`
}

// reference and identifier are those of Provenance agents.
type (
	reference  = resource.AgentRef
	identifier = resource.AgentID
)

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Type      *concept  `json:"type,omitempty"`
	Who       reference `json:"who"`
	Requestor bool      `json:"requestor"`
	Network   *network  `json:"network,omitempty"`
	Purpose   []concept `json:"purposeOfUse,omitempty"`
}

type entity struct {
	What  *reference `json:"what,omitempty"`
	Type  *coding    `json:"type,omitempty"`
	Role  *coding    `json:"role,omitempty"`
	Name  string     `json:"name,omitempty"`
	Query string     `json:"query,omitempty"`
}

type auditEvent struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Type         coding    `json:"type"`
	Subtype      []coding  `json:"subtype,omitempty"`
	Action       string    `json:"action"`
	Recorded     string    `json:"recorded"`
	Outcome      string    `json:"outcome"`
	Purpose      []concept `json:"purposeOfEvent,omitempty"`
	Agent        []agent   `json:"agent"`
	Source       struct {
		Observer reference `json:"observer"`
		Type     []coding  `json:"type"`
	} `json:"source"`
	Entity []entity `json:"entity,omitempty"`
}

// render builds the AuditEvent of e with id; observer names this server.
func (e *Event) render(id, observer string) ([]byte, error) {
	ae := auditEvent{
		ResourceType: ResourceType, ID: id, Action: e.action(), Outcome: outcome(e.Status),
		Recorded: e.Recorded.UTC().Format(time.RFC3339Nano),
	}
	switch e.Kind {
	case REST:
		ae.Type = coding{sysEventType, "rest", "Restful Operation"}
	default:
		ae.Type = coding{sysDICOM, "110106", "Export"}
	}
	if e.Interaction != "" {
		ae.Subtype = []coding{{System: sysInteraction, Code: e.Interaction}}
	}
	if p := e.Principal; p != nil {
		for _, c := range p.PurposeOfUse {
			ae.Purpose = append(ae.Purpose, concept{[]coding{{System: sysActReason, Code: c}}})
		}
	}
	ae.Agent = e.agents(observer)
	ae.Source.Observer = reference{Display: observer}
	ae.Source.Type = []coding{{System: sysSourceType, Code: "4", Display: "Application Server"}}
	for _, en := range e.Entities {
		ae.Entity = append(ae.Entity, en.render())
	}
	return json.Marshal(ae)
}

// agents names who asked (the requestor): the user of a token with a
// fhirUser, with the client application beside it; else the client or
// subject as an identifier of the token's issuer. The EHR sync acts as
// this server, the EHR endpoint being the destination.
func (e *Event) agents(observer string) []agent {
	var net *network
	if e.Address != "" {
		net = &network{Address: e.Address, Type: "2"} // an IP address
	}
	p := e.Principal
	var who reference
	switch {
	case e.Kind == Disclosure:
		who = reference{Display: observer}
	case p == nil:
		who = reference{Display: "unauthenticated"}
	case p.Anonymous:
		who = reference{Identifier: &identifier{Value: "anonymous"}, Display: "local operator (authentication off)"}
	default:
		who = resource.Who(p)
	}
	as := []agent{{Who: who, Requestor: true, Network: net}}
	if p != nil {
		for _, c := range p.PurposeOfUse {
			as[0].Purpose = append(as[0].Purpose, concept{[]coding{{System: sysActReason, Code: c}}})
		}
		if p.FHIRUser != "" && p.ClientID != "" {
			as = append(as, agent{
				Type: &concept{[]coding{{System: sysDICOM, Code: "110150", Display: "Application"}}},
				Who:  reference{Identifier: &identifier{System: p.Issuer, Value: p.ClientID}},
			})
		}
	}
	if e.Destination != "" {
		as = append(as, agent{
			Type: &concept{[]coding{{System: sysDICOM, Code: "110152", Display: "Destination Role ID"}}},
			Who:  reference{Identifier: &identifier{System: "urn:kapfhir:ehr-endpoint", Value: e.Destination}},
		})
	}
	if e.Kind == Disclosure {
		as[0].Type = &concept{[]coding{{System: sysParticipant, Code: "AUT", Display: "author (originator)"}}}
	}
	return as
}

func (en Entity) render() entity {
	switch {
	case en.Patient:
		return entity{What: &reference{Reference: en.Reference},
			Type: &coding{sysEntityType, "1", "Person"}, Role: &coding{sysObjectRole, "1", "Patient"}}
	case en.Query != "":
		return entity{Type: &coding{sysEntityType, "2", "System Object"}, Role: &coding{sysObjectRole, "24", "Query"},
			Name: en.Name, Query: base64.StdEncoding.EncodeToString([]byte(en.Query))}
	case en.Reference != "":
		return entity{What: &reference{Reference: en.Reference},
			Type: &coding{sysEntityType, "2", "System Object"}, Role: &coding{sysObjectRole, "4", "Domain Resource"}}
	}
	return entity{Type: &coding{sysEntityType, "2", "System Object"}, Name: en.Name}
}
