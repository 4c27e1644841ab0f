package mappings

import (
	"fmt"
	"strings"
)

const sysV20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

// Name is a person's name.
type Name struct {
	Family string   `json:"family"`
	Given  []string `json:"given,omitempty"`
}

// Identifier is a business identifier; MRN marks the medical record number.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
	MRN    bool   `json:"mrn,omitempty"`
}

// Client is a person in KAP treatment (Patient).
type Client struct {
	ID          string       `json:"id"`
	Name        Name         `json:"name"`
	Gender      string       `json:"gender"` // male | female | other | unknown
	BirthDate   string       `json:"birthDate,omitempty"`
	Identifiers []Identifier `json:"identifiers,omitempty"`
	Phone       string       `json:"phone,omitempty"`
	Email       string       `json:"email,omitempty"`
}

// TeamMember is a clinician of the care team (Practitioner + PractitionerRole
// with id <id>-role).
type TeamMember struct {
	ID          string       `json:"id"`
	Name        Name         `json:"name"`
	Role        string       `json:"role"`               // psychotherapist | prescriber | nurse
	Taxonomy    string       `json:"taxonomy,omitempty"` // NUCC code allowed for the role
	Identifiers []Identifier `json:"identifiers,omitempty"`
	Phone       string       `json:"phone,omitempty"`
	Email       string       `json:"email,omitempty"`
}

// Escort is the trusted person who takes the client home (RelatedPerson).
type Escort struct {
	ID           string `json:"id"`
	ClientID     string `json:"clientId"`
	Name         Name   `json:"name"`
	Relationship string `json:"relationship"` // friend | spouse | family-member
	Phone        string `json:"phone,omitempty"`
}

var genders = []string{"male", "female", "other", "unknown"}

func checkName(expr string, n Name) error {
	if n.Family == "" {
		return missing(expr + ".family")
	}
	return nil
}

func checkIdentifiers(expr string, ids []Identifier) error {
	if len(ids) == 0 {
		return missing(expr)
	}
	for i, id := range ids {
		e := fmt.Sprintf("%s[%d]", expr, i)
		if id.System == "" {
			return missing(e + ".system")
		}
		if id.Value == "" {
			return missing(e + ".value")
		}
	}
	return nil
}

func toIdentifiers(ids []Identifier) []identifier {
	var out []identifier
	for _, id := range ids {
		i := identifier{System: id.System, Value: id.Value}
		if id.MRN {
			i.Type = cc(Coding{System: sysV20203, Code: "MR", Display: "Medical record number"})
		}
		out = append(out, i)
	}
	return out
}

func fromIdentifiers(ids []identifier) []Identifier {
	var out []Identifier
	for _, id := range ids {
		if id.System == "" || id.Value == "" {
			continue
		}
		out = append(out, Identifier{System: id.System, Value: id.Value, MRN: id.Type.has(sysV20203, "MR")})
	}
	return out
}

func toNames(n Name) []humanName { return []humanName{{Family: n.Family, Given: n.Given}} }

func fromNames(ns []humanName) Name {
	if len(ns) == 0 {
		return Name{}
	}
	return Name{Family: ns[0].Family, Given: ns[0].Given}
}

func toTelecom(phone, email string) []contactPoint {
	var out []contactPoint
	if phone != "" {
		out = append(out, contactPoint{System: "phone", Value: phone})
	}
	if email != "" {
		out = append(out, contactPoint{System: "email", Value: email})
	}
	return out
}

func fromTelecom(cps []contactPoint) (phone, email string) {
	for _, c := range cps {
		switch {
		case c.System == "phone" && phone == "":
			phone = c.Value
		case c.System == "email" && email == "":
			email = c.Value
		}
	}
	return phone, email
}

// ClientToFHIR maps a client to a US Core Patient. Demographics carry the
// confidentiality label N (§10.2): the clinical resources carry R.
func (m *Mapper) ClientToFHIR(c Client) ([]Resource, error) {
	if err := check(
		checkID("id", c.ID, true),
		checkName("name", c.Name),
		checkEnum("gender", c.Gender, genders, true),
		checkDate("birthDate", c.BirthDate, false),
		checkIdentifiers("identifiers", c.Identifiers),
	); err != nil {
		return nil, err
	}
	p := patientRes{
		base:       base{ResourceType: "Patient", ID: c.ID, Meta: &meta{Profile: []string{usCore("us-core-patient")}, Security: m.t.secDemographics}},
		Identifier: toIdentifiers(c.Identifiers),
		Name:       toNames(c.Name),
		Telecom:    toTelecom(c.Phone, c.Email),
		Gender:     c.Gender,
		BirthDate:  c.BirthDate,
	}
	var e emitter
	e.add("Patient", c.ID, p)
	return e.result()
}

// ClientFromFHIR reads a Patient: every Patient fits.
func (m *Mapper) ClientFromFHIR(rs []Resource) (Client, bool) {
	p, ok := first[patientRes](newGroup(rs), "Patient")
	if !ok {
		return Client{}, false
	}
	c := Client{ID: p.ID, Name: fromNames(p.Name), Gender: p.Gender, BirthDate: p.BirthDate, Identifiers: fromIdentifiers(p.Identifier)}
	c.Phone, c.Email = fromTelecom(p.Telecom)
	return c, true
}

func (t *tables) teamRole(role string) *teamRole {
	return find(t.team, func(r *teamRole) bool { return r.Role == role })
}

