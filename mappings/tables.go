package mappings

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"
)

// The tables are data, not code: one JSON file per table under tables/, each
// row citing the section of the KAP mapping spec it comes from.
//
//go:embed tables/*.json
var tableFiles embed.FS

// Code systems used by the tables.
const (
	sysSNOMED       = "http://snomed.info/sct"
	sysLOINC        = "http://loinc.org"
	sysRxNorm       = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysICD10CM      = "http://hl7.org/fhir/sid/icd-10-cm"
	sysUCUM         = "http://unitsofmeasure.org"
	sysNUCC         = "http://nucc.org/provider-taxonomy"
	sysActCode      = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysParticipType = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysRoleCode     = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
	sysNUBC         = "https://www.nubc.org/CodeSystem/PatDischargeStatus"
	sysObsCategory  = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Code       string `json:"code"`
	Display    string `json:"display"`
	Definition string `json:"definition"`
	Section    string `json:"section"`
}

type sessionKind struct {
	Kind    string   `json:"kind"`
	Product string   `json:"product"` // product family, dosing only
	Kap     string   `json:"kap"`
	Billing []Coding `json:"billing"`
	Note    Coding   `json:"note"`
}

type billingAlias struct {
	Kind    string `json:"kind"`
	Product string `json:"product"`
	System  string `json:"system"`
	Code    string `json:"code"`
}

