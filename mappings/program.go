package mappings

import "fmt"

const (
	sysDiagnosisRole  = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
	sysCondCategory   = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysCondClinical   = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVerStatus  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	psychotherapySCT  = "75516001"
	psychotherapyText = "Psychotherapy (regime/therapy)"
	counselingSCT     = "409063005"
)

// Indication is a reason for the program (Condition).
type Indication struct {
	ID         string `json:"id"`         // the Condition id
	Indication string `json:"indication"` // key of the indications table
	// TreatmentResistant records TRD on a depression indication: the
	// episode stays coded, text and kap#trd are added (§6).
	TreatmentResistant bool   `json:"treatmentResistant,omitempty"`
	Role               string `json:"role,omitempty"` // chief-complaint | comorbidity
	Onset              string `json:"onset,omitempty"`
	Note               string `json:"note,omitempty"`
}

// StatusChange is one row of the program's status history.
type StatusChange struct {
	Status string `json:"status"`
	Start  string `json:"start"`
	End    string `json:"end,omitempty"`
}

// ProgramMember is a team member's place in the program's care team.
type ProgramMember struct {
	MemberID string `json:"memberId"`
	Role     string `json:"role"` // psychotherapist | prescriber | nurse
}

// Program is an enrollment in a KAP course (EpisodeOfCare with its
// Conditions, CareTeam <id>-team and, with planned dosing sessions, the
// ServiceRequest <id>-dosing-plan).
type Program struct {
	ID                    string          `json:"id"`
	ClientID              string          `json:"clientId"`
	Status                string          `json:"status"`
	StatusHistory         []StatusChange  `json:"statusHistory,omitempty"`
	Start                 string          `json:"start"`
	End                   string          `json:"end,omitempty"`
	Indications           []Indication    `json:"indications,omitempty"`
	CareManagerID         string          `json:"careManagerId,omitempty"`
	Team                  []ProgramMember `json:"team,omitempty"`
	PlannedDosingSessions int             `json:"plannedDosingSessions,omitempty"`
}

var (
	programStatuses = []string{"planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"}
	diagnosisRoles  = map[string]Coding{
		"chief-complaint": {System: sysDiagnosisRole, Code: "CC", Display: "Chief complaint"},
		"comorbidity":     {System: sysDiagnosisRole, Code: "CM", Display: "Comorbidity diagnosis"},
	}
)

// ProgramLabels is the label set of a program: the labels of its
// indications propagate to the program and its sessions (§10.2). Unknown
// indication keys add nothing (ProgramToFHIR rejects them).
func (m *Mapper) ProgramLabels(p Program) Labels {
	var l Labels
	for _, in := range p.Indications {
		if row := m.t.indication(in.Indication); row != nil && m.t.isSUD(row.ICD10) {
			l.SubstanceUse = true
		}
	}
	return l
}

func (m *Mapper) checkProgram(p Program) error {
	if err := check(
		checkID("id", p.ID, true),
		checkID("clientId", p.ClientID, true),
		checkEnum("status", p.Status, programStatuses, true),
		checkWhen("start", p.Start, true),
		checkWhen("end", p.End, false),
		checkID("careManagerId", p.CareManagerID, false),
	); err != nil {
		return err
	}
	for i, s := range p.StatusHistory {
		e := fmt.Sprintf("statusHistory[%d]", i)
		if err := check(
			checkEnum(e+".status", s.Status, programStatuses, true),
			checkWhen(e+".start", s.Start, true),
			checkWhen(e+".end", s.End, false),
		); err != nil {
			return err
		}
	}
	for i, in := range p.Indications {
		e := fmt.Sprintf("indications[%d]", i)
		if err := check(
			checkID(e+".id", in.ID, true),
			checkEnum(e+".indication", in.Indication, indicationKeys(m.t), true),
			checkEnum(e+".role", in.Role, mapKeys(diagnosisRoles), false),
			checkWhen(e+".onset", in.Onset, false),
		); err != nil {
			return err
		}
		if in.TreatmentResistant && !m.t.indication(in.Indication).Depression {
			return invalid(e+".treatmentResistant", "treatmentResistant applies to a depression indication only")
		}
	}
	for i, tm := range p.Team {
		e := fmt.Sprintf("team[%d]", i)
		if err := check(
			checkID(e+".memberId", tm.MemberID, true),
			checkEnum(e+".role", tm.Role, roleKeys(m.t), true),
		); err != nil {
			return err
		}
	}
	if p.PlannedDosingSessions < 0 {
		return invalid("plannedDosingSessions", "plannedDosingSessions must not be negative")
	}
	return nil
}

