package mappings

import "fmt"

const (
	sysConsentScope   = "http://terminology.hl7.org/CodeSystem/consentscope"
	sysConsentPolicy  = "http://terminology.hl7.org/CodeSystem/consentpolicycodes"
	sysActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysGoalCategory   = "http://terminology.hl7.org/CodeSystem/goal-category"
	recipientRoleCode = "IRCP"
)

// Consent is a signed consent: to treatment, to therapeutic touch during
// dosing (separate, revocable alone), or to release of information.
type Consent struct {
	ID       string `json:"id"`
	ClientID string `json:"clientId"`
	Kind     string `json:"kind"`     // treatment | therapeutic-touch | release-of-information
	Status   string `json:"status"`   // draft | proposed | active | rejected | inactive | entered-in-error
	Decision string `json:"decision"` // permit | deny
	DateTime string `json:"dateTime"`
	Start    string `json:"start,omitempty"`
	End      string `json:"end,omitempty"`
	// DocumentID is the signed form (DocumentReference).
	DocumentID string `json:"documentId,omitempty"`
	// RecipientID (Organization) and Purposes apply to a release of
	// information.
	RecipientID string   `json:"recipientId,omitempty"`
	Purposes    []string `json:"purposes,omitempty"` // treatment | payment | operations
}

// Intention is a goal the client sets in preparation (Goal), in the client's
// words.
type Intention struct {
	ID            string   `json:"id"`
	ClientID      string   `json:"clientId"`
	Text          string   `json:"text"`
	Status        string   `json:"status"` // proposed | planned | accepted | active | on-hold | completed | cancelled | entered-in-error | rejected
	Start         string   `json:"start,omitempty"`
	IndicationIDs []string `json:"indicationIds,omitempty"`
}

