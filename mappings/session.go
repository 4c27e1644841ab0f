package mappings

import (
	"fmt"
	"html"
)

const (
	sysFlagCategory     = "http://terminology.hl7.org/CodeSystem/flag-category"
	sysCarePlanCategory = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
)

// SessionParticipant is a team member taking part in a session.
type SessionParticipant struct {
	MemberID string `json:"memberId"`
	Role     string `json:"role"` // lead | secondary | prescriber | consultant | discharger
}

// Discharge is the end of a dosing session: the client leaves with the
// escort under the no-driving/machinery/work instruction.
type Discharge struct {
	Time             string `json:"time"`
	ReleasedToEscort bool   `json:"releasedToEscort"`
	PerformerID      string `json:"performerId,omitempty"` // who released the client
	// InstructionEnd is computed: Time plus the clinic's no-driving hours.
	InstructionEnd string `json:"instructionEnd,omitempty"`
}

// Session is one meeting of the program (Encounter). A discharged dosing
// session also has the CarePlan <id>-discharge, the Flag <id>-no-driving
// and the Observation <id>-released.
type Session struct {
	ID            string               `json:"id"`
	ProgramID     string               `json:"programId"`
	ClientID      string               `json:"clientId"`
	Kind          string               `json:"kind"`              // intake | medical-assessment | preparation | dosing | integration
	Product       string               `json:"product,omitempty"` // ketamine | esketamine (dosing only)
	Status        string               `json:"status"`
	Start         string               `json:"start,omitempty"`
	End           string               `json:"end,omitempty"`
	Virtual       bool                 `json:"virtual,omitempty"`
	Participants  []SessionParticipant `json:"participants,omitempty"`
	IndicationIDs []string             `json:"indicationIds,omitempty"`
	// EscortID is the escort present at the session (RelatedPerson).
	EscortID  string     `json:"escortId,omitempty"`
	Discharge *Discharge `json:"discharge,omitempty"`
}

var (
	sessionStatuses = []string{"planned", "arrived", "in-progress", "finished", "cancelled", "entered-in-error"}
	productFamilies = []string{"ketamine", "esketamine"}
)

func (t *tables) sessionKind(kind, family string) *sessionKind {
	return find(t.kinds, func(k *sessionKind) bool { return k.Kind == kind && k.Product == family })
}

func (t *tables) participant(role string) *participantRole {
	return find(t.participants, func(p *participantRole) bool { return p.Role == role })
}

func (m *Mapper) checkSession(s Session) error {
	if err := check(
		checkID("id", s.ID, true),
		checkID("programId", s.ProgramID, true),
		checkID("clientId", s.ClientID, true),
		checkEnum("kind", s.Kind, keys(m.t.kinds, func(k *sessionKind) string { return k.Kind }), true),
		checkEnum("status", s.Status, sessionStatuses, true),
		checkDateTime("start", s.Start, false),
		checkDateTime("end", s.End, false),
		checkIDs("indicationIds", s.IndicationIDs),
		checkID("escortId", s.EscortID, false),
	); err != nil {
		return err
	}
	if s.Kind == "dosing" {
		if err := checkEnum("product", s.Product, productFamilies, true); err != nil {
			return err
		}
	} else if s.Product != "" {
		return invalid("product", "product is only given for a dosing session")
	}
	for i, p := range s.Participants {
		e := fmt.Sprintf("participants[%d]", i)
		if err := check(
			checkID(e+".memberId", p.MemberID, true),
			checkEnum(e+".role", p.Role, memberParticipantRoles(m.t), true),
		); err != nil {
			return err
		}
	}
	if d := s.Discharge; d != nil {
		if s.Kind != "dosing" {
			return invalid("discharge", "discharge is recorded for a dosing session only")
		}
		if err := check(
			checkDateTime("discharge.time", d.Time, true),
			checkID("discharge.performerId", d.PerformerID, false),
		); err != nil {
			return err
		}
		if d.ReleasedToEscort && s.EscortID == "" {
			return missing("escortId")
		}
	}
	return nil
}

// memberParticipantRoles are the participant roles of team members (the
// escort is a RelatedPerson, given as escortId).
func memberParticipantRoles(t *tables) []string {
	var out []string
	for _, p := range t.participants {
		if p.Role != "escort" {
			out = append(out, p.Role)
		}
	}
	return out
}

