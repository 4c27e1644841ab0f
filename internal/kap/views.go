package kap

import (
	"context"

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
	rs, err := s.companions(ctx, "PractitionerRole", "practitioner", refOf(page))
	return rs, nil, err
}

// programCompanions: the indications (Conditions) and CareTeams the
// EpisodeOfCares refer to, and their dosing plans (ServiceRequest
// <id>-dosing-plan), all read by id.
func programCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	var plans []string
	for _, p := range page {
		plans = append(plans, p.ID+"-dosing-plan")
	}
	var out []mappings.Resource
	for _, c := range []struct {
		typ string
		ids []string
	}{{"Condition", refsTo(page, "Condition", true)}, {"CareTeam", refsTo(page, "CareTeam", true)}, {"ServiceRequest", plans}} {
		rs, err := s.byID(ctx, c.typ, c.ids)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rs...)
	}
	return out, nil, nil
}

// sessionCompanions: the discharge CarePlan <id>-discharge and the
// released-to-escort Observation <id>-released of the page's Encounters,
// read by id.
func sessionCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	var plans, released []string
	for _, p := range page {
		plans, released = append(plans, p.ID+"-discharge"), append(released, p.ID+"-released")
	}
	out, err := s.byID(ctx, "CarePlan", plans)
	if err != nil {
		return nil, nil, err
	}
	rs, err := s.byID(ctx, "Observation", released)
	return append(out, rs...), nil, err
}

// measurementCompanions: the members of the page's panels (items and
// totals), which are not measurements of their own: the panels that list
// a page's Observation as a member drop it.
func measurementCompanions(ctx context.Context, s *Service, page []mappings.Resource) ([]mappings.Resource, map[string]bool, error) {
	members, err := s.byID(ctx, "Observation", refsTo(page, "Observation", true))
	if err != nil {
		return nil, nil, err
	}
	panels, err := s.companions(ctx, "Observation", "has-member", refOf(page))
	if err != nil {
		return nil, nil, err
	}
	drop := map[string]bool{}
	for _, ref := range refsTo(panels, "Observation", false) {
		drop[ref] = true
	}
	return members, drop, nil
}