// TeamMemberToFHIR maps a team member to a US Core Practitioner and a
// PractitionerRole coded with the local role and the NUCC taxonomy.
func (m *Mapper) TeamMemberToFHIR(tm TeamMember) ([]Resource, error) {
	if err := check(
		checkID("id", tm.ID, true),
		checkName("name", tm.Name),
		checkEnum("role", tm.Role, roleKeys(m.t), true),
		checkIdentifiers("identifiers", tm.Identifiers),
	); err != nil {
		return nil, err
	}
	role := m.t.teamRole(tm.Role)
	codes := []Coding{m.t.kap(role.Kap)}
	if tm.Taxonomy != "" {
		tax := find(role.Taxonomies, func(c *Coding) bool { return c.Code == tm.Taxonomy })
		if tax == nil {
			return nil, invalid("taxonomy", "taxonomy %q is not a NUCC code for the role %s (allowed: %s)", tm.Taxonomy, tm.Role, strings.Join(keys(role.Taxonomies, func(c *Coding) string { return c.Code }), ", "))
		}
		codes = append(codes, Coding{System: sysNUCC, Code: tax.Code, Display: tax.Display})
	}
	telecom := toTelecom(tm.Phone, tm.Email)
	var e emitter
	e.add("Practitioner", tm.ID, practitionerRes{
		base:       base{ResourceType: "Practitioner", ID: tm.ID, Meta: &meta{Profile: []string{usCore("us-core-practitioner")}}},
		Identifier: toIdentifiers(tm.Identifiers),
		Active:     ptr(true),
		Name:       toNames(tm.Name),
		Telecom:    telecom,
	})
	pr := practitionerRoleRes{
		base:         base{ResourceType: "PractitionerRole", ID: tm.ID + "-role", Meta: &meta{}},
		Active:       ptr(true),
		Practitioner: ref("Practitioner", tm.ID),
		Code:         []codeableConcept{{Coding: codes}},
		Telecom:      telecom,
	}
	// US Core PractitionerRole requires contact details (pd-1).
	if len(telecom) > 0 {
		pr.Meta.Profile = []string{usCore("us-core-practitionerrole")}
	} else {
		pr.Meta = nil
	}
	e.add("PractitionerRole", pr.ID, pr)
	return e.result()
}

func roleKeys(t *tables) []string {
	return keys(t.team, func(r *teamRole) string { return r.Role })
}

// TeamMemberFromFHIR reads a Practitioner and the PractitionerRole of the
// group that refers to it. It fits when the role carries a kap role code or
// a NUCC code of the team table.
func (m *Mapper) TeamMemberFromFHIR(rs []Resource) (TeamMember, bool) {
	g := newGroup(rs)
	p, ok := first[practitionerRes](g, "Practitioner")
	if !ok {
		return TeamMember{}, false
	}
	tm := TeamMember{ID: p.ID, Name: fromNames(p.Name), Identifiers: fromIdentifiers(p.Identifier)}
	tm.Phone, tm.Email = fromTelecom(p.Telecom)
	for _, pr := range all[practitionerRoleRes](g, "PractitionerRole") {
		if refID(pr.Practitioner, "Practitioner") != p.ID {
			continue
		}
		for _, r := range m.t.team {
			kap, nucc := anyHas(pr.Code, m.t.kapURL, r.Kap), anyCode(pr.Code, sysNUCC)
			tax := find(r.Taxonomies, func(c *Coding) bool { return c.Code == nucc })
			if kap || tax != nil {
				tm.Role = r.Role
				if tax != nil {
					tm.Taxonomy = tax.Code
				}
				return tm, true
			}
		}
	}
	return TeamMember{}, false
}

func relationshipKeys(t *tables) []string {
	return keys(t.relations, func(r *relationship) string { return r.Relationship })
}

const escortText = "Designated driver / escort"

// EscortToFHIR maps the escort to a US Core RelatedPerson (§9).
func (m *Mapper) EscortToFHIR(es Escort, l Labels) ([]Resource, error) {
	if err := check(
		checkID("id", es.ID, true),
		checkID("clientId", es.ClientID, true),
		checkName("name", es.Name),
		checkEnum("relationship", es.Relationship, relationshipKeys(m.t), true),
	); err != nil {
		return nil, err
	}
	rel := find(m.t.relations, func(r *relationship) bool { return r.Relationship == es.Relationship })
	var e emitter
	e.add("RelatedPerson", es.ID, relatedPersonRes{
		base:         base{ResourceType: "RelatedPerson", ID: es.ID, Meta: m.meta("us-core-relatedperson", l)},
		Active:       ptr(true),
		Patient:      ref("Patient", es.ClientID),
		Relationship: []codeableConcept{{Coding: []Coding{{System: sysRoleCode, Code: rel.Code, Display: rel.Display}}, Text: escortText}},
		Name:         toNames(es.Name),
		Telecom:      toTelecom(es.Phone, ""),
	})
	return e.result()
}

// EscortFromFHIR reads a RelatedPerson. It fits when its relationship is one
// of the escort relationships (v3-RoleCode).
func (m *Mapper) EscortFromFHIR(rs []Resource) (Escort, bool) {
	rp, ok := first[relatedPersonRes](newGroup(rs), "RelatedPerson")
	if !ok {
		return Escort{}, false
	}
	for _, r := range m.t.relations {
		if anyHas(rp.Relationship, sysRoleCode, r.Code) {
			es := Escort{ID: rp.ID, ClientID: refID(rp.Patient, "Patient"), Name: fromNames(rp.Name), Relationship: r.Relationship}
			es.Phone, _ = fromTelecom(rp.Telecom)
			return es, true
		}
	}
	return Escort{}, false
}
