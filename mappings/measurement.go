package mappings

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Measurement is one vital sign, scale or clinical finding taken for a
// client, usually in a session. Which fields apply depends on Kind:
//   - vitals (bp, hr, rr, spo2, weight, temperature): value, or systolic and
//     diastolic for bp; units are fixed (UCUM, §5.2);
//   - scales with items (phq9, gad7, pcl5, cssrs): items (answers by
//     position, range per instrument) and, for summed scales, total (computed:
//     a given total must agree), severity (PHQ-9 band, computed);
//   - scores without items (madrs, cadss, moaas, aldrete): total;
//   - findings (discharge-ready, escort-confirmed, released-to-escort):
//     finding, and escortId for the escort findings.
type Measurement struct {
	ID          string      `json:"id"`
	ClientID    string      `json:"clientId"`
	SessionID   string      `json:"sessionId,omitempty"`
	Kind        string      `json:"kind"`
	Time        string      `json:"time"`
	PerformerID string      `json:"performerId,omitempty"`
	Systolic    json.Number `json:"systolic,omitempty"`
	Diastolic   json.Number `json:"diastolic,omitempty"`
	Value       json.Number `json:"value,omitempty"`
	Items       []int       `json:"items,omitempty"`
	Total       *int        `json:"total,omitempty"`
	Severity    string      `json:"severity,omitempty"`
	Finding     *bool       `json:"finding,omitempty"`
	EscortID    string      `json:"escortId,omitempty"`
}

// Score is the result of an instrument's scoring rule.
type Score struct {
	Total    int
	Severity string // the band of the total, when the instrument has bands
}

// ScoreItems applies the scoring rule of an instrument to its item answers:
// the sum for PHQ-9, GAD-7 and PCL-5, with the PHQ-9 severity band. ok is
// false when the instrument defines no total (C-SSRS screener). Answers out
// of range are an error naming items[i].
func (m *Mapper) ScoreItems(instrumentKey string, items []int) (Score, bool, error) {
	in := m.t.instrument(instrumentKey)
	if in == nil {
		return Score{}, false, invalid("kind", "%q is not an instrument", instrumentKey)
	}
	if err := m.checkItems(in, items); err != nil {
		return Score{}, false, err
	}
	if in.Scoring != "sum" {
		return Score{}, false, nil
	}
	s := Score{}
	for _, a := range items {
		s.Total += a
	}
	s.Severity = bandOf(in, s.Total)
	return s, true, nil
}

func bandOf(in *instrument, total int) string {
	for _, b := range in.Bands {
		if total >= b.Min && total <= b.Max {
			return b.Band
		}
	}
	return ""
}

func (m *Mapper) checkItems(in *instrument, items []int) error {
	if n := len(m.t.itemCodes(in)); len(items) != n {
		return invalid("items", "%s has %d items, got %d", in.Name, n, len(items))
	}
	for i, a := range items {
		if a < in.Min || a > in.Max {
			return invalid(fmt.Sprintf("items[%d]", i), "answer %d of %s item %d is outside %d..%d", a, in.Name, i+1, in.Min, in.Max)
		}
	}
	return nil
}

func (m *Mapper) finding(key string) *finding {
	return find(m.t.findings, func(f *finding) bool { return f.Finding == key })
}

func (m *Mapper) measurementKinds() []string {
	var out []string
	for _, v := range m.t.vitals {
		out = append(out, v.Vital)
	}
	for _, in := range m.t.instruments {
		out = append(out, in.Instrument)
	}
	for _, f := range m.t.findings {
		out = append(out, f.Finding)
	}
	return out
}