type participantRole struct {
	Role    string `json:"role"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type teamRole struct {
	Role       string   `json:"role"`
	Kap        string   `json:"kap"`
	Taxonomies []Coding `json:"taxonomies"`
}

type route struct {
	Route   string `json:"route"`
	Name    string `json:"name"` // the plain name the KAP rules and their configuration use
	Code    string `json:"code"`
	Display string `json:"display"`
}

type product struct {
	Product    string `json:"product"`
	Family     string `json:"family"`
	RxNorm     string `json:"rxnorm"`
	Display    string `json:"display"`
	Compounded bool   `json:"compounded"`
	Text       string `json:"text"`     // code.text of a compounded product, %s = strength in mg
	DeviceMg   int    `json:"deviceMg"` // mg per nasal spray device (esketamine), 0 otherwise
}

type answer struct {
	Value   int    `json:"value"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type band struct {
	Min  int    `json:"min"`
	Max  int    `json:"max"`
	Band string `json:"band"`
}

type instrument struct {
	Instrument string   `json:"instrument"`
	Name       string   `json:"name"`
	Panel      *Coding  `json:"panel"`
	Total      *Coding  `json:"total"`
	Items      []Coding `json:"items"`
	LocalItems int      `json:"localItems"` // items coded kap#<instrument>-item-<n>
	Answers    string   `json:"answers"`    // an answerLists key, "yes-no", or "" (integer answers)
	Min        int      `json:"min"`        // answer range of an item, or score range without items
	Max        int      `json:"max"`
	Scoring    string   `json:"scoring"` // sum | none | given (a score without items)
	Bands      []band   `json:"bands"`
}

type finding struct {
	Finding string `json:"finding"`
	Code    string `json:"code"`
}

type component struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type vital struct {
	Vital       string      `json:"vital"`
	Name        string      `json:"name"` // for notes`
	Profile     string      `json:"profile"`
	Code        []Coding    `json:"code"`
	Unit        string      `json:"unit"`
	UnitDisplay string      `json:"unitDisplay"`
	Components  []component `json:"components"`
}

type indication struct {
	Indication    string `json:"indication"`
	Depression    bool   `json:"depression"`
	ICD10         string `json:"icd10"`
	ICD10Display  string `json:"icd10Display"`
	SNOMED        string `json:"snomed"`
	SNOMEDDisplay string `json:"snomedDisplay"`
	Text          string `json:"text"`
}

type consentKind struct {
	Consent    string  `json:"consent"`
	Scope      Coding  `json:"scope"`
	Category   Coding  `json:"category"`
	Provision  string  `json:"provision"` // kap code of provision.code
	Policy     string  `json:"policy"`
	PolicyRule *Coding `json:"policyRule"`
}

type purpose struct {
	Purpose string `json:"purpose"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type relationship struct {
	Relationship string `json:"relationship"`
	Code         string `json:"code"`
	Display      string `json:"display"`
}

// remsItem is a yes/no answer of the REMS form: a concomitant medication
// class or an event, with its Observation id suffix and kap code.
type remsItem struct {
	Key  string `json:"key"`
	ID   string `json:"id"`
	Code string `json:"code"`
}

type remsTable struct {
	MinimumMinutes int `json:"minimumMonitoringMinutes"`
	BP40           struct {
		From int `json:"from"`
		To   int `json:"to"`
	} `json:"bp40"`
	Doses       []string   `json:"doses"`
	Concomitant []remsItem `json:"concomitant"`
	Events      []remsItem `json:"events"`
	Document    struct {
		Code string `json:"code"`
	} `json:"document"`
}

type tables struct {
	kapURL   string
	concepts []concept

	kinds        []sessionKind
	billingAlias []billingAlias
	participants []participantRole
	team         []teamRole
	routes       []route
	products     []product
	answerLists  map[string][]answer
	instruments  []instrument
	findings     []finding
	vitals       []vital
	indications  []indication
	consents     []consentKind
	purposes     []purpose
	relations    []relationship
	rems         remsTable

	secAlways, secSUD, secDemographics []Coding
	sudFrom, sudTo                     string
}

func loadTables() (*tables, error) {
	t := &tables{}
	var kap struct {
		URL      string    `json:"url"`
		Concepts []concept `json:"concepts"`
	}
	var sessions struct {
		Kinds []sessionKind  `json:"kinds"`
		Alias []billingAlias `json:"readOnlyBilling"`
	}
	var roles struct {
		Participants []participantRole `json:"participants"`
		Team         []teamRole        `json:"team"`
	}
	var routes struct {
		Routes []route `json:"routes"`
	}
	var products struct {
		Products []product `json:"products"`
	}
	var instruments struct {
		AnswerLists map[string][]answer `json:"answerLists"`
		Instruments []instrument        `json:"instruments"`
		Findings    []finding           `json:"findings"`
	}
	var vitals struct {
		Vitals []vital `json:"vitals"`
	}
	var indications struct {
		Indications []indication `json:"indications"`
	}
	var consents struct {
		Consents []consentKind `json:"consents"`
		Purposes []purpose     `json:"purposes"`
	}
	var escorts struct {
		Relationships []relationship `json:"relationships"`
	}
	var security struct {
		Always       []Coding `json:"always"`
		SubstanceUse []Coding `json:"substanceUse"`
		Demographics []Coding `json:"demographics"`
		SUDRange     struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"substanceUseICD10"`
	}
	for name, v := range map[string]any{
		"kap": &kap, "sessions": &sessions, "roles": &roles, "routes": &routes,
		"products": &products, "instruments": &instruments, "vitals": &vitals,
		"indications": &indications, "consents": &consents, "escorts": &escorts,
		"security": &security, "rems": &t.rems,
	} {
		b, err := tableFiles.ReadFile("tables/" + name + ".json")
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("mappings: table %s: %w", name, err)
		}
	}
	t.kapURL, t.concepts = kap.URL, kap.Concepts
	t.kinds, t.billingAlias = sessions.Kinds, sessions.Alias
	t.participants, t.team = roles.Participants, roles.Team
	t.routes, t.products = routes.Routes, products.Products
	t.answerLists, t.instruments, t.findings = instruments.AnswerLists, instruments.Instruments, instruments.Findings
	t.vitals, t.indications = vitals.Vitals, indications.Indications
	t.consents, t.purposes, t.relations = consents.Consents, consents.Purposes, escorts.Relationships
	t.secAlways, t.secSUD, t.secDemographics = security.Always, security.SubstanceUse, security.Demographics
	t.sudFrom, t.sudTo = security.SUDRange.From, security.SUDRange.To
	// "kap" in a table is the local CodeSystem: resolve it once.
	for i := range t.instruments {
		for _, c := range []*Coding{t.instruments[i].Panel, t.instruments[i].Total} {
			if c != nil && c.System == "kap" {
				c.System = t.kapURL
			}
		}
	}
	return t, nil
}