// ProgramToFHIR maps a program to its EpisodeOfCare (§2), a US Core
// Condition per indication (§6), the US Core CareTeam and, when dosing
// sessions are planned, a US Core ServiceRequest for the series (§8).
func (m *Mapper) ProgramToFHIR(p Program) ([]Resource, error) {
	if err := m.checkProgram(p); err != nil {
		return nil, err
	}
	l := m.ProgramLabels(p)
	var e emitter
	eoc := episodeOfCareRes{
		base:   base{ResourceType: "EpisodeOfCare", ID: p.ID, Meta: m.meta("", l)},
		Status: p.Status,
		Type: []codeableConcept{
			{Coding: []Coding{m.t.kap(kapProgram)}},
			{Coding: []Coding{{System: sysSNOMED, Code: psychotherapySCT, Display: psychotherapyText}}},
		},
		Patient:     ref("Patient", p.ClientID),
		Period:      &period{Start: p.Start, End: p.End},
		CareManager: ref("Practitioner", p.CareManagerID),
	}
	for _, s := range p.StatusHistory {
		eoc.StatusHistory = append(eoc.StatusHistory, statusHistory{Status: s.Status, Period: period{Start: s.Start, End: s.End}})
	}
	var conditions []string
	for i, in := range p.Indications {
		d := eocDiagnosis{Condition: *ref("Condition", in.ID), Rank: i + 1}
		if r, ok := diagnosisRoles[in.Role]; ok {
			d.Role = cc(r)
		}
		eoc.Diagnosis = append(eoc.Diagnosis, d)
		conditions = append(conditions, in.ID)
	}
	if len(p.Team) > 0 {
		eoc.Team = []reference{*ref("CareTeam", p.ID+"-team")}
	}
	e.add("EpisodeOfCare", p.ID, eoc)
	for _, in := range p.Indications {
		e.add("Condition", in.ID, m.condition(p, in))
	}
	if len(p.Team) > 0 {
		team := careTeamRes{
			base:    base{ResourceType: "CareTeam", ID: p.ID + "-team", Meta: m.meta("us-core-careteam", l)},
			Status:  careTeamStatus(p.Status),
			Subject: ref("Patient", p.ClientID),
		}
		for _, tm := range p.Team {
			team.Participant = append(team.Participant, careTeamParticipant{
				Role:   []codeableConcept{{Coding: []Coding{m.t.kap(m.t.teamRole(tm.Role).Kap)}}},
				Member: ref("Practitioner", tm.MemberID),
			})
		}
		e.add("CareTeam", team.ID, team)
	}
	if p.PlannedDosingSessions > 0 {
		dosing := find(m.t.kinds, func(k *sessionKind) bool { return k.Kind == "dosing" })
		e.add("ServiceRequest", p.ID+"-dosing-plan", serviceRequestRes{
			base:             base{ResourceType: "ServiceRequest", ID: p.ID + "-dosing-plan", Meta: m.meta("us-core-servicerequest", l)},
			Status:           serviceRequestStatus(p.Status),
			Intent:           "order",
			Category:         []codeableConcept{{Coding: []Coding{{System: sysSNOMED, Code: counselingSCT, Display: "Counseling (procedure)"}}}},
			Code:             cc(m.t.kap(dosing.Kap)),
			Subject:          ref("Patient", p.ClientID),
			OccurrenceTiming: &timing{Repeat: &timingRepeat{Count: p.PlannedDosingSessions}},
			AuthoredOn:       p.Start,
			Requester:        ref("Practitioner", p.CareManagerID),
			ReasonReference:  refs("Condition", conditions),
			SupportingInfo:   []reference{*ref("EpisodeOfCare", p.ID)},
		})
	}
	return e.result()
}

func careTeamStatus(program string) string {
	switch program {
	case "planned", "waitlist":
		return "proposed"
	case "onhold":
		return "suspended"
	case "finished", "cancelled":
		return "inactive"
	case "entered-in-error":
		return "entered-in-error"
	}
	return "active"
}

func serviceRequestStatus(program string) string {
	switch program {
	case "planned", "waitlist":
		return "draft"
	case "onhold":
		return "on-hold"
	case "finished":
		return "completed"
	case "cancelled":
		return "revoked"
	case "entered-in-error":
		return "entered-in-error"
	}
	return "active"
}

