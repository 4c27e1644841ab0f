package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/kap"
)

// M is a JSON object of a KAP request.
type M = map[string]any

// kapAPI calls /kap/v1 through do (so every FHIR body is validated) and,
// with a spec, checks every request and response against openapi.yaml.
type kapAPI struct {
	t    *testing.T
	e    *env
	spec *specChecker
	// bad: the requests are bad on purpose; only responses are checked
	// against the spec.
	bad bool
}

func newKapAPI(t *testing.T, e *env) *kapAPI {
	return &kapAPI{t: t, e: e, spec: newSpecChecker(t, e.srv.URL)}
}

// call sends body (nil: none) and fails the test unless the status is want.
func (k *kapAPI) call(method, path string, body any, want int) M {
	k.t.Helper()
	r := k.raw(method, path, body)
	if r.status != want {
		k.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r.json(k.t)
}

func (k *kapAPI) raw(method, path string, body any) *response {
	k.t.Helper()
	var b string
	if body != nil {
		bs, err := json.Marshal(body)
		if err != nil {
			k.t.Fatal(err)
		}
		b = string(bs)
	}
	r := do(k.t, k.e.srv.URL, method, "/kap/v1"+path, b, "Content-Type", "application/json")
	k.spec.check(k.t, method, "/kap/v1"+path, b, r, k.bad)
	return r
}

func (k *kapAPI) create(path string, body M) string {
	k.t.Helper()
	return k.call("POST", path, body, http.StatusCreated)["id"].(string)
}

// day is a time of the test program: day d of March 2026, hh:mm, New York.
func day(d int, hhmm string) string {
	return fmt.Sprintf("2026-03-%02dT%s:00-05:00", d, hhmm)
}

// kapProgram is a program set up to the point of dosing: team, client,
// escort, enrollment, consent, intake, assessment with a weight, an mg/kg
// IM prescription and two preparations.
type kapProgram struct {
	therapist, prescriber, nurse, client, escort, program, indication, prescription, weight string
}

func setUpProgram(k *kapAPI) kapProgram {
	k.t.Helper()
	var p kapProgram
	member := func(family, role string, npi string) string {
		return k.create("/team-members", M{"name": M{"family": family}, "role": role,
			"identifiers": []M{{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}}})
	}
	p.therapist = member("Lind", "psychotherapist", "1234567893")
	p.prescriber = member("Okafor", "prescriber", "1245319599")
	p.nurse = member("Sato", "nurse", "1679576722")
	p.client = k.create("/clients", M{"name": M{"family": "Rivera", "given": []string{"Ana"}}, "gender": "female",
		"birthDate": "1984-07-12", "identifiers": []M{{"system": "https://clinic.example/mrn", "value": "MRN-1", "mrn": true}}})
	p.escort = k.create("/escorts", M{"clientId": p.client, "name": M{"family": "Rivera", "given": []string{"Marco"}}, "relationship": "spouse"})
	prog := k.call("POST", "/programs", M{
		"clientId": p.client, "status": "active", "start": "2026-03-02",
		"indications":           []M{{"indication": "mdd-recurrent-severe", "treatmentResistant": true, "role": "chief-complaint"}},
		"careManagerId":         p.therapist,
		"team":                  []M{{"memberId": p.therapist, "role": "psychotherapist"}, {"memberId": p.prescriber, "role": "prescriber"}, {"memberId": p.nurse, "role": "nurse"}},
		"plannedDosingSessions": 3,
	}, http.StatusCreated)
	p.program = prog["id"].(string)
	p.indication = prog["indications"].([]any)[0].(map[string]any)["id"].(string)
	k.create("/consents", M{"clientId": p.client, "kind": "treatment", "status": "active", "decision": "permit", "dateTime": day(2, "10:00"), "start": "2026-03-02"})
	p.session("intake", 2, "finished", k)
	assessment := p.session("medical-assessment", 3, "finished", k)
	p.weight = k.create("/measurements", M{"clientId": p.client, "sessionId": assessment, "kind": "weight", "time": day(3, "10:00"), "value": json.Number("72.4")})
	rx := k.call("POST", "/prescriptions", M{
		"programId": p.program, "sessionId": assessment, "product": "ketamine-100mg-ml", "route": "im",
		"dose": M{"value": json.Number("0.5"), "unit": "mg/kg"}, "maxPerAdministrationMg": json.Number("40"), "plannedSessions": 3,
		"status": "active", "prescriberId": p.prescriber, "authoredOn": day(3, "11:00"), "indicationIds": []string{p.indication},
	}, http.StatusCreated)
	if rx["calculatedMg"] != json.Number("36.2") || rx["weightObservationId"] != p.weight {
		k.t.Errorf("0.5 mg/kg at 72.4 kg: calculatedMg %v from %v, want 36.2 from the weight %s", rx["calculatedMg"], rx["weightObservationId"], p.weight)
	}
	p.prescription = rx["id"].(string)
	p.session("preparation", 4, "finished", k)
	p.session("preparation", 5, "finished", k)
	return p
}

// session creates a session of kind on day d (09:00-10:00).
func (p kapProgram) session(kind string, d int, status string, k *kapAPI) string {
	k.t.Helper()
	body := M{"programId": p.program, "kind": kind, "status": status, "start": day(d, "09:00"),
		"participants": []M{{"memberId": p.therapist, "role": "lead"}}}
	if status == "finished" {
		body["end"] = day(d, "10:00")
	}
	return k.create("/sessions", body)
}

// dose runs a dosing session on day d to its discharge: planned, escort
// confirmed, started, BP before and after an IM dose, readiness, release.
func (p kapProgram) dose(k *kapAPI, d int) string {
	k.t.Helper()
	s := k.create("/sessions", M{"programId": p.program, "kind": "dosing", "product": "ketamine", "status": "planned", "start": day(d, "09:00"),
		"participants": []M{{"memberId": p.therapist, "role": "lead"}, {"memberId": p.nurse, "role": "secondary"}}})
	k.call("POST", "/sessions/"+s+"/escort-confirmation", M{"escortId": p.escort, "time": day(d, "08:55"), "performerId": p.nurse}, http.StatusOK)
	k.call("POST", "/sessions/"+s+"/status", M{"status": "in-progress", "time": day(d, "09:00"), "prescriptionId": p.prescription}, http.StatusOK)
	bp := func(hhmm string) {
		k.create("/measurements", M{"clientId": p.client, "sessionId": s, "kind": "bp", "time": day(d, hhmm), "systolic": json.Number("128"), "diastolic": json.Number("82"), "performerId": p.nurse})
	}
	bp("09:05")
	k.create("/administrations", M{"sessionId": s, "prescriptionId": p.prescription, "product": "ketamine-100mg-ml", "route": "im",
		"doseMg": json.Number("36.2"), "time": day(d, "09:15"), "performerId": p.prescriber, "witnessId": p.nurse, "status": "completed"})
	bp("10:00")
	k.create("/measurements", M{"clientId": p.client, "sessionId": s, "kind": "discharge-ready", "time": day(d, "10:50"), "finding": true, "performerId": p.nurse})
	out := k.call("POST", "/sessions/"+s+"/discharge", M{"time": day(d, "10:50"), "releasedToEscort": true, "performerId": p.nurse}, http.StatusOK)
	if want := (M{"time": day(d, "10:50"), "releasedToEscort": true, "performerId": p.nurse, "instructionEnd": day(d, "18:50")}); !cmp.Equal(out["discharge"], any(map[string]any(want))) {
		k.t.Errorf("discharge: %s", cmp.Diff(want, out["discharge"]))
	}
	return s
}

// TestKapProgramEndToEnd runs a whole program through /kap/v1 and checks
// the FHIR resources it produced (acceptance 1; every call is checked
// against openapi.yaml, acceptance 3).
func TestKapProgramEndToEnd(t *testing.T) {
	e := newEnv(t)
	k := newKapAPI(t, e)
	p := setUpProgram(k)
	k.create("/intentions", M{"clientId": p.client, "text": "Reconnect with my children", "status": "active", "start": "2026-03-04"})
	k.create("/measurements", M{"clientId": p.client, "kind": "phq9", "time": day(2, "09:30"), "items": []int{3, 2, 2, 3, 1, 2, 1, 0, 1}})
	var dosing []string
	for d := 9; d <= 11; d++ {
		dosing = append(dosing, p.dose(k, d))
	}
	integration := p.session("integration", 12, "finished", k)
	k.create("/measurements", M{"clientId": p.client, "kind": "phq9", "time": day(12, "10:30"), "items": []int{1, 1, 0, 1, 0, 1, 0, 0, 0}})

	// Reads in clinic terms.
	sessions := k.call("GET", "/programs/"+p.program+"/sessions?kind=dosing", nil, http.StatusOK)["items"].([]any)
	if len(sessions) != 3 {
		t.Errorf("%d dosing sessions listed, want 3", len(sessions))
	}
	for _, s := range sessions {
		if s := s.(map[string]any); s["status"] != "finished" || s["escortId"] != p.escort || s["discharge"] == nil {
			t.Errorf("dosing session as read: %v", s)
		}
	}
	bps, pages := 0, 0
	for path := "/clients/" + p.client + "/measurements?kind=bp&limit=4"; path != ""; pages++ {
		page := k.call("GET", path, nil, http.StatusOK)
		bps += len(page["items"].([]any))
		path = ""
		if next, ok := page["next"].(string); ok {
			path = "/clients/" + p.client + "/measurements?kind=bp&limit=4&cursor=" + url.QueryEscape(next)
		}
	}
	if bps != 6 || pages < 2 {
		t.Errorf("%d blood pressures on %d pages of 4, want 6 on several", bps, pages)
	}
	phq := k.call("GET", "/clients/"+p.client+"/measurements?kind=phq9", nil, http.StatusOK)["items"].([]any)
	if len(phq) != 2 || phq[0].(map[string]any)["severity"] == nil {
		t.Errorf("PHQ-9 measurements (panels only, scored): %v", phq)
	}
	doses := k.call("GET", "/sessions/"+dosing[0]+"/administrations", nil, http.StatusOK)["items"].([]any)
	if len(doses) != 1 || doses[0].(map[string]any)["doseMg"] != json.Number("36.2") {
		t.Errorf("administrations of the first dosing session: %v", doses)
	}
	prog := k.call("GET", "/programs/"+p.program, nil, http.StatusOK)
	if prog["status"] != "active" || len(prog["team"].([]any)) != 3 || prog["plannedDosingSessions"] != json.Number("3") && prog["plannedDosingSessions"] != float64(3) {
		t.Errorf("program as read: %v", prog)
	}

	summary := k.call("GET", "/programs/"+p.program+"/summary", nil, http.StatusOK)
	want := M{
		"sessions": M{
			"intake": M{"finished": json.Number("1")}, "medical-assessment": M{"finished": json.Number("1")},
			"preparation": M{"finished": json.Number("2")}, "dosing": M{"finished": json.Number("3")}, "integration": M{"finished": json.Number("1")},
		},
		"dosesByRoute": M{"intramuscular": json.Number("3")},
		"phq9": M{
			"count": json.Number("2"), "baseline": M{"total": json.Number("15"), "time": day(2, "09:30")}, "latest": M{"total": json.Number("4"), "time": day(12, "10:30")},
			"change": json.Number("-11"), "percentChange": json.Number("-73.3"), "response": true, "remission": true,
		},
		"dosing":          M{"completed": json.Number("3"), "recommended": json.Number("3"), "reached": true},
		"openSafetyItems": []any{},
	}
	if d := cmp.Diff(jsonRound(t, want), summary); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}

	checkKapFHIR(t, e, p, dosing[0])

	// Every read route answers as openapi.yaml says (the spec checker).
	items := func(path string) []any { return k.call("GET", path, nil, http.StatusOK)["items"].([]any) }
	for path, n := range map[string]int{
		"/clients": 1, "/team-members": 3, "/programs?clientId=" + p.client + "&status=active": 1,
		"/programs/" + p.program + "/prescriptions": 1, "/clients/" + p.client + "/consents": 1,
		"/clients/" + p.client + "/intentions": 1, "/clients/" + p.client + "/escorts": 1,
		"/clients/" + p.client + "/measurements?sessionId=" + dosing[0]: 5, // 2 BP, escort confirmed, ready, released
	} {
		list := items(path)
		if len(list) != n {
			t.Errorf("GET %s: %d items, want %d", path, len(list), n)
		}
		for _, it := range list {
			id := it.(map[string]any)["id"].(string)
			single := strings.SplitN(path, "?", 2)[0]
			switch {
			case strings.HasPrefix(single, "/clients/"):
				single = "/" + strings.Split(single, "/")[3]
			case strings.HasPrefix(single, "/programs/"):
				single = "/prescriptions"
			}
			if got := k.call("GET", single+"/"+id, nil, http.StatusOK); !cmp.Equal(got, it) {
				t.Errorf("GET %s/%s differs from its list item: %s", single, id, cmp.Diff(it, got))
			}
		}
	}
	for _, path := range []string{"/sessions/" + dosing[0], "/administrations/" + doses[0].(map[string]any)["id"].(string)} {
		k.call("GET", path, nil, http.StatusOK)
	}
	checkNote(t, e, integration, "34904-3")
	checkNote(t, e, dosing[0], "78472-8")
	checkREMS(t, e, k, p)

	done := k.call("POST", "/programs/"+p.program+"/status", M{"status": "finished", "time": day(13, "12:00")}, http.StatusOK)
	if h := done["statusHistory"].([]any); len(h) != 2 || done["end"] != day(13, "12:00") {
		t.Errorf("finished program: %v", done)
	}

	// The FHIR operation gives the same summary as Parameters.
	op := e.get("/fhir/EpisodeOfCare/" + p.program + "/$kap-summary")
	if op.status != http.StatusOK || !strings.Contains(string(op.body), `"name":"remission","valueBoolean":true`) {
		t.Errorf("$kap-summary: %d %s", op.status, op.body)
	}
}