// kap returns the local coding of code, with its display from the CodeSystem
// table (so a display is written once).
func (t *tables) kap(code string) Coding {
	for _, c := range t.concepts {
		if c.Code == code {
			return Coding{System: t.kapURL, Code: code, Display: c.Display}
		}
	}
	// Unreachable for table codes: New checks them (kapCodesUsed).
	return Coding{System: t.kapURL, Code: code}
}

// localItem is the code of item n (1-based) of an instrument without
// standard item codes.
func (t *tables) localItem(in *instrument, n int) Coding {
	return Coding{System: t.kapURL, Code: fmt.Sprintf("%s-item-%d", in.Instrument, n), Display: fmt.Sprintf("%s item %d", in.Name, n)}
}

// itemCodes are the codings of an instrument's items, standard or local.
func (t *tables) itemCodes(in *instrument) []Coding {
	if in.LocalItems == 0 {
		return in.Items
	}
	out := make([]Coding, in.LocalItems)
	for i := range out {
		out[i] = t.localItem(in, i+1)
	}
	return out
}

func find[T any](rows []T, match func(*T) bool) *T {
	for i := range rows {
		if match(&rows[i]) {
			return &rows[i]
		}
	}
	return nil
}

func (t *tables) route(key string) *route {
	return find(t.routes, func(r *route) bool { return r.Route == key })
}

func (t *tables) product(key string) *product {
	return find(t.products, func(p *product) bool { return p.Product == key })
}

func (t *tables) instrument(key string) *instrument {
	return find(t.instruments, func(in *instrument) bool { return in.Instrument == key })
}

func (t *tables) vital(key string) *vital {
	return find(t.vitals, func(v *vital) bool { return v.Vital == key })
}

func (t *tables) indication(key string) *indication {
	return find(t.indications, func(in *indication) bool { return in.Indication == key })
}

// isSUD reports whether an ICD-10-CM code is in the substance-use range
// (F10-F19) that brings the SUD and 42 CFR Part 2 labels.
func (t *tables) isSUD(icd10 string) bool {
	if len(icd10) < 3 {
		return false
	}
	cat := strings.ToUpper(icd10[:3])
	return cat >= t.sudFrom && cat <= t.sudTo
}

// keys lists the distinct keys of rows.
func keys[T any](rows []T, key func(*T) string) []string {
	var seen []string
	for i := range rows {
		k := key(&rows[i])
		if !contains(seen, k) {
			seen = append(seen, k)
		}
	}
	return seen
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Local codes the mapping code uses directly (not through a table row).
const (
	kapProgram       = "kap-program"
	kapTRD           = "trd"
	kapNoDriving8h   = "no-driving-8h"
	kapNoDrivingFlag = "no-driving"
	kapReleased      = "released-to-escort"
	kapREMSFirst     = "rems-first-treatment"
	kapREMSEnrolled  = "rems-enrolled"
	kapMonitoring    = "monitoring-duration"
	kapReadiness     = "time-to-discharge-readiness"
	kapVitalsOK      = "vitals-acceptable"
	kapAdverseEvents = "rems-adverse-events"
)

// kapCodesUsed lists every kap code the tables and the code refer to.
func (t *tables) kapCodesUsed() []string {
	codes := []string{kapProgram, kapTRD, kapNoDriving8h, kapNoDrivingFlag, kapReleased,
		kapREMSFirst, kapREMSEnrolled, kapMonitoring, kapReadiness, kapVitalsOK, kapAdverseEvents}
	for _, k := range t.kinds {
		codes = append(codes, k.Kap)
	}
	for _, r := range t.team {
		codes = append(codes, r.Kap)
	}
	for _, in := range t.instruments {
		for _, c := range []*Coding{in.Panel, in.Total} {
			if c != nil && c.System == t.kapURL {
				codes = append(codes, c.Code)
			}
		}
	}
	for _, f := range t.findings {
		codes = append(codes, f.Code)
	}
	for _, r := range append(append([]remsItem(nil), t.rems.Concomitant...), t.rems.Events...) {
		codes = append(codes, r.Code)
	}
	codes = append(codes, t.rems.Document.Code)
	for _, c := range t.consents {
		if c.Provision != "" {
			codes = append(codes, c.Provision)
		}
	}
	return codes
}
