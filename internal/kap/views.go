package kap

import (
	"context"
	"net/url"

	"github.com/kapfhir/kapfhir/mappings"
)

// The views: which FHIR resources each KAP type is read from.

var (
	clientView     = view[mappings.Client]{typ: "Patient", from: (*mappings.Mapper).ClientFromFHIR}
	escortView     = view[mappings.Escort]{typ: "RelatedPerson", from: (*mappings.Mapper).EscortFromFHIR}
	consentView    = view[mappings.Consent]{typ: "Consent", from: (*mappings.Mapper).ConsentFromFHIR}
	intentionView  = view[mappings.Intention]{typ: "Goal", from: (*mappings.Mapper).IntentionFromFHIR}
	prescriptView  = view[mappings.Prescription]{typ: "MedicationRequest", from: (*mappings.Mapper).PrescriptionFromFHIR}
	administerView = view[mappings.Administration]{typ: "MedicationAdministration", from: (*mappings.Mapper).AdministrationFromFHIR}
	teamView       = view[mappings.TeamMember]{typ: "Practitioner", from: (*mappings.Mapper).TeamMemberFromFHIR, with: teamCompanions}
	programView    = view[mappings.Program]{typ: "EpisodeOfCare", from: (*mappings.Mapper).ProgramFromFHIR, with: programCompanions}
	sessionView    = view[mappings.Session]{typ: "Encounter", from: (*mappings.Mapper).SessionFromFHIR, with: sessionCompanions}
	measureView    = view[mappings.Measurement]{typ: "Observation", from: (*mappings.Mapper).MeasurementFromFHIR, with: measurementCompanions}
)

// teamCompanions: the PractitionerRoles of the page's Practitioners.
func teamCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	rs, err := s.companions(ctx, "PractitionerRole", "practitioner", refOf(page), nil)
	return rs, nil, err
}

// programCompanions: the indications (Conditions) and CareTeams the
// EpisodeOfCares refer to, and the clients' dosing-plan ServiceRequests.
func programCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	var out []mappings.Resource
	for _, c := range []struct{ typ, param string }{{"Condition", "_id"}, {"CareTeam", "_id"}} {
		rs, err := s.companions(ctx, c.typ, c.param, refsTo(page, c.typ, true), nil)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rs...)
	}
	plans, err := s.companions(ctx, "ServiceRequest", "patient", refsTo(page, "Patient", false),
		url.Values{"code": {s.m.KapSystem() + "|" + string(Dosing)}})
	return append(out, plans...), nil, err
}

// sessionCompanions: the discharge CarePlans and released-to-escort
// Observations of the page's Encounters.
func sessionCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	encs := refOf(page)
	plans, err := s.companions(ctx, "CarePlan", "encounter", encs, nil)
	if err != nil {
		return nil, nil, err
	}
	released, err := s.companions(ctx, "Observation", "encounter", encs, url.Values{"code": {s.m.KapSystem() + "|released-to-escort"}})
	return append(plans, released...), nil, err
}

// measurementCompanions: the members of the page's panels (items and
// totals), which are not measurements of their own: the panels that list
// a page's Observation as a member drop it.
func measurementCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	members, err := s.companions(ctx, "Observation", "_id", refsTo(page, "Observation", true), nil)
	if err != nil {
		return nil, nil, err
	}
	panels, err := s.companions(ctx, "Observation", "has-member", refOf(page), nil)
	if err != nil {
		return nil, nil, err
	}
	drop := map[string]bool{}
	for _, ref := range refsTo(panels, "Observation", false) {
		drop[ref] = true
	}
	return members, drop, nil
}