// checkNote checks the session note a finished session left for the EHRs
// (DocumentReference <session>-note, typed with the kind's LOINC note).
func checkNote(t *testing.T, e *env, session, loinc string) {
	t.Helper()
	r := e.get("/fhir/DocumentReference/" + session + "-note")
	body := string(r.body)
	for _, w := range []string{`"code":"` + loinc + `"`, `"code":"clinical-note"`, `"reference":"Encounter/` + session + `"`, `"docStatus":"final"`, `"code":"PSY"`} {
		if r.status != http.StatusOK || !strings.Contains(body, w) {
			t.Errorf("session note of %s: %d, want %s: %s", session, r.status, w, body)
		}
	}
}

// checkREMS runs an esketamine dosing session on day 13 — Spravato 56 mg
// self-administered at 09:10 under the nurse's observation, BPs at 09:05,
// 09:52 and 11:05, discharge at 11:15 with the clinician's REMS answers —
// and checks the REMS form read back and the FHIR resources written.
func checkREMS(t *testing.T, e *env, k *kapAPI, p kapProgram) {
	t.Helper()
	const d = 13
	rx := k.create("/prescriptions", M{"programId": p.program, "product": "spravato", "route": "intranasal", "dose": M{"value": json.Number("56"), "unit": "mg"},
		"status": "active", "prescriberId": p.prescriber, "authoredOn": day(d, "08:00")})
	s := k.create("/sessions", M{"programId": p.program, "kind": "dosing", "product": "esketamine", "status": "in-progress", "start": day(d, "09:00"),
		"escortId": p.escort, "prescriptionId": rx, "participants": []M{{"memberId": p.prescriber, "role": "lead"}, {"memberId": p.nurse, "role": "secondary"}}})
	measure := func(kind, hhmm string, extra M) {
		body := M{"clientId": p.client, "sessionId": s, "kind": kind, "time": day(d, hhmm), "performerId": p.nurse}
		for key, v := range extra {
			body[key] = v
		}
		k.create("/measurements", body)
	}
	bp := func(hhmm, sys string) {
		measure("bp", hhmm, M{"systolic": json.Number(sys), "diastolic": json.Number("80")})
	}
	bp("09:05", "124")
	k.create("/administrations", M{"sessionId": s, "prescriptionId": rx, "product": "spravato", "route": "intranasal", "doseMg": json.Number("56"),
		"time": day(d, "09:10"), "selfAdministered": true, "witnessId": p.nurse, "lotNumber": "LOT-7", "status": "completed"})
	bp("09:52", "142")
	bp("11:05", "128")
	measure("discharge-ready", "11:10", M{"finding": true})
	answers := M{
		"firstTreatment": true, "remsEnrolled": true,
		"concomitant":                          M{"benzodiazepines": false, "psychostimulants": true},
		"vitalsAcceptableBeforeAdministration": M{"time": day(d, "09:06"), "acceptable": true},
		"vitalsAcceptableBeforeCompletion":     M{"time": day(d, "11:06"), "acceptable": true},
		"experienced":                          M{"sedation": false, "dissociation": true},
		"adverseEvents":                        "transient dizziness",
	}
	k.bad = true // an answer the form has not: 400 naming it, nothing stored
	bad := k.raw("POST", "/sessions/"+s+"/discharge", M{"time": day(d, "11:15"), "releasedToEscort": true, "rems": M{"concomitant": M{"alcohol": true}}})
	k.bad = false
	if bad.status != http.StatusBadRequest || bad.expression(t) != "rems.concomitant.alcohol" {
		t.Errorf("discharge with an unknown REMS answer: %d at %q, want 400 at rems.concomitant.alcohol: %s", bad.status, bad.expression(t), bad.body)
	}
	k.call("POST", "/sessions/"+s+"/discharge", M{"time": day(d, "11:15"), "releasedToEscort": true, "performerId": p.nurse,
		"note": "Calm session.", "rems": answers}, http.StatusOK)

	form := k.call("GET", "/sessions/"+s+"/rems", nil, http.StatusOK)
	bpAt := func(hhmm, sys string) M {
		return M{"time": day(d, hhmm), "systolic": json.Number(sys), "diastolic": json.Number("80")}
	}
	want := M{
		"sessionId": s, "clientId": p.client, "treatmentDate": "2026-03-13", "doseMg": json.Number("56"), "dose": "56", "devices": json.Number("2"),
		"lotNumbers": []any{"LOT-7"}, "firstDevice": day(d, "09:10"), "monitoringEnd": day(d, "11:15"), "monitoringMinutes": json.Number("125"),
		"bpPrior": bpAt("09:05", "124"), "bp40Min": bpAt("09:52", "142"), "bpPriorToCompletion": bpAt("11:05", "128"),
	}
	for key, v := range answers {
		want[key] = v
	}
	got := M{}
	for key := range want {
		got[key] = form[key]
	}
	if diff := cmp.Diff(jsonRound(t, want), got); diff != "" {
		t.Errorf("REMS form (-want +got):\n%s", diff)
	}
	if hcp, _ := form["monitoringHcp"].(map[string]any); hcp["id"] != p.nurse || hcp["name"] == nil {
		t.Errorf("REMS monitoring HCP %v, want the witness %s with a name", form["monitoringHcp"], p.nurse)
	}

	for path, wants := range map[string][]string{
		"Observation/" + s + "-rems-first":      {`"code":"rems-first-treatment"`, `"valueBoolean":true`, `"code":"exam"`},
		"Observation/" + s + "-rems-stimulant":  {`"code":"rems-psychostimulants"`, `"valueBoolean":true`},
		"Observation/" + s + "-rems-duration":   {`"code":"monitoring-duration"`, `"value":125`, `"code":"min"`},
		"Observation/" + s + "-rems-ae":         {`"code":"rems-adverse-events"`, `"valueString":"transient dizziness"`},
		"DocumentReference/" + s + "-rems-form": {`"code":"rems-monitoring-form"`, `"contentType":"text/html"`, `"reference":"Practitioner/` + p.nurse + `"`},
		"DocumentReference/" + s + "-note":      {`"code":"78472-8"`, `"docStatus":"final"`},
	} {
		r := e.get("/fhir/" + path)
		body := string(r.body)
		for _, w := range append(wants, `"reference":"Encounter/`+s+`"`, `"code":"R"`, `"code":"PSY"`) {
			if r.status != http.StatusOK || !strings.Contains(body, w) {
				t.Errorf("%s: %d, want %s: %s", path, r.status, w, body)
			}
		}
	}
	if r := k.raw("GET", "/sessions/"+p.session("integration", d, "planned", k)+"/rems", nil); r.status != http.StatusNotFound {
		t.Errorf("REMS form of an integration session: %d, want 404", r.status)
	}
}