func (m *Mapper) condition(p Program, in Indication) conditionRes {
	row := m.t.indication(in.Indication)
	code := &codeableConcept{Coding: []Coding{{System: sysICD10CM, Code: row.ICD10, Display: row.ICD10Display}}, Text: row.Text}
	if row.SNOMED != "" {
		code.Coding = append(code.Coding, Coding{System: sysSNOMED, Code: row.SNOMED, Display: row.SNOMEDDisplay})
	}
	if in.TreatmentResistant {
		trd := m.t.kap(kapTRD)
		code.Coding = append(code.Coding, trd)
		code.Text = trd.Display
	}
	c := conditionRes{
		base:               base{ResourceType: "Condition", ID: in.ID, Meta: m.meta("us-core-condition-problems-health-concerns", Labels{SubstanceUse: m.t.isSUD(row.ICD10)})},
		ClinicalStatus:     cc(Coding{System: sysCondClinical, Code: "active", Display: "Active"}),
		VerificationStatus: cc(Coding{System: sysCondVerStatus, Code: "confirmed", Display: "Confirmed"}),
		Category:           []codeableConcept{{Coding: []Coding{{System: sysCondCategory, Code: "problem-list-item", Display: "Problem List Item"}}}},
		Code:               code,
		Subject:            ref("Patient", p.ClientID),
		OnsetDateTime:      in.Onset,
		RecordedDate:       p.Start,
	}
	if in.Note != "" {
		c.Note = []annotation{{Text: in.Note}}
	}
	return c
}

// indicationOf reads a Condition's code into an indication key: the
// ICD-10-CM code decides, else the SNOMED code.
func (m *Mapper) indicationOf(c *codeableConcept) *indication {
	if icd := c.code(sysICD10CM); icd != "" {
		if row := find(m.t.indications, func(r *indication) bool { return r.ICD10 == icd }); row != nil {
			return row
		}
	}
	if sct := c.code(sysSNOMED); sct != "" {
		return find(m.t.indications, func(r *indication) bool { return r.SNOMED == sct })
	}
	return nil
}

// ProgramFromFHIR reads an EpisodeOfCare typed kap#kap-program, with the
// Conditions, CareTeam and dosing-plan ServiceRequest of the group. Conditions
// whose codes are not in the indications table are left out.
func (m *Mapper) ProgramFromFHIR(rs []Resource) (Program, bool) {
	g := newGroup(rs)
	eoc, ok := first[episodeOfCareRes](g, "EpisodeOfCare")
	if !ok || !anyHas(eoc.Type, m.t.kapURL, kapProgram) {
		return Program{}, false
	}
	p := Program{ID: eoc.ID, ClientID: refID(eoc.Patient, "Patient"), Status: eoc.Status, CareManagerID: refID(eoc.CareManager, "Practitioner")}
	if eoc.Period != nil {
		p.Start, p.End = eoc.Period.Start, eoc.Period.End
	}
	for _, s := range eoc.StatusHistory {
		p.StatusHistory = append(p.StatusHistory, StatusChange{Status: s.Status, Start: s.Period.Start, End: s.Period.End})
	}
	for _, d := range eoc.Diagnosis {
		c, ok := resolve[conditionRes](g, "Condition", &d.Condition)
		if !ok {
			continue
		}
		row := m.indicationOf(c.Code)
		if row == nil {
			continue
		}
		in := Indication{ID: c.ID, Indication: row.Indication, TreatmentResistant: c.Code.has(m.t.kapURL, kapTRD), Onset: c.OnsetDateTime}
		for k, r := range diagnosisRoles {
			if d.Role.has(r.System, r.Code) {
				in.Role = k
			}
		}
		if len(c.Note) > 0 {
			in.Note = c.Note[0].Text
		}
		p.Indications = append(p.Indications, in)
	}
	for i := range eoc.Team {
		team, ok := resolve[careTeamRes](g, "CareTeam", &eoc.Team[i])
		if !ok {
			continue
		}
		for _, pt := range team.Participant {
			for _, r := range m.t.team {
				if id := refID(pt.Member, "Practitioner"); id != "" && anyHas(pt.Role, m.t.kapURL, r.Kap) {
					p.Team = append(p.Team, ProgramMember{MemberID: id, Role: r.Role})
				}
			}
		}
	}
	for _, sr := range all[serviceRequestRes](g, "ServiceRequest") {
		if contains(refIDs(sr.SupportingInfo, "EpisodeOfCare"), eoc.ID) && sr.Code.has(m.t.kapURL, "dosing") && sr.OccurrenceTiming != nil && sr.OccurrenceTiming.Repeat != nil {
			p.PlannedDosingSessions = sr.OccurrenceTiming.Repeat.Count
		}
	}
	return p, true
}

func indicationKeys(t *tables) []string {
	return keys(t.indications, func(r *indication) string { return r.Indication })
}