// checkMeasurement validates ms and fills the computed total and severity.
func (m *Mapper) checkMeasurement(ms *Measurement) error {
	if err := check(
		checkID("id", ms.ID, true),
		checkID("clientId", ms.ClientID, true),
		checkID("sessionId", ms.SessionID, false),
		checkEnum("kind", ms.Kind, m.measurementKinds(), true),
		checkDateTime("time", ms.Time, true),
		checkID("performerId", ms.PerformerID, false),
		checkID("escortId", ms.EscortID, false),
	); err != nil {
		return err
	}
	// Fields of other kinds are errors, not silently dropped.
	unexpected := func(fields map[string]bool) error {
		for name, set := range fields {
			if set {
				return invalid(name, "%s does not apply to a %s measurement", name, ms.Kind)
			}
		}
		return nil
	}
	switch v, in, f := m.t.vital(ms.Kind), m.t.instrument(ms.Kind), m.finding(ms.Kind); {
	case v != nil && len(v.Components) > 0:
		return check(checkDecimal("systolic", ms.Systolic, true), checkDecimal("diastolic", ms.Diastolic, true),
			unexpected(map[string]bool{"value": ms.Value != "", "items": ms.Items != nil, "total": ms.Total != nil, "finding": ms.Finding != nil, "escortId": ms.EscortID != ""}))
	case v != nil:
		return check(checkDecimal("value", ms.Value, true),
			unexpected(map[string]bool{"systolic": ms.Systolic != "", "diastolic": ms.Diastolic != "", "items": ms.Items != nil, "total": ms.Total != nil, "finding": ms.Finding != nil, "escortId": ms.EscortID != ""}))
	case f != nil:
		if ms.Finding == nil {
			return missing("finding")
		}
		return unexpected(map[string]bool{"value": ms.Value != "", "systolic": ms.Systolic != "", "diastolic": ms.Diastolic != "", "items": ms.Items != nil, "total": ms.Total != nil})
	case in.Scoring == "given":
		if ms.Total == nil {
			return missing("total")
		}
		if *ms.Total < in.Min || *ms.Total > in.Max {
			return invalid("total", "%s score %d is outside %d..%d", in.Name, *ms.Total, in.Min, in.Max)
		}
		return unexpected(map[string]bool{"value": ms.Value != "", "systolic": ms.Systolic != "", "diastolic": ms.Diastolic != "", "items": ms.Items != nil, "finding": ms.Finding != nil, "escortId": ms.EscortID != "", "severity": ms.Severity != ""})
	default:
		if err := unexpected(map[string]bool{"value": ms.Value != "", "systolic": ms.Systolic != "", "diastolic": ms.Diastolic != "", "finding": ms.Finding != nil, "escortId": ms.EscortID != ""}); err != nil {
			return err
		}
		if ms.Items == nil {
			// A total alone (e.g. transcribed from paper) is kept as given.
			if ms.Total == nil || in.Scoring != "sum" {
				return missing("items")
			}
			if *ms.Total < 0 || *ms.Total > in.Max*len(m.t.itemCodes(in)) {
				return invalid("total", "%s total %d is out of range", in.Name, *ms.Total)
			}
			return m.fillSeverity(ms, in, *ms.Total)
		}
		s, ok, err := m.ScoreItems(ms.Kind, ms.Items)
		if err != nil {
			return err
		}
		if !ok {
			return unexpected(map[string]bool{"total": ms.Total != nil, "severity": ms.Severity != ""})
		}
		if ms.Total != nil && *ms.Total != s.Total {
			return invalid("total", "total %d disagrees with the items, which sum to %d", *ms.Total, s.Total)
		}
		ms.Total = &s.Total
		return m.fillSeverity(ms, in, s.Total)
	}
}

func (m *Mapper) fillSeverity(ms *Measurement, in *instrument, total int) error {
	band := bandOf(in, total)
	if ms.Severity != "" && ms.Severity != band {
		return invalid("severity", "severity is computed from the total (%q)", band)
	}
	ms.Severity = band
	return nil
}

// MeasurementToFHIR maps a measurement to Observations (§5): a US Core vital
// sign; a screening-assessment panel with hasMember → the item Observations
// <id>-item-<n> and the total <id>-total; a local score; or a US Core simple
// observation for a finding. l is the program's label set.
func (m *Mapper) MeasurementToFHIR(ms Measurement, l Labels) ([]Resource, error) {
	obs, err := m.measurementObservations(ms, l)
	if err != nil {
		return nil, err
	}
	var e emitter
	for _, o := range obs {
		e.add("Observation", o.ID, o)
	}
	return e.result()
}

func category(code, display string) []codeableConcept {
	return []codeableConcept{{Coding: []Coding{{System: sysObsCategory, Code: code, Display: display}}}}
}

func score(n int) *quantity {
	return &quantity{Value: json.Number(strconv.Itoa(n)), Unit: "{score}", System: sysUCUM, Code: "{score}"}
}

