package mappings

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"
)

// REMSPatient is the patient block of the REMS form (from the Patient).
type REMSPatient struct {
	Name      Name   `json:"name"`
	BirthDate string `json:"birthDate,omitempty"`
	Gender    string `json:"gender,omitempty"`
}

// REMSPerson is the HCP conducting monitoring (a Practitioner).
type REMSPerson struct {
	ID    string `json:"id"`
	Name  *Name  `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
}

// REMSSetting is the healthcare setting (Encounter.serviceProvider).
type REMSSetting struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Address string `json:"address,omitempty"`
}

// REMSBP is one blood pressure time point of the form.
type REMSBP struct {
	Time      string      `json:"time"`
	Systolic  json.Number `json:"systolic"`
	Diastolic json.Number `json:"diastolic"`
}

// REMSCheck is a yes/no judgement at a time point.
type REMSCheck struct {
	Time       string `json:"time"`
	Acceptable bool   `json:"acceptable"`
}

// REMSAnswers are the form fields no other resource holds: the clinician
// answers them, REMSToFHIR records them as Observations and REMSFromFHIR
// reads them back.
type REMSAnswers struct {
	FirstTreatment *bool `json:"firstTreatment,omitempty"`
	Enrolled       *bool `json:"remsEnrolled,omitempty"`
	// Concomitant: taking a medication of the class (benzodiazepines,
	// sedative-hypnotics, psychostimulants, maois).
	Concomitant      map[string]bool `json:"concomitant,omitempty"`
	VitalsBefore     *REMSCheck      `json:"vitalsAcceptableBeforeAdministration,omitempty"`
	VitalsCompletion *REMSCheck      `json:"vitalsAcceptableBeforeCompletion,omitempty"`
	// Experienced: sedation, dissociation, respiratory-depression,
	// bp-changes.
	Experienced   map[string]bool `json:"experienced,omitempty"`
	AdverseEvents string          `json:"adverseEvents,omitempty"`
}

// REMSForm is the Spravato REMS Patient Monitoring Form of one esketamine
// dosing session (§14). The fields outside REMSAnswers are derived from the
// session's resources.
type REMSForm struct {
	SessionID     string       `json:"sessionId"`
	ClientID      string       `json:"clientId"`
	Patient       *REMSPatient `json:"patient,omitempty"`
	MonitoringHCP *REMSPerson  `json:"monitoringHcp,omitempty"`
	Setting       *REMSSetting `json:"setting,omitempty"`
	TreatmentDate string       `json:"treatmentDate,omitempty"`
	// DoseMg is the sum of the session's doses; Dose is the form's checkbox:
	// 56, 84 or other.
	DoseMg     json.Number `json:"doseMg,omitempty"`
	Dose       string      `json:"dose,omitempty"`
	Devices    int         `json:"devices,omitempty"`
	LotNumbers []string    `json:"lotNumbers,omitempty"`
	// FirstDevice is the start of the first administration; MonitoringEnd
	// the discharge (else the end of the session).
	FirstDevice        string `json:"firstDevice,omitempty"`
	MonitoringEnd      string `json:"monitoringEnd,omitempty"`
	MonitoringMinutes  *int   `json:"monitoringMinutes,omitempty"`
	MinutesToReadiness *int   `json:"minutesToReadiness,omitempty"` // only when monitoring ended before the minimum
	// The blood pressures before the first device, about 40 minutes after
	// it, and the last one before the end of monitoring.
	BPPrior      *REMSBP     `json:"bpPrior,omitempty"`
	BP40Min      *REMSBP     `json:"bp40Min,omitempty"`
	BPCompletion *REMSBP     `json:"bpPriorToCompletion,omitempty"`
	SpO2Lowest   json.Number `json:"spo2Lowest,omitempty"`
	MOAASLowest  *int        `json:"moaasLowest,omitempty"`
	CADSSHighest *int        `json:"cadssHighest,omitempty"`
	REMSAnswers
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// datePart is the date of a FHIR dateTime ("" for a partial one).
func datePart(dt string) string {
	if len(dt) < 10 {
		return ""
	}
	return dt[:10]
}

func minutesBetween(a, b time.Time) *int { return ptr(int(b.Sub(a) / time.Minute)) }

// rat parses a decimal lexeme (validated elsewhere; 0 when it does not parse).
func rat(v json.Number) *big.Rat {
	r, ok := new(big.Rat).SetString(string(v))
	if !ok {
		return new(big.Rat)
	}
	return r
}

// decimal renders an exact sum back as a decimal lexeme.
func decimal(r *big.Rat) json.Number {
	if r.IsInt() {
		return json.Number(r.Num().String())
	}
	return json.Number(strings.TrimRight(r.FloatString(6), "0"))
}

// REMSFromFHIR builds the REMS form of an esketamine dosing session from its
// resources: the Encounter first, then its MedicationAdministrations,
// Observations, discharge resources, and the Patient, Practitioner and
// Organization it refers to. The dose, devices and lots come from the
// administrations; the monitoring minutes run from the first device to the
// discharge; the three blood pressures are placed by their time relative to
// the first device and the discharge; the answers are the REMS Observations
// of REMSToFHIR. It reports false for a session that is not an esketamine
// dosing session.
func (m *Mapper) REMSFromFHIR(rs []Resource) (REMSForm, bool) {
	s, ok := m.SessionFromFHIR(rs)
	if !ok || s.Kind != "dosing" || s.Product != "esketamine" {
		return REMSForm{}, false
	}
	g := newGroup(rs)
	enc, _ := first[encounterRes](g, "Encounter")
	f := REMSForm{SessionID: s.ID, ClientID: s.ClientID}
	if p, ok := resolve[patientRes](g, "Patient", enc.Subject); ok {
		f.Patient = &REMSPatient{Name: fromNames(p.Name), BirthDate: p.BirthDate, Gender: p.Gender}
	}
	f.Setting = settingOf(g, enc.ServiceProvider)

	admins := m.sessionAdministrations(g, s.ID)
	var t0 time.Time
	if len(admins) > 0 {
		f.FirstDevice = admins[0].start
		t0 = admins[0].at
		m.doseOf(&f, admins)
	}
	f.MonitoringHCP = m.monitoringHCP(g, s, admins)
	f.TreatmentDate = datePart(s.Start)
	if f.TreatmentDate == "" {
		f.TreatmentDate = datePart(f.FirstDevice)
	}
	f.MonitoringEnd = s.End
	if s.Discharge != nil {
		f.MonitoringEnd = s.Discharge.Time
	}
	end, hasEnd := parseTime(f.MonitoringEnd)

	var bps []Measurement
	var readyAt time.Time
	for _, r := range g.list {
		if r.Type != "Observation" {
			continue
		}
		ms, ok := m.MeasurementFromFHIR([]Resource{r})
		if !ok || ms.SessionID != s.ID {
			continue
		}
		at, _ := parseTime(ms.Time)
		switch ms.Kind {
		case "bp":
			bps = append(bps, ms)
		case "spo2":
			if f.SpO2Lowest == "" || rat(ms.Value).Cmp(rat(f.SpO2Lowest)) < 0 {
				f.SpO2Lowest = ms.Value
			}
		case "moaas":
			if f.MOAASLowest == nil || *ms.Total < *f.MOAASLowest {
				f.MOAASLowest = ms.Total
			}
		case "cadss":
			if f.CADSSHighest == nil || *ms.Total > *f.CADSSHighest {
				f.CADSSHighest = ms.Total
			}
		case "discharge-ready":
			if *ms.Finding && !at.Before(t0) && (readyAt.IsZero() || at.Before(readyAt)) {
				readyAt = at
			}
		}
	}
	if !t0.IsZero() {
		m.placeBPs(&f, bps, t0, end, hasEnd)
		if hasEnd {
			f.MonitoringMinutes = minutesBetween(t0, end)
			if *f.MonitoringMinutes < m.t.rems.MinimumMinutes {
				if readyAt.IsZero() || readyAt.After(end) {
					readyAt = end
				}
				f.MinutesToReadiness = minutesBetween(t0, readyAt)
			}
		}
	}
	m.readREMSAnswers(g, &f, t0)
	return f, true
}

// sessionAdmin is an esketamine dose given in the session, with its start.
type sessionAdmin struct {
	Administration
	start string
	at    time.Time
}

// sessionAdministrations are the session's esketamine doses that were given
// (not not-done or entered-in-error), in time order.
func (m *Mapper) sessionAdministrations(g group, sessionID string) []sessionAdmin {
	var out []sessionAdmin
	for _, r := range g.list {
		if r.Type != "MedicationAdministration" {
			continue
		}
		a, ok := m.AdministrationFromFHIR([]Resource{r})
		if !ok || a.SessionID != sessionID || a.Status == "not-done" || a.Status == "entered-in-error" ||
			m.t.product(a.Product).Family != "esketamine" {
			continue
		}
		start := a.Time
		if start == "" {
			start = a.Start
		}
		at, ok := parseTime(start)
		if !ok {
			continue
		}
		out = append(out, sessionAdmin{Administration: a, start: start, at: at})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// doseOf fills the dose, the dose checkbox, the device count (each device
// delivers the product's deviceMg; 0 when a dose is not a whole number of
// devices) and the lot numbers.
func (m *Mapper) doseOf(f *REMSForm, admins []sessionAdmin) {
	total, devices := new(big.Rat), new(big.Rat)
	whole := true
	for _, a := range admins {
		dose := rat(a.DoseMg)
		total.Add(total, dose)
		if per := m.t.product(a.Product).DeviceMg; per > 0 {
			n := new(big.Rat).Quo(dose, big.NewRat(int64(per), 1))
			devices.Add(devices, n)
			whole = whole && n.IsInt()
		} else {
			whole = false
		}
		if a.LotNumber != "" && !contains(f.LotNumbers, a.LotNumber) {
			f.LotNumbers = append(f.LotNumbers, a.LotNumber)
		}
	}
	f.DoseMg = decimal(total)
	f.Dose = "other"
	if contains(m.t.rems.Doses, string(f.DoseMg)) {
		f.Dose = string(f.DoseMg)
	}
	if whole {
		f.Devices = int(devices.Num().Int64())
	}
}

// monitoringHCP is the clinician who observed the self-administration (the
// witness of the first device), else the session's secondary or lead
// participant, with name and telecom when the Practitioner is in the group.
func (m *Mapper) monitoringHCP(g group, s Session, admins []sessionAdmin) *REMSPerson {
	id := ""
	if len(admins) > 0 {
		id = admins[0].WitnessID
	}
	for _, role := range []string{"secondary", "lead"} {
		for _, p := range s.Participants {
			if id == "" && p.Role == role {
				id = p.MemberID
			}
		}
	}
	if id == "" {
		return nil
	}
	hcp := &REMSPerson{ID: id}
	if pr, ok := resolve[practitionerRes](g, "Practitioner", ref("Practitioner", id)); ok {
		n := fromNames(pr.Name)
		hcp.Name = &n
		hcp.Phone, hcp.Email = fromTelecom(pr.Telecom)
	}
	return hcp
}

func settingOf(g group, sp *reference) *REMSSetting {
	id := refID(sp, "Organization")
	if id == "" {
		return nil
	}
	st := &REMSSetting{ID: id}
	if o, ok := resolve[organizationRes](g, "Organization", sp); ok {
		st.Name = o.Name
		if len(o.Address) > 0 {
			a := o.Address[0]
			st.Address = a.Text
			if st.Address == "" {
				parts := append(append([]string(nil), a.Line...), a.City, strings.TrimSpace(a.State+" "+a.PostalCode))
				var kept []string
				for _, p := range parts {
					if p != "" {
						kept = append(kept, p)
					}
				}
				st.Address = strings.Join(kept, ", ")
			}
		}
	}
	return st
}

// placeBPs picks the form's three blood pressures: the last one at or
// before the first device; the one closest to 40 minutes after it within the
// table's window (none in the window: the field stays empty); the last one
// after that (or after the first device) up to the end of monitoring.
func (m *Mapper) placeBPs(f *REMSForm, bps []Measurement, t0, end time.Time, hasEnd bool) {
	type timed struct {
		ms Measurement
		at time.Time
	}
	var list []timed
	for _, b := range bps {
		if at, ok := parseTime(b.Time); ok {
			list = append(list, timed{b, at})
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].at.Before(list[j].at) })
	bp := func(t timed) *REMSBP {
		return &REMSBP{Time: t.ms.Time, Systolic: t.ms.Systolic, Diastolic: t.ms.Diastolic}
	}
	from := t0.Add(time.Duration(m.t.rems.BP40.From) * time.Minute)
	to := t0.Add(time.Duration(m.t.rems.BP40.To) * time.Minute)
	target := t0.Add(40 * time.Minute)
	after := t0
	best := -1
	for i, t := range list {
		switch {
		case !t.at.After(t0):
			f.BPPrior = bp(t)
		case !t.at.Before(from) && !t.at.After(to):
			if best < 0 || t.at.Sub(target).Abs() < list[best].at.Sub(target).Abs() {
				best = i
			}
		}
	}
	if best >= 0 {
		f.BP40Min = bp(list[best])
		after = list[best].at
	}
	for _, t := range list {
		if t.at.After(after) && (!hasEnd || !t.at.After(end)) {
			f.BPCompletion = bp(t)
		}
	}
}

// readREMSAnswers reads the Observations of REMSToFHIR for the session. The
// monitoring and readiness minutes are read only when the administrations
// and discharge did not give them. A vitals-acceptable Observation at or
// before the first device is the pre-administration one.
func (m *Mapper) readREMSAnswers(g group, f *REMSForm, t0 time.Time) {
	kap := m.t.kapURL
	var vitals []*observationRes
	for _, o := range all[observationRes](g, "Observation") {
		if refID(o.Encounter, "Encounter") != f.SessionID || o.Status == "cancelled" || o.Status == "entered-in-error" {
			continue
		}
		b := o.ValueBoolean
		switch {
		case o.Code.has(kap, kapREMSFirst) && b != nil:
			f.FirstTreatment = b
		case o.Code.has(kap, kapREMSEnrolled) && b != nil:
			f.Enrolled = b
		case o.Code.has(kap, kapVitalsOK) && b != nil:
			vitals = append(vitals, o)
		case o.Code.has(kap, kapAdverseEvents):
			f.AdverseEvents = o.ValueString
		case o.Code.has(kap, kapMonitoring) && f.MonitoringMinutes == nil:
			f.MonitoringMinutes = minutesValue(o)
		case o.Code.has(kap, kapReadiness) && f.MinutesToReadiness == nil:
			f.MinutesToReadiness = minutesValue(o)
		case b != nil:
			readREMSItem(o, kap, m.t.rems.Concomitant, &f.Concomitant)
			readREMSItem(o, kap, m.t.rems.Events, &f.Experienced)
		}
	}
	sort.SliceStable(vitals, func(i, j int) bool {
		a, _ := parseTime(vitals[i].EffectiveDateTime)
		b, _ := parseTime(vitals[j].EffectiveDateTime)
		return a.Before(b)
	})
	for i, o := range vitals {
		c := &REMSCheck{Time: o.EffectiveDateTime, Acceptable: *o.ValueBoolean}
		at, _ := parseTime(o.EffectiveDateTime)
		if (t0.IsZero() && i == 0) || (!t0.IsZero() && !at.After(t0)) {
			f.VitalsBefore = c
		} else {
			f.VitalsCompletion = c
		}
	}
}

func readREMSItem(o *observationRes, kap string, items []remsItem, into *map[string]bool) {
	for _, it := range items {
		if o.Code.has(kap, it.Code) {
			if *into == nil {
				*into = map[string]bool{}
			}
			(*into)[it.Key] = *o.ValueBoolean
		}
	}
}

func minutesValue(o *observationRes) *int {
	if o.ValueQuantity == nil || o.ValueQuantity.Code != "min" {
		return nil
	}
	n, ok := scoreValue(o)
	if !ok {
		return nil
	}
	return &n
}

func (m *Mapper) checkREMS(f REMSForm) error {
	if err := check(
		checkID("sessionId", f.SessionID, true),
		checkID("clientId", f.ClientID, true),
		checkDateTime("firstDevice", f.FirstDevice, false),
		checkDateTime("monitoringEnd", f.MonitoringEnd, true),
		checkDecimal("doseMg", f.DoseMg, false),
		checkDecimal("spo2Lowest", f.SpO2Lowest, false),
	); err != nil {
		return err
	}
	if f.MonitoringHCP != nil {
		if err := checkID("monitoringHcp.id", f.MonitoringHCP.ID, true); err != nil {
			return err
		}
	}
	// Slices, not maps: the first error reported is always the same.
	for _, c := range []struct {
		expr  string
		check *REMSCheck
	}{{"vitalsAcceptableBeforeAdministration", f.VitalsBefore}, {"vitalsAcceptableBeforeCompletion", f.VitalsCompletion}} {
		if c.check != nil {
			if err := checkDateTime(c.expr+".time", c.check.Time, true); err != nil {
				return err
			}
		}
	}
	for _, v := range []struct {
		expr string
		n    *int
	}{{"monitoringMinutes", f.MonitoringMinutes}, {"minutesToReadiness", f.MinutesToReadiness}} {
		if v.n != nil && *v.n < 0 {
			return invalid(v.expr, "%s must not be negative", v.expr)
		}
	}
	for _, set := range []struct {
		expr    string
		answers map[string]bool
		items   []remsItem
	}{{"concomitant", f.Concomitant, m.t.rems.Concomitant}, {"experienced", f.Experienced, m.t.rems.Events}} {
		allowed := keys(set.items, func(it *remsItem) string { return it.Key })
		for _, k := range mapKeys(set.answers) {
			if err := checkEnum(set.expr+"."+k, k, allowed, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// REMSToFHIR records the REMS form's answers and its monitoring and
// readiness minutes as Observations of the session (§14; US Core Simple
// Observation, category exam, local codes): first treatment, REMS
// enrolment, one per concomitant medication class, vitals acceptable ×2 at
// their times, the monitoring duration and time to discharge readiness
// (valueQuantity min), one per event experienced (valueBoolean), the
// adverse events (valueString). Ids are <sessionId>-rems-<item>; the time is
// the end of monitoring. The blood pressures, SpO2, MOAA/S and CADSS are
// already Measurements. l is the program's label set.
func (m *Mapper) REMSToFHIR(f REMSForm, l Labels) ([]Resource, error) {
	if err := m.checkREMS(f); err != nil {
		return nil, err
	}
	obs := func(id, code, at string) observationRes {
		o := observationRes{
			base:              base{ResourceType: "Observation", ID: f.SessionID + "-rems-" + id, Meta: m.meta("us-core-simple-observation", l)},
			Status:            "final",
			Category:          category("exam", "Exam"),
			Code:              cc(m.t.kap(code)),
			Subject:           ref("Patient", f.ClientID),
			Encounter:         ref("Encounter", f.SessionID),
			EffectiveDateTime: at,
		}
		if f.MonitoringHCP != nil {
			o.Performer = []reference{*ref("Practitioner", f.MonitoringHCP.ID)}
		}
		return o
	}
	var e emitter
	yesNo := func(id, code, at string, v *bool) {
		if v != nil {
			o := obs(id, code, at)
			o.ValueBoolean = v
			e.add("Observation", o.ID, o)
		}
	}
	minutes := func(id, code string, v *int) {
		if v != nil {
			o := obs(id, code, f.MonitoringEnd)
			o.ValueQuantity = &quantity{Value: json.Number(fmt.Sprint(*v)), Unit: "min", System: sysUCUM, Code: "min"}
			e.add("Observation", o.ID, o)
		}
	}
	items := func(answers map[string]bool, rows []remsItem) {
		for _, it := range rows {
			if v, ok := answers[it.Key]; ok {
				yesNo(it.ID, it.Code, f.MonitoringEnd, &v)
			}
		}
	}
	yesNo("first", kapREMSFirst, f.MonitoringEnd, f.FirstTreatment)
	yesNo("enrolled", kapREMSEnrolled, f.MonitoringEnd, f.Enrolled)
	items(f.Concomitant, m.t.rems.Concomitant)
	if c := f.VitalsBefore; c != nil {
		yesNo("vitals-pre", kapVitalsOK, c.Time, &c.Acceptable)
	}
	if c := f.VitalsCompletion; c != nil {
		yesNo("vitals-end", kapVitalsOK, c.Time, &c.Acceptable)
	}
	minutes("duration", kapMonitoring, f.MonitoringMinutes)
	minutes("readiness", kapReadiness, f.MinutesToReadiness)
	items(f.Experienced, m.t.rems.Events)
	if f.AdverseEvents != "" {
		o := obs("ae", kapAdverseEvents, f.MonitoringEnd)
		o.ValueString = f.AdverseEvents
		e.add("Observation", o.ID, o)
	}
	return e.result()
}

// REMSDocumentToFHIR renders the REMS form as the submission the clinic
// keeps (the REMS portal is not FHIR): a US Core DocumentReference typed
// kap#rems-monitoring-form with the form as an XHTML attachment (text/html),
// context = the session and the monitoring period. l is the program's label
// set.
func (m *Mapper) REMSDocumentToFHIR(d Document, f REMSForm, l Labels) ([]Resource, error) {
	if err := checkDocument(d); err != nil {
		return nil, err
	}
	if err := m.checkREMS(f); err != nil {
		return nil, within("form.", err)
	}
	typ := m.t.kap(m.t.rems.Document.Code)
	x := newXHTML(typ.Display)
	yn := func(b *bool) string {
		switch {
		case b == nil:
			return ""
		case *b:
			return "Yes"
		}
		return "No"
	}
	num := func(n *int) string {
		if n == nil {
			return ""
		}
		return fmt.Sprint(*n)
	}
	check := func(c *REMSCheck) string {
		if c == nil {
			return ""
		}
		return yn(&c.Acceptable) + " (" + c.Time + ")"
	}
	bp := func(b *REMSBP) string {
		if b == nil {
			return ""
		}
		return fmt.Sprintf("%s/%s mm[Hg] at %s", b.Systolic, b.Diastolic, b.Time)
	}
	name := func(n *Name) string {
		if n == nil {
			return ""
		}
		return strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
	}
	answer := func(answers map[string]bool, key string) string {
		if v, ok := answers[key]; ok {
			return yn(&v)
		}
		return ""
	}

	x.heading("Patient")
	var pt REMSPatient
	if f.Patient != nil {
		pt = *f.Patient
	}
	x.fields([][2]string{
		{"Patient name", name(&pt.Name)}, {"Date of birth", pt.BirthDate}, {"Sex", pt.Gender},
		{"First treatment", yn(f.FirstTreatment)}, {"Enrolled in the REMS", yn(f.Enrolled)},
	})
	x.heading("Concomitant medications")
	var rows [][2]string
	for _, it := range m.t.rems.Concomitant {
		rows = append(rows, [2]string{m.t.kap(it.Code).Display, answer(f.Concomitant, it.Key)})
	}
	x.fields(rows)
	x.heading("Treatment")
	var hcp REMSPerson
	if f.MonitoringHCP != nil {
		hcp = *f.MonitoringHCP
	}
	var setting REMSSetting
	if f.Setting != nil {
		setting = *f.Setting
	}
	dose := ""
	switch {
	case f.Dose == "other":
		dose = "other: " + string(f.DoseMg) + " mg"
	case f.Dose != "":
		dose = f.Dose + " mg"
	}
	devices := ""
	if f.Devices > 0 {
		devices = fmt.Sprint(f.Devices)
	}
	x.fields([][2]string{
		{"HCP conducting monitoring", name(hcp.Name)}, {"HCP phone", hcp.Phone}, {"HCP email", hcp.Email},
		{"Healthcare setting", setting.Name}, {"Setting address", setting.Address},
		{"Treatment date", f.TreatmentDate}, {"Dose administered", dose}, {"Devices", devices},
		{"Lot number", strings.Join(f.LotNumbers, ", ")},
	})
	x.heading("Monitoring")
	x.fields([][2]string{
		{"First device administered", f.FirstDevice}, {"End of monitoring", f.MonitoringEnd},
		{"Total time from first device to end of monitoring (min)", num(f.MonitoringMinutes)},
		{fmt.Sprintf("Time to discharge readiness, if under %d min (min)", m.t.rems.MinimumMinutes), num(f.MinutesToReadiness)},
		{"Vital signs acceptable before administration", check(f.VitalsBefore)},
		{"Vital signs acceptable before completion of monitoring", check(f.VitalsCompletion)},
		{"Blood pressure prior to administration", bp(f.BPPrior)},
		{"Blood pressure about 40 minutes after administration", bp(f.BP40Min)},
		{"Blood pressure prior to completion of monitoring", bp(f.BPCompletion)},
	})
	x.heading("Observed during monitoring")
	rows = nil
	for _, it := range m.t.rems.Events {
		rows = append(rows, [2]string{m.t.kap(it.Code).Display, answer(f.Experienced, it.Key)})
	}
	spo2 := ""
	if f.SpO2Lowest != "" {
		spo2 = string(f.SpO2Lowest) + " %"
	}
	rows = append(rows, [2]string{"Lowest SpO2", spo2}, [2]string{"Lowest MOAA/S score", num(f.MOAASLowest)},
		[2]string{"Highest CADSS score", num(f.CADSSHighest)}, [2]string{"Adverse events", f.AdverseEvents})
	x.fields(rows)

	var p *period
	if f.FirstDevice != "" {
		p = &period{Start: f.FirstDevice, End: f.MonitoringEnd}
	}
	var e emitter
	e.add("DocumentReference", d.ID, m.documentReference(d, docMeta{
		typ: &codeableConcept{Coding: []Coding{typ}, Text: typ.Display}, clientID: f.ClientID, sessionID: f.SessionID,
		period: p, docStatus: "final", contentType: contentHTML, title: typ.Display,
	}, x.bytes(), l))
	return e.result()
}