// SessionToFHIR maps a session to a US Core Encounter (§3) typed with the
// local kind code first and the billing code (§3.3); a discharge adds the
// disposition (NUBC 01), the escort participant and the §9 resources. l is
// the program's label set.
func (m *Mapper) SessionToFHIR(s Session, l Labels) ([]Resource, error) {
	if err := m.checkSession(s); err != nil {
		return nil, err
	}
	kind := m.t.sessionKind(s.Kind, s.Product)
	class := Coding{System: sysActCode, Code: "AMB", Display: "ambulatory"}
	if s.Virtual {
		class = Coding{System: sysActCode, Code: "VR", Display: "virtual"}
	}
	enc := encounterRes{
		base:            base{ResourceType: "Encounter", ID: s.ID, Meta: m.meta("us-core-encounter", l)},
		Status:          s.Status,
		Class:           &class,
		Type:            []codeableConcept{{Coding: append([]Coding{m.t.kap(kind.Kap)}, kind.Billing...)}},
		Subject:         ref("Patient", s.ClientID),
		EpisodeOfCare:   []reference{*ref("EpisodeOfCare", s.ProgramID)},
		ReasonReference: refs("Condition", s.IndicationIDs),
	}
	if s.Start != "" || s.End != "" {
		enc.Period = &period{Start: s.Start, End: s.End}
	}
	for _, p := range s.Participants {
		enc.Participant = append(enc.Participant, m.encounterParticipant(p.Role, ref("Practitioner", p.MemberID), nil))
	}
	if s.EscortID != "" {
		var at *period
		if d := s.Discharge; d != nil && d.ReleasedToEscort {
			at = &period{Start: d.Time}
		}
		enc.Participant = append(enc.Participant, m.encounterParticipant("escort", ref("RelatedPerson", s.EscortID), at))
	}
	var e emitter
	if s.Discharge == nil {
		e.add("Encounter", s.ID, enc)
		return e.result()
	}
	d := *s.Discharge
	end, err := addHours(d.Time, m.noDrivingHours)
	if err != nil {
		return nil, invalid("discharge.time", "discharge.time: %v", err)
	}
	if d.InstructionEnd != "" && d.InstructionEnd != end {
		return nil, invalid("discharge.instructionEnd", "instructionEnd is computed (time + %d h = %s); leave it out or give that value", m.noDrivingHours, end)
	}
	enc.Hospitalization = &hospitalization{DischargeDisposition: cc(Coding{System: sysNUBC, Code: "01", Display: "Discharged to Home"})}
	e.add("Encounter", s.ID, enc)

	rule := m.t.kap(kapNoDriving8h)
	instruction := fmt.Sprintf("Do not drive, operate machinery or work until %s (%d hours after discharge).", end, m.noDrivingHours)
	e.add("CarePlan", s.ID+"-discharge", carePlanRes{
		base: base{ResourceType: "CarePlan", ID: s.ID + "-discharge", Meta: m.meta("us-core-careplan", l),
			Text: &narrative{Status: "generated", Div: `<div xmlns="http://www.w3.org/1999/xhtml">` + html.EscapeString(instruction) + `</div>`}},
		Status:    "active",
		Intent:    "plan",
		Category:  []codeableConcept{{Coding: []Coding{{System: sysCarePlanCategory, Code: "assess-plan", Display: "Assessment and Plan of Treatment"}}}},
		Subject:   ref("Patient", s.ClientID),
		Encounter: ref("Encounter", s.ID),
		Period:    &period{Start: d.Time, End: end},
		Activity: []carePlanActivity{{Detail: &activityDetail{
			Code: cc(rule), Status: "scheduled", ScheduledPeriod: &period{Start: d.Time, End: end}, Description: instruction,
		}}},
	})
	e.add("Flag", s.ID+"-no-driving", flagRes{
		base:      base{ResourceType: "Flag", ID: s.ID + "-no-driving", Meta: m.meta("", l)},
		Status:    "active",
		Category:  []codeableConcept{{Coding: []Coding{{System: sysFlagCategory, Code: "safety", Display: "Safety"}}}},
		Code:      cc(m.t.kap(kapNoDrivingFlag)),
		Subject:   ref("Patient", s.ClientID),
		Period:    &period{Start: d.Time, End: end},
		Encounter: ref("Encounter", s.ID),
	})
	obs, err := m.measurementObservations(Measurement{
		ID: s.ID + "-released", ClientID: s.ClientID, SessionID: s.ID, Kind: kapReleased,
		Time: d.Time, PerformerID: d.PerformerID, Finding: ptr(d.ReleasedToEscort), EscortID: s.EscortID,
	}, l)
	if err != nil {
		return nil, err
	}
	for _, o := range obs {
		e.add("Observation", o.ID, o)
	}
	return e.result()
}

