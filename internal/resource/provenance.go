package resource

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/store"
)

// AgentRef is the FHIR Reference naming a principal in Provenance and
// AuditEvent agents.
type AgentRef struct {
	Reference  string   `json:"reference,omitempty"`
	Identifier *AgentID `json:"identifier,omitempty"`
	Display    string   `json:"display,omitempty"`
}

// AgentID is an Identifier of a token's client or subject, in its issuer's
// namespace.
type AgentID struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Who names p: its fhirUser as a reference when the token has one, else
// its client (or subject) as an identifier of the issuer.
func Who(p *auth.Principal) AgentRef {
	if p.FHIRUser != "" {
		return AgentRef{Reference: p.FHIRUser}
	}
	return AgentRef{Identifier: &AgentID{System: p.Issuer, Value: p.Agent()}}
}

// activities of the v3-DataOperation code system, in the order the
// Provenances of one commit are written.
var activities = []string{"CREATE", "UPDATE", "DELETE"}

func activity(r *store.Record) string {
	switch {
	case r.Deleted:
		return "DELETE"
	case r.VersionID == 1 || r.Method == "POST":
		return "CREATE"
	}
	return "UPDATE"
}

// provenance returns the Provenance records that go into the same commit
// as recs when an authenticated principal (not the anonymous local
// operator) writes them: one per activity, targeting every version of
// recs it covers, naming the principal as author (and its client
// application as performer). Work no request started (the sync, seeding,
// recovery) and writes while authentication is off get none.
func (s *Service) provenance(ctx context.Context, recs []*store.Record) ([]*store.Record, error) {
	p := auth.FromContext(ctx)
	if p == nil || p.Anonymous || len(recs) == 0 {
		return nil, nil
	}
	targets := map[string][]AgentRef{}
	for _, r := range recs {
		a := activity(r)
		targets[a] = append(targets[a], AgentRef{Reference: r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)})
	}
	var out []*store.Record
	for _, a := range activities {
		if len(targets[a]) == 0 {
			continue
		}
		rec, err := s.provenanceRecord(p, a, targets[a], recs[0].LastUpdated)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s *Service) provenanceRecord(p *auth.Principal, activity string, targets []AgentRef, at time.Time) (*store.Record, error) {
	type coding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	type concept struct {
		Coding []coding `json:"coding"`
	}
	type agent struct {
		Type concept  `json:"type"`
		Who  AgentRef `json:"who"`
	}
	participant := func(code string) concept {
		return concept{[]coding{{"http://terminology.hl7.org/CodeSystem/provenance-participant-type", code}}}
	}
	agents := []agent{{participant("author"), Who(p)}}
	if p.FHIRUser != "" && p.ClientID != "" {
		agents = append(agents, agent{participant("performer"), AgentRef{Identifier: &AgentID{System: p.Issuer, Value: p.ClientID}}})
	}
	id := NewID()
	b, err := json.Marshal(struct {
		ResourceType string     `json:"resourceType"`
		ID           string     `json:"id"`
		Target       []AgentRef `json:"target"`
		Recorded     string     `json:"recorded"`
		Activity     concept    `json:"activity"`
		Agent        []agent    `json:"agent"`
	}{"Provenance", id, targets, at.UTC().Format(time.RFC3339Nano),
		concept{[]coding{{"http://terminology.hl7.org/CodeSystem/v3-DataOperation", activity}}}, agents})
	if err != nil {
		return nil, fault.Wrap(err, "provenance")
	}
	res, err := fhir.ParseResource(b)
	if err != nil {
		return nil, fault.Wrap(err, "provenance") // built here: a bug
	}
	rec, _ := s.next("Provenance", id, nil, res, "POST", true)
	return rec, nil
}