// jsonRound is v as the API's JSON decodes (numbers as json.Number).
func jsonRound(t *testing.T, v any) M {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return (&response{body: b}).json(t)
}

// checkKapFHIR checks the FHIR resources the program produced: codes of
// the mapping spec, references between them, security labels.
func checkKapFHIR(t *testing.T, e *env, p kapProgram, dosing string) {
	t.Helper()
	read := func(path string) string {
		r := e.get("/fhir/" + path)
		if r.status != http.StatusOK {
			t.Fatalf("GET /fhir/%s: %d %s", path, r.status, r.body)
		}
		return string(r.body)
	}
	labels := []string{`"code":"R"`, `"code":"PSY"`}
	for _, c := range []struct {
		path string
		want []string
	}{
		{"EpisodeOfCare/" + p.program, append([]string{`"code":"kap-program"`, `"reference":"Patient/` + p.client + `"`, `"reference":"Condition/` + p.indication + `"`}, labels...)},
		{"Condition/" + p.indication, []string{`"system":"http://hl7.org/fhir/sid/icd-10-cm"`}},
		{"Encounter/" + dosing, append([]string{`"code":"dosing"`, `"reference":"EpisodeOfCare/` + p.program + `"`, `"reference":"RelatedPerson/` + p.escort + `"`, `"status":"finished"`}, labels...)},
		{"MedicationRequest/" + p.prescription, append([]string{`"code":"238083"`, `"reference":"Observation/` + p.weight + `"`, `"value":36.2`, `"code":"mg/kg"`}, labels...)},
		{"CarePlan/" + dosing + "-discharge", []string{`"reference":"Encounter/` + dosing + `"`, `"code":"no-driving-8h"`}},
		{"Flag/" + dosing + "-no-driving", []string{`"code":"no-driving"`, `"code":"safety"`}},
		{"Observation/" + dosing + "-released", []string{`"valueBoolean":true`, `"reference":"RelatedPerson/` + p.escort + `"`}},
		{"MedicationAdministration?context=Encounter/" + dosing, []string{`"reference":"MedicationRequest/` + p.prescription + `"`, `"code":"78421000"`, `"code":"witness"`}},
		{"Observation?encounter=Encounter/" + dosing + "&code=http://loinc.org|85354-9", []string{`"effectiveDateTime":"` + day(9, "10:00") + `"`, `"code":"8480-6"`, `"code":"8462-4"`}},
	} {
		body := read(c.path)
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s does not contain %s:\n%s", c.path, w, body)
			}
		}
	}
}