func (m *Mapper) measurementObservations(ms Measurement, l Labels) ([]observationRes, error) {
	if err := m.checkMeasurement(&ms); err != nil {
		return nil, err
	}
	obs := func(id, profile string, cat []codeableConcept, code Coding) observationRes {
		o := observationRes{
			base:              base{ResourceType: "Observation", ID: id, Meta: m.meta(profile, l)},
			Status:            "final",
			Category:          cat,
			Code:              cc(code),
			Subject:           ref("Patient", ms.ClientID),
			Encounter:         ref("Encounter", ms.SessionID),
			EffectiveDateTime: ms.Time,
		}
		if ms.PerformerID != "" {
			o.Performer = []reference{*ref("Practitioner", ms.PerformerID)}
		}
		return o
	}
	if v := m.t.vital(ms.Kind); v != nil {
		o := obs(ms.ID, v.Profile, category("vital-signs", "Vital Signs"), Coding{})
		o.Code = &codeableConcept{}
		for _, c := range v.Code {
			o.Code.Coding = append(o.Code.Coding, Coding{System: sysLOINC, Code: c.Code, Display: c.Display})
		}
		unit := v.UnitDisplay
		if unit == "" {
			unit = v.Unit
		}
		q := func(val json.Number) *quantity {
			return &quantity{Value: val, Unit: unit, System: sysUCUM, Code: v.Unit}
		}
		if len(v.Components) == 0 {
			o.ValueQuantity = q(ms.Value)
		}
		for _, c := range v.Components {
			val := ms.Systolic
			if c.Field == "diastolic" {
				val = ms.Diastolic
			}
			o.Component = append(o.Component, obsComponent{Code: *cc(Coding{System: sysLOINC, Code: c.Code, Display: c.Display}), ValueQuantity: q(val)})
		}
		return []observationRes{o}, nil
	}
	if f := m.finding(ms.Kind); f != nil {
		o := obs(ms.ID, "us-core-simple-observation", category("exam", "Exam"), m.t.kap(f.Code))
		o.ValueBoolean = ms.Finding
		if ms.EscortID != "" {
			o.Focus = []reference{*ref("RelatedPerson", ms.EscortID)}
		}
		return []observationRes{o}, nil
	}
	in := m.t.instrument(ms.Kind)
	survey := category("survey", "Survey")
	const profile = "us-core-observation-screening-assessment"
	if in.Panel == nil {
		o := obs(ms.ID, profile, survey, *in.Total)
		o.ValueQuantity = score(*ms.Total)
		return []observationRes{o}, nil
	}
	panel := obs(ms.ID, profile, survey, *in.Panel)
	var members []observationRes
	for i, a := range ms.Items {
		item := obs(fmt.Sprintf("%s-item-%d", ms.ID, i+1), profile, survey, m.t.itemCodes(in)[i])
		switch in.Answers {
		case "yes-no":
			item.ValueBoolean = ptr(a == 1)
		case "":
			item.ValueInteger = ptr(a)
		default:
			ans := find(m.t.answerLists[in.Answers], func(x *answer) bool { return x.Value == a })
			item.ValueCodeableConcept = cc(Coding{System: sysLOINC, Code: ans.Code, Display: ans.Display})
		}
		members = append(members, item)
	}
	if in.Total != nil && ms.Total != nil {
		total := obs(ms.ID+"-total", profile, survey, *in.Total)
		total.ValueQuantity = score(*ms.Total)
		total.DerivedFrom = panelRefs(members)
		members = append(members, total)
	}
	panel.HasMember = panelRefs(members)
	return append([]observationRes{panel}, members...), nil
}

func panelRefs(os []observationRes) []reference {
	var out []reference
	for _, o := range os {
		out = append(out, *ref("Observation", o.ID))
	}
	return out
}