func (m *Mapper) encounterParticipant(role string, who *reference, at *period) encounterParticipant {
	p := m.t.participant(role)
	return encounterParticipant{
		Type:       []codeableConcept{{Coding: []Coding{{System: sysParticipType, Code: p.Code, Display: p.Display}}}},
		Period:     at,
		Individual: who,
	}
}

// kindOf reads the session kind of an Encounter type: a kap kind code, else a
// billing code that names exactly one kind.
func (m *Mapper) kindOf(types []codeableConcept) *sessionKind {
	for _, k := range m.t.kinds {
		if anyHas(types, m.t.kapURL, k.Kap) {
			return &k
		}
	}
	for _, k := range m.t.kinds {
		for _, b := range k.Billing {
			if b.System != sysSNOMED && anyHas(types, b.System, b.Code) {
				return &k
			}
		}
	}
	for _, a := range m.t.billingAlias {
		if anyHas(types, a.System, a.Code) {
			return m.t.sessionKind(a.Kind, a.Product)
		}
	}
	return nil
}

// SessionFromFHIR reads an Encounter whose type is a kap session kind (or a
// billing code of exactly one kind: CPT 90791, 90792, 0820T-0822T, HCPCS
// G2082/G2083), with the discharge resources of the group.
func (m *Mapper) SessionFromFHIR(rs []Resource) (Session, bool) {
	g := newGroup(rs)
	enc, ok := first[encounterRes](g, "Encounter")
	if !ok {
		return Session{}, false
	}
	kind := m.kindOf(enc.Type)
	if kind == nil {
		return Session{}, false
	}
	s := Session{
		ID: enc.ID, ClientID: refID(enc.Subject, "Patient"), Kind: kind.Kind, Product: kind.Product, Status: enc.Status,
		Virtual:       enc.Class != nil && enc.Class.System == sysActCode && enc.Class.Code == "VR",
		IndicationIDs: refIDs(enc.ReasonReference, "Condition"),
	}
	if ids := refIDs(enc.EpisodeOfCare, "EpisodeOfCare"); len(ids) > 0 {
		s.ProgramID = ids[0]
	}
	if enc.Period != nil {
		s.Start, s.End = enc.Period.Start, enc.Period.End
	}
	for _, p := range enc.Participant {
		for _, r := range m.t.participants {
			if !anyHas(p.Type, sysParticipType, r.Code) {
				continue
			}
			if r.Role == "escort" {
				s.EscortID = refID(p.Individual, "RelatedPerson")
			} else if id := refID(p.Individual, "Practitioner"); id != "" {
				s.Participants = append(s.Participants, SessionParticipant{MemberID: id, Role: r.Role})
			}
		}
	}
	s.Discharge = m.dischargeOf(g, enc.ID)
	return s, true
}

// dischargeOf finds the discharge of a session in the group: the CarePlan
// with the no-driving activity for the encounter, and the released-to-escort
// Observation.
func (m *Mapper) dischargeOf(g group, encID string) *Discharge {
	var d *Discharge
	for _, cp := range all[carePlanRes](g, "CarePlan") {
		if refID(cp.Encounter, "Encounter") != encID {
			continue
		}
		for _, a := range cp.Activity {
			if a.Detail != nil && a.Detail.Code.has(m.t.kapURL, kapNoDriving8h) && a.Detail.ScheduledPeriod != nil {
				d = &Discharge{Time: a.Detail.ScheduledPeriod.Start, InstructionEnd: a.Detail.ScheduledPeriod.End}
			}
		}
	}
	for _, o := range all[observationRes](g, "Observation") {
		if refID(o.Encounter, "Encounter") != encID || !o.Code.has(m.t.kapURL, kapReleased) || o.ValueBoolean == nil {
			continue
		}
		if d == nil {
			d = &Discharge{Time: o.EffectiveDateTime}
		}
		d.ReleasedToEscort = *o.ValueBoolean
		if len(o.Performer) > 0 {
			d.PerformerID = refID(&o.Performer[0], "Practitioner")
		}
	}
	return d
}