// TestKapReadsFHIRWrites: a resource written through the FHIR API that
// fits the KAP model is read by the KAP API; a substance-use program
// labels its resources SUD and 42CFRPart2.
func TestKapReadsFHIRWrites(t *testing.T) {
	e := newEnv(t)
	k := newKapAPI(t, e)
	client := k.create("/clients", M{"name": M{"family": "Moss"}, "gender": "male", "identifiers": []M{{"system": "https://clinic.example/mrn", "value": "MRN-2"}}})
	program := k.create("/programs", M{"clientId": client, "status": "active", "start": "2026-03-02",
		"indications": []M{{"indication": "alcohol-use-disorder", "role": "chief-complaint"}}})
	eoc := string(e.get("/fhir/EpisodeOfCare/" + program).body)
	for _, label := range []string{`"code":"R"`, `"code":"PSY"`, `"code":"SUD"`, `"code":"42CFRPart2"`} {
		if !strings.Contains(eoc, label) {
			t.Errorf("the substance-use program lacks %s: %s", label, eoc)
		}
	}
	enc := e.create("Encounter", `{"resourceType":"Encounter","status":"finished",
		"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
		"type":[{"coding":[{"system":"https://kapfhir.org/fhir/CodeSystem/kap","code":"preparation"}]}],
		"subject":{"reference":"Patient/`+client+`"},"episodeOfCare":[{"reference":"EpisodeOfCare/`+program+`"}],
		"period":{"start":"2026-03-04T09:00:00-05:00","end":"2026-03-04T10:00:00-05:00"}}`)
	got := k.call("GET", "/programs/"+program+"/sessions?kind=preparation", nil, http.StatusOK)["items"].([]any)
	want := []any{M{"id": enc, "programId": program, "clientId": client, "kind": "preparation", "status": "finished",
		"start": "2026-03-04T09:00:00-05:00", "end": "2026-03-04T10:00:00-05:00"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the Encounter written through /fhir as a KAP session (-want +got):\n%s", d)
	}
	// A no-driving Flag written through /fhir is an open safety item
	// until it ends.
	e.create("Flag", `{"resourceType":"Flag","status":"active","code":{"coding":[{"system":"https://kapfhir.org/fhir/CodeSystem/kap","code":"no-driving"}]},
		"subject":{"reference":"Patient/`+client+`"},"encounter":{"reference":"Encounter/`+enc+`"},"period":{"start":"2026-03-04T10:00:00-05:00","end":"2099-01-01T00:00:00Z"}}`)
	summary := k.call("GET", "/programs/"+program+"/summary", nil, http.StatusOK)
	if d := cmp.Diff(M{"preparation": M{"finished": json.Number("1")}}, summary["sessions"]); d != "" {
		t.Errorf("summary sessions (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]any{M{"kind": "no-driving", "session": enc, "until": "2099-01-01T00:00:00Z"}}, summary["openSafetyItems"]); d != "" {
		t.Errorf("open safety items (-want +got):\n%s", d)
	}
}

// TestKapErrors: bad requests are 4xx OperationOutcomes naming the field.
func TestKapErrors(t *testing.T) {
	e := newEnv(t)
	k := newKapAPI(t, e)
	client := k.create("/clients", M{"name": M{"family": "Moss"}, "gender": "male", "identifiers": []M{{"system": "https://clinic.example/mrn", "value": "MRN-3"}}})
	program := k.create("/programs", M{"clientId": client, "status": "active", "start": "2026-03-02"})
	k.bad = true
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		expression         string
	}{
		{"unknown field", "POST", "/clients", M{"name": M{"family": "X"}, "gender": "male", "nickname": "x"}, 400, "nickname"},
		{"wrong type", "POST", "/clients", M{"name": "X", "gender": "male"}, 400, "name"},
		{"mapping check", "POST", "/clients", M{"name": M{"family": "X"}, "gender": "robot", "identifiers": []M{{"system": "s", "value": "v"}}}, 400, "gender"},
		{"unknown program", "POST", "/sessions", M{"programId": "nope", "kind": "intake", "status": "planned"}, 422, "programId"},
		{"unknown client", "POST", "/programs", M{"clientId": "nope", "status": "active", "start": "2026-03-02"}, 422, "clientId"},
		{"unknown filter", "GET", "/programs?client=" + client, nil, 400, "client"},
		{"bad limit", "GET", "/clients?limit=0", nil, 400, "limit"},
		{"bad cursor", "GET", "/clients?cursor=abc", nil, 400, "cursor"},
		{"malformed override", "POST", "/sessions", M{"programId": program, "kind": "dosing", "product": "ketamine", "status": "in-progress", "route": "im",
			"override": M{"rules": []string{"dosing.escort-required"}}}, 400, "override.reason"},
		{"dosing without an order", "POST", "/sessions", M{"programId": program, "kind": "dosing", "product": "ketamine", "status": "in-progress"}, 400, "route"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k.t = t
			defer func() { k.t = e.t }()
			r := k.raw(c.method, c.path, c.body)
			if r.status != c.status || r.expression(t) != c.expression {
				t.Errorf("%d at %q, want %d at %q: %s", r.status, r.expression(t), c.status, c.expression, r.body)
			}
		})
	}
	for _, path := range []string{"/kap/v1/clients/nope", "/fhir/EpisodeOfCare/nope/$kap-summary", "/fhir/Patient/" + client + "/$kap-summary"} {
		if r := e.get(path); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404: %s", path, r.status, r.body)
		}
	}
}