// MeasurementFromFHIR reads the first Observation of the group into a
// measurement. It fits when its status is not cancelled/entered-in-error and
// its code is one of the tables': a vital sign LOINC (with its value), an
// instrument panel (items and total read through hasMember from the group),
// an instrument total alone (e.g. LOINC 44261-6 is a PHQ-9 total), a local
// score or a local finding.
func (m *Mapper) MeasurementFromFHIR(rs []Resource) (Measurement, bool) {
	g := newGroup(rs)
	o, ok := first[observationRes](g, "Observation")
	if !ok || o.Status == "cancelled" || o.Status == "entered-in-error" || o.EffectiveDateTime == "" {
		return Measurement{}, false
	}
	ms := Measurement{ID: o.ID, ClientID: refID(o.Subject, "Patient"), SessionID: refID(o.Encounter, "Encounter"), Time: o.EffectiveDateTime}
	if len(o.Performer) > 0 {
		ms.PerformerID = refID(&o.Performer[0], "Practitioner")
	}
	for _, v := range m.t.vitals {
		if !o.Code.has(sysLOINC, v.Code[0].Code) {
			continue
		}
		ms.Kind = v.Vital
		if len(v.Components) == 0 {
			if o.ValueQuantity == nil || o.ValueQuantity.Value == "" || o.ValueQuantity.Code != v.Unit {
				return Measurement{}, false // another unit: not in the clinic's model
			}
			ms.Value = o.ValueQuantity.Value
			return ms, true
		}
		for _, c := range o.Component {
			if c.ValueQuantity == nil || c.ValueQuantity.Code != v.Unit {
				continue
			}
			switch {
			case c.Code.has(sysLOINC, v.Components[0].Code):
				ms.Systolic = c.ValueQuantity.Value
			case c.Code.has(sysLOINC, v.Components[1].Code):
				ms.Diastolic = c.ValueQuantity.Value
			}
		}
		return ms, ms.Systolic != "" && ms.Diastolic != ""
	}
	for _, f := range m.t.findings {
		if o.Code.has(m.t.kapURL, f.Code) && o.ValueBoolean != nil {
			ms.Kind, ms.Finding = f.Finding, o.ValueBoolean
			if len(o.Focus) > 0 {
				ms.EscortID = refID(&o.Focus[0], "RelatedPerson")
			}
			return ms, true
		}
	}
	for i := range m.t.instruments {
		in := &m.t.instruments[i]
		switch {
		case in.Panel != nil && o.Code.has(in.Panel.System, in.Panel.Code):
			ms.Kind = in.Instrument
			return ms, m.readPanel(g, o, in, &ms)
		case in.Total != nil && o.Code.has(in.Total.System, in.Total.Code):
			n, ok := scoreValue(o)
			if !ok {
				return Measurement{}, false
			}
			ms.Kind, ms.Total = in.Instrument, &n
			ms.Severity = bandOf(in, n)
			return ms, true
		}
	}
	return Measurement{}, false
}

// readPanel reads the items and total of a panel from its members in the
// group. Every item must be there with an answer in range; a total is read
// from the member coded as the instrument's total.
func (m *Mapper) readPanel(g group, panel *observationRes, in *instrument, ms *Measurement) bool {
	codes := m.t.itemCodes(in)
	items := make([]int, len(codes))
	found := make([]bool, len(codes))
	for i := range panel.HasMember {
		o, ok := resolve[observationRes](g, "Observation", &panel.HasMember[i])
		if !ok {
			continue
		}
		if in.Total != nil && o.Code.has(in.Total.System, in.Total.Code) {
			if n, ok := scoreValue(o); ok {
				ms.Total = &n
			}
			continue
		}
		for k, c := range codes {
			if !o.Code.has(c.System, c.Code) {
				continue
			}
			a, ok := m.answerOf(o, in)
			if ok {
				items[k], found[k] = a, true
			}
		}
	}
	for _, f := range found {
		if !f {
			// Items missing: keep what is certain, the total.
			if ms.Total == nil {
				return false
			}
			ms.Severity = bandOf(in, *ms.Total)
			return true
		}
	}
	ms.Items = items
	if in.Scoring == "sum" {
		s, _, err := m.ScoreItems(in.Instrument, items)
		if err != nil {
			return false
		}
		// The items decide; a stored total that disagrees is not repeated.
		ms.Total, ms.Severity = &s.Total, s.Severity
	}
	return true
}

func (m *Mapper) answerOf(o *observationRes, in *instrument) (int, bool) {
	switch {
	case in.Answers == "yes-no" && o.ValueBoolean != nil:
		if *o.ValueBoolean {
			return 1, true
		}
		return 0, true
	case o.ValueInteger != nil && *o.ValueInteger >= in.Min && *o.ValueInteger <= in.Max:
		return *o.ValueInteger, true
	case o.ValueCodeableConcept != nil:
		for _, a := range m.t.answerLists[in.Answers] {
			if o.ValueCodeableConcept.has(sysLOINC, a.Code) {
				return a.Value, true
			}
		}
	}
	return 0, false
}

// scoreValue reads an integer score from valueInteger or an integral
// valueQuantity.
func scoreValue(o *observationRes) (int, bool) {
	if o.ValueInteger != nil {
		return *o.ValueInteger, true
	}
	if o.ValueQuantity != nil {
		if n, err := strconv.Atoi(string(o.ValueQuantity.Value)); err == nil {
			return n, true
		}
	}
	return 0, false
}
