package outbound

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/audit"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
)

// TestAuditDisclosure: each resource delivered to an endpoint is an
// Export AuditEvent naming the endpoint as destination, found by a FHIR
// search; the AuditEvents themselves are never sent, even to an endpoint
// whose types list them.
func TestAuditDisclosure(t *testing.T) {
	send := sendObservations
	send.Types = append(send.Types, audit.ResourceType)
	h := newHarness(t, observationCaps, send)
	sink := audit.New(h.svc, h.promet, audit.Options{Observer: "test-clinic"})
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	e := h.engine("a", func(o *Options) { o.Audit = sink })
	h.put(patientC1)
	h.put(observation("o1", "first", ""))
	h.drain(e)
	if err := sink.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain(e) // the AuditEvents are changes too: not sent

	c, err := search.ParseCriteria(h.reg, audit.ResourceType, "type=http://dicom.nema.org/resources/ontology/DCM|110106&entity=Observation/o1/_history/1")
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := h.svc.Search(context.Background(), &store.Query{Type: audit.ResourceType, And: c.Conds, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d disclosure AuditEvents of Observation/o1, want 1", len(recs))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(recs[0].Raw), &got); err != nil {
		t.Fatal(err)
	}
	delete(got, "id")
	delete(got, "meta")
	delete(got, "recorded")
	want := map[string]any{
		"resourceType": "AuditEvent",
		"type":         map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
		"action":       "R",
		"outcome":      "0",
		"agent": []any{
			map[string]any{
				"type":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "AUT", "display": "author (originator)"}}},
				"who":       map[string]any{"display": "test-clinic"},
				"requestor": true,
			},
			map[string]any{
				"type":      map[string]any{"coding": []any{map[string]any{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152", "display": "Destination Role ID"}}},
				"who":       map[string]any{"identifier": map[string]any{"system": "urn:kapfhir:ehr-endpoint", "value": endpoint}},
				"requestor": false,
			},
		},
		"source": map[string]any{
			"observer": map[string]any{"display": "test-clinic"},
			"type":     []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}},
		},
		"entity": []any{map[string]any{
			"what": map[string]any{"reference": "Observation/o1/_history/1"},
			"type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
			"role": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("disclosure AuditEvent (-want +got):\n%s", diff)
	}
	if n := h.ehr.count("POST", "/AuditEvent"); n != 0 {
		t.Errorf("%d AuditEvents sent to the EHR, want none", n)
	}
}