// TestKapDefinitions: CodeSystem/kap and OperationDefinition/kap-summary
// are served as resources (valid per google/fhir/go through do), found by
// their canonical URL, and publishing them again writes no new version.
func TestKapDefinitions(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for range 2 { // the second time is a restart: nothing changes
		if err := e.kap.PublishDefinitions(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ path, want string }{
		{"/fhir/CodeSystem/kap", `"code":"dose.weight-required"`},
		{"/fhir/CodeSystem?url=" + url.QueryEscape(kap.CodeSystem), `"code":"rule-override"`},
		{"/fhir/OperationDefinition/kap-summary", `"url":"` + kap.SummaryOperation + `"`},
		{"/fhir/OperationDefinition?url=" + url.QueryEscape(kap.SummaryOperation), `"code":"kap-summary"`},
	} {
		r := e.get(c.path)
		body := strings.ReplaceAll(strings.ReplaceAll(string(r.body), " ", ""), "\n", "")
		if r.status != http.StatusOK || !strings.Contains(body, c.want) || !strings.Contains(body, `"versionId":"1"`) {
			t.Errorf("GET %s: %d, want 200 with %s at version 1: %s", c.path, r.status, c.want, r.body)
		}
	}
	caps := e.get("/fhir/metadata")
	if !strings.Contains(string(caps.body), kap.SummaryOperation) {
		t.Errorf("the CapabilityStatement does not name %s", kap.SummaryOperation)
	}
}