var (
	consentStatuses = []string{"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
	goalStatuses    = []string{"proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled", "entered-in-error", "rejected"}
)

func (m *Mapper) checkConsent(c Consent) error {
	if err := check(
		checkID("id", c.ID, true),
		checkID("clientId", c.ClientID, true),
		checkEnum("kind", c.Kind, keys(m.t.consents, func(k *consentKind) string { return k.Consent }), true),
		checkEnum("status", c.Status, consentStatuses, true),
		checkEnum("decision", c.Decision, []string{"permit", "deny"}, true),
		checkDateTime("dateTime", c.DateTime, true),
		checkWhen("start", c.Start, false),
		checkWhen("end", c.End, false),
		checkID("documentId", c.DocumentID, false),
		checkID("recipientId", c.RecipientID, false),
	); err != nil {
		return err
	}
	kind := find(m.t.consents, func(k *consentKind) bool { return k.Consent == c.Kind })
	if kind.PolicyRule == nil && (c.RecipientID != "" || c.Purposes != nil) {
		return invalid("recipientId", "recipientId and purposes apply to a release of information only")
	}
	for i, p := range c.Purposes {
		if err := checkEnum(fmt.Sprintf("purposes[%d]", i), p, keys(m.t.purposes, func(x *purpose) string { return x.Purpose }), true); err != nil {
			return err
		}
	}
	return nil
}

// ConsentToFHIR maps a consent to a Consent resource (§7, no US Core
// profile): scope and LOINC category per kind, a policy (a local policy URI
// for treatment consents, HIPAA authorization for a release), the provision
// with its period, kap#therapeutic-touch code, recipient and purposes. l is
// the program's label set.
func (m *Mapper) ConsentToFHIR(c Consent, l Labels) ([]Resource, error) {
	if err := m.checkConsent(c); err != nil {
		return nil, err
	}
	kind := find(m.t.consents, func(k *consentKind) bool { return k.Consent == c.Kind })
	res := consentRes{
		base:            base{ResourceType: "Consent", ID: c.ID, Meta: m.meta("", l)},
		Status:          c.Status,
		Scope:           cc(Coding{System: sysConsentScope, Code: kind.Scope.Code, Display: kind.Scope.Display}),
		Category:        []codeableConcept{{Coding: []Coding{{System: sysLOINC, Code: kind.Category.Code, Display: kind.Category.Display}}}},
		Patient:         ref("Patient", c.ClientID),
		DateTime:        c.DateTime,
		SourceReference: ref("DocumentReference", c.DocumentID),
		Provision:       &consentProvision{Type: c.Decision},
	}
	if kind.PolicyRule != nil {
		res.PolicyRule = cc(Coding{System: sysConsentPolicy, Code: kind.PolicyRule.Code, Display: kind.PolicyRule.Display})
	} else {
		res.Policy = []consentPolicy{{URI: kind.Policy}}
	}
	if c.Start != "" || c.End != "" {
		res.Provision.Period = &period{Start: c.Start, End: c.End}
	}
	if c.RecipientID != "" {
		res.Provision.Actor = []consentActor{{
			Role:      *cc(Coding{System: sysParticipType, Code: recipientRoleCode, Display: "information recipient"}),
			Reference: *ref("Organization", c.RecipientID),
		}}
	}
	for _, p := range c.Purposes {
		row := find(m.t.purposes, func(x *purpose) bool { return x.Purpose == p })
		res.Provision.Purpose = append(res.Provision.Purpose, Coding{System: sysActReason, Code: row.Code, Display: row.Display})
	}
	if kind.Provision != "" {
		res.Provision.Code = []codeableConcept{*cc(m.t.kap(kind.Provision))}
	}
	var e emitter
	e.add("Consent", c.ID, res)
	return e.result()
}

// ConsentFromFHIR reads a Consent whose scope and category are those of a
// consent kind; a treatment-scope consent with the kap#therapeutic-touch
// provision code is the touch consent.
func (m *Mapper) ConsentFromFHIR(rs []Resource) (Consent, bool) {
	res, ok := first[consentRes](newGroup(rs), "Consent")
	if !ok || res.Provision == nil {
		return Consent{}, false
	}
	var kind *consentKind
	for i := range m.t.consents {
		k := &m.t.consents[i]
		touch := k.Provision != "" && anyHas(res.Provision.Code, m.t.kapURL, k.Provision)
		if res.Scope.has(sysConsentScope, k.Scope.Code) && anyHas(res.Category, sysLOINC, k.Category.Code) && (touch || k.Provision == "") {
			kind = k
			if touch {
				break
			}
		}
	}
	if kind == nil {
		return Consent{}, false
	}
	c := Consent{
		ID: res.ID, ClientID: refID(res.Patient, "Patient"), Kind: kind.Consent, Status: res.Status,
		Decision: res.Provision.Type, DateTime: res.DateTime, DocumentID: refID(res.SourceReference, "DocumentReference"),
	}
	if p := res.Provision.Period; p != nil {
		c.Start, c.End = p.Start, p.End
	}
	for _, a := range res.Provision.Actor {
		if a.Role.has(sysParticipType, recipientRoleCode) {
			c.RecipientID = refID(&a.Reference, "Organization")
		}
	}
	for _, pc := range res.Provision.Purpose {
		if row := find(m.t.purposes, func(x *purpose) bool { return pc.System == sysActReason && x.Code == pc.Code }); row != nil {
			c.Purposes = append(c.Purposes, row.Purpose)
		}
	}
	return c, true
}

// IntentionToFHIR maps an intention to a US Core Goal (§8): behavioral
// category, the client's words as description.text, expressed by the client,
// addressing the program's indications. l is the program's label set.
func (m *Mapper) IntentionToFHIR(in Intention, l Labels) ([]Resource, error) {
	if err := check(
		checkID("id", in.ID, true),
		checkID("clientId", in.ClientID, true),
		func() error {
			if in.Text == "" {
				return missing("text")
			}
			return nil
		}(),
		checkEnum("status", in.Status, goalStatuses, true),
		checkDate("start", in.Start, false),
		checkIDs("indicationIds", in.IndicationIDs),
	); err != nil {
		return nil, err
	}
	var e emitter
	e.add("Goal", in.ID, goalRes{
		base:            base{ResourceType: "Goal", ID: in.ID, Meta: m.meta("us-core-goal", l)},
		LifecycleStatus: in.Status,
		Category:        []codeableConcept{{Coding: []Coding{{System: sysGoalCategory, Code: "behavioral", Display: "Behavioral"}}}},
		Description:     &codeableConcept{Text: in.Text},
		Subject:         ref("Patient", in.ClientID),
		StartDate:       in.Start,
		ExpressedBy:     ref("Patient", in.ClientID),
		Addresses:       refs("Condition", in.IndicationIDs),
	})
	return e.result()
}

// IntentionFromFHIR reads a Goal of the behavioral category with a text
// description.
func (m *Mapper) IntentionFromFHIR(rs []Resource) (Intention, bool) {
	g, ok := first[goalRes](newGroup(rs), "Goal")
	if !ok || !anyHas(g.Category, sysGoalCategory, "behavioral") || g.Description == nil || g.Description.Text == "" {
		return Intention{}, false
	}
	return Intention{
		ID: g.ID, ClientID: refID(g.Subject, "Patient"), Text: g.Description.Text, Status: g.LifecycleStatus,
		Start: g.StartDate, IndicationIDs: refIDs(g.Addresses, "Condition"),
	}, true
}
