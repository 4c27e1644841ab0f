package kap

import (
	"context"
	"encoding/json"
	"reflect"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/mappings"
)

// SummaryOperation is the canonical URL of the OperationDefinition of
// EpisodeOfCare/{id}/$kap-summary.
const SummaryOperation = "https://kapfhir.org/fhir/OperationDefinition/kap-summary"

// The ids the definitions are served under.
const (
	codeSystemID       = "kap"
	summaryOperationID = "kap-summary"
)

// Definitions lists the Type/id of the resources PublishDefinitions keeps:
// what a fresh store holds once the service has started.
func Definitions() []string {
	return []string{"CodeSystem/" + codeSystemID, "OperationDefinition/" + summaryOperationID}
}

// PublishDefinitions stores the conformance resources of the KAP API —
// CodeSystem/kap and OperationDefinition/kap-summary — when absent or
// different from what this version serves. Content is compared without
// meta, so a restart writes no new version.
func (s *Service) PublishDefinitions(ctx context.Context) error {
	cs, err := s.m.CodeSystem(codeSystemID)
	if err != nil {
		return err
	}
	op, err := summaryOperationDefinition()
	if err != nil {
		return err
	}
	var changed []mappings.Resource
	for _, r := range []mappings.Resource{cs, op} {
		rec, err := s.res.Read(ctx, r.Type, r.ID)
		switch {
		case fault.Is(err, fault.NotFound) || fault.Is(err, fault.Gone):
			changed = append(changed, r)
		case err != nil:
			return err
		case !sameContent([]byte(rec.Raw), r.JSON):
			changed = append(changed, r)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return s.write(ctx, changed, nil, nil, mappings.Labels{})
}

// sameContent compares two resources as JSON values, without meta (the
// store's versionId and lastUpdated).
func sameContent(a, b []byte) bool {
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	delete(x, "meta")
	delete(y, "meta")
	return reflect.DeepEqual(x, y)
}

// opParam is a parameter of the OperationDefinition: a value of type, or
// parts.
type opParam struct {
	Name          string    `json:"name"`
	Use           string    `json:"use"`
	Min           int       `json:"min"`
	Max           string    `json:"max"`
	Documentation string    `json:"documentation,omitempty"`
	Type          string    `json:"type,omitempty"`
	Part          []opParam `json:"part,omitempty"`
}

func out(name, typ, doc string) opParam {
	return opParam{Name: name, Use: "out", Min: 0, Max: "1", Type: typ, Documentation: doc}
}

func parts(name, doc string, ps ...opParam) opParam {
	return opParam{Name: name, Use: "out", Min: 0, Max: "1", Documentation: doc, Part: ps}
}

// encounterStatuses are the statuses the session counts are keyed by.
var encounterStatuses = []string{"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}

// summaryOperationDefinition describes the Parameters of $kap-summary as
// summaryParameters (internal/httpapi) renders the Summary.
func summaryOperationDefinition() (mappings.Resource, error) {
	var kinds []opParam
	for _, k := range []SessionKind{Intake, MedicalAssessment, Preparation, Dosing, Integration} {
		var statuses []opParam
		for _, st := range encounterStatuses {
			statuses = append(statuses, out(st, "integer", "sessions of the kind in this status"))
		}
		kinds = append(kinds, parts(string(k), "the "+string(k)+" sessions by status", statuses...))
	}
	var routes []opParam
	for _, r := range Routes() {
		routes = append(routes, out(string(r), "integer", "administrations given by this route"))
	}
	safety := parts("openSafetyItem", "an open safety item",
		opParam{Name: "kind", Use: "out", Min: 1, Max: "1", Type: "code", Documentation: "undischarged-session | no-driving"},
		opParam{Name: "session", Use: "out", Min: 1, Max: "1", Type: "Reference", Documentation: "the session (Encounter)"},
		out("until", "dateTime", "end of the no-driving period"))
	safety.Max = "*"
	dosing := parts("dosing", "the dosing series",
		out("completed", "integer", "finished dosing sessions"),
		out("recommended", "integer", "the program's planned number, else the clinic's recommendation"),
		out("reached", "boolean", "completed ≥ recommended"))
	dosing.Min = 1
	od := struct {
		ResourceType string    `json:"resourceType"`
		ID           string    `json:"id"`
		URL          string    `json:"url"`
		Version      string    `json:"version"`
		Name         string    `json:"name"`
		Title        string    `json:"title"`
		Status       string    `json:"status"`
		Kind         string    `json:"kind"`
		Publisher    string    `json:"publisher"`
		Description  string    `json:"description"`
		AffectsState bool      `json:"affectsState"`
		Code         string    `json:"code"`
		Resource     []string  `json:"resource"`
		System       bool      `json:"system"`
		Type         bool      `json:"type"`
		Instance     bool      `json:"instance"`
		Parameter    []opParam `json:"parameter"`
	}{
		ResourceType: "OperationDefinition", ID: summaryOperationID, URL: SummaryOperation, Version: "1",
		Name: "KapSummary", Title: "KAP program summary", Status: "active", Kind: "operation", Publisher: "kapfhir",
		Description: "The summary of a ketamine-assisted psychotherapy program (EpisodeOfCare): sessions by kind and status, doses by route, PHQ-9 baseline, latest, change, response and remission, the dosing series, open safety items (docs/kap-rules.md).",
		Code:        "kap-summary", Resource: []string{"EpisodeOfCare"}, Instance: true,
		Parameter: []opParam{
			parts("sessions", "session counts by kind, then status", kinds...),
			parts("dosesByRoute", "administrations given, by route", routes...),
			parts("phq9", "PHQ-9 totals (absent without any)",
				out("count", "integer", "PHQ-9 totals recorded"),
				out("baseline", "integer", "the earliest total"), out("baselineTime", "dateTime", "its time"),
				out("latest", "integer", "the most recent total"), out("latestTime", "dateTime", "its time"),
				out("change", "integer", "latest − baseline"),
				out("percentChange", "decimal", "change / baseline × 100, to 0.1; absent with a baseline of 0"),
				out("response", "boolean", "latest ≤ 50 % of baseline"),
				out("remission", "boolean", "latest < 5")),
			dosing,
			safety,
		},
	}
	b, err := json.Marshal(od)
	if err != nil {
		return mappings.Resource{}, fault.Wrap(err, "OperationDefinition")
	}
	return mappings.Resource{Type: "OperationDefinition", ID: summaryOperationID, JSON: b}, nil
}
