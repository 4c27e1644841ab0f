package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/internal/kap"
)

// kapRequest is a guarded request ready to send, with an override or nil.
type kapRequest func(override M) *response

// ruleCase prepares a request that breaks one rule and the same request
// with the rule's precondition met.
type ruleCase struct {
	without, with func() kapRequest
}

// TestKapRules: for every rule code, the request is refused without its
// precondition (422 naming the code), accepted with it, and accepted with
// an override that is recorded as a Provenance and counted (acceptance 2).
func TestKapRules(t *testing.T) {
	e := newEnv(t)
	k := &kapAPI{t: t, e: e, spec: newSpecChecker(t, e.srv.URL)}
	p := setUpProgram(k)
	const d = 9 // the day of the dosing sessions

	start := func(confirm bool, order M) kapRequest { return startDosing(k, p, day(d, "09:00"), confirm, order) }
	byRx := M{"prescriptionId": p.prescription}
	// started creates a dosing session started at once, its escort
	// confirmed in the same request.
	started := func() string {
		return k.create("/sessions", M{"programId": p.program, "kind": "dosing", "product": "ketamine", "status": "in-progress",
			"start": day(d, "09:00"), "escortId": p.escort, "prescriptionId": p.prescription})
	}
	administer := func(s, mg string) kapRequest {
		return func(ov M) *response {
			return k.raw("POST", "/administrations", withOverride(M{"sessionId": s, "prescriptionId": p.prescription, "product": "ketamine-100mg-ml", "route": "im",
				"doseMg": json.Number(mg), "time": day(d, "09:15"), "performerId": p.prescriber, "status": "completed"}, ov))
		}
	}
	prescribe := func(authored string) kapRequest {
		return func(ov M) *response {
			return k.raw("POST", "/prescriptions", withOverride(M{"programId": p.program, "product": "ketamine-100mg-ml", "route": "im",
				"dose": M{"value": json.Number("0.5"), "unit": "mg/kg"}, "status": "active", "prescriberId": p.prescriber, "authoredOn": authored}, ov))
		}
	}
	// discharge doses a started session at 09:15 and observes it as the
	// flags say, then returns the discharge at time.
	type obs struct{ bpPre, bpPost, ready, released bool }
	all := obs{true, true, true, true}
	discharge := func(o obs, time string) func() kapRequest {
		return func() kapRequest {
			s := started()
			measure := func(kind, hhmm string, extra M) {
				body := M{"clientId": p.client, "sessionId": s, "kind": kind, "time": day(d, hhmm)}
				for key, v := range extra {
					body[key] = v
				}
				k.create("/measurements", body)
			}
			bp := M{"systolic": json.Number("120"), "diastolic": json.Number("80")}
			if o.bpPre {
				measure("bp", "09:05", bp)
			}
			if r := administer(s, "36.2")(nil); r.status != http.StatusCreated {
				k.t.Fatalf("dose: %d %s", r.status, r.body)
			}
			if o.bpPost {
				measure("bp", "09:56", bp)
			}
			if o.ready {
				measure("discharge-ready", "09:58", M{"finding": true})
			}
			return func(ov M) *response {
				return k.raw("POST", "/sessions/"+s+"/discharge", withOverride(M{"time": day(d, time), "releasedToEscort": o.released, "performerId": p.nurse}, ov))
			}
		}
	}
	setStatus := func(path, status string) {
		k.call("POST", path+"/status", M{"status": status, "time": day(d, "08:00")}, http.StatusOK)
	}
	sessions := k.call("GET", "/programs/"+p.program+"/sessions", nil, http.StatusOK)["items"].([]any)
	sessionOf := func(kind string) string {
		for _, s := range sessions {
			if s := s.(map[string]any); s["kind"] == kind {
				return "/sessions/" + s["id"].(string)
			}
		}
		k.t.Fatalf("no %s session", kind)
		return ""
	}

	cases := map[kap.RuleCode]ruleCase{
		kap.RuleProgramInactive: {
			without: func() kapRequest { setStatus("/programs/"+p.program, "onhold"); return start(true, byRx) },
			with:    func() kapRequest { setStatus("/programs/"+p.program, "active"); return start(true, byRx) },
		},
		kap.RuleAssessmentRequired: {
			without: func() kapRequest { setStatus(sessionOf("medical-assessment"), "cancelled"); return start(true, byRx) },
			with:    func() kapRequest { setStatus(sessionOf("medical-assessment"), "finished"); return start(true, byRx) },
		},
		kap.RulePreparationMinimum: {
			without: func() kapRequest { setStatus(sessionOf("preparation"), "cancelled"); return start(true, byRx) },
			with:    func() kapRequest { setStatus(sessionOf("preparation"), "finished"); return start(true, byRx) },
		},
		kap.RulePrescriptionRequired: {
			without: func() kapRequest { return start(true, M{"route": "oral"}) },
			with: func() kapRequest {
				k.create("/prescriptions", M{"programId": p.program, "product": "ketamine", "route": "oral", "dose": M{"value": json.Number("100"), "unit": "mg"},
					"status": "active", "prescriberId": p.prescriber, "authoredOn": day(d, "08:00")})
				return start(true, M{"route": "oral"})
			},
		},
		kap.RuleConsentRequired: {
			without: func() kapRequest { return startDosing(k, p, "2026-03-01T09:00:00-05:00", true, byRx) },
			with:    func() kapRequest { return startDosing(k, p, day(d, "09:00"), true, byRx) },
		},
		kap.RuleEscortRequired: {
			without: func() kapRequest { return start(false, byRx) },
			with:    func() kapRequest { return start(true, byRx) },
		},
		kap.RuleDoseMaxExceeded: {
			without: func() kapRequest { return administer(started(), "45") },
			with:    func() kapRequest { return administer(started(), "40") },
		},
		kap.RuleWeightRequired: {
			without: func() kapRequest { return prescribe(day(3, "09:00")) }, // before the weight of 10:00
			with:    func() kapRequest { return prescribe(day(3, "11:00")) },
		},
		kap.RuleBloodPressurePre:  {without: discharge(obs{false, true, true, true}, "10:50"), with: discharge(all, "10:50")},
		kap.RuleBloodPressurePost: {without: discharge(obs{true, false, true, true}, "10:50"), with: discharge(all, "10:50")},
		kap.RuleReadiness:         {without: discharge(obs{true, true, false, true}, "10:50"), with: discharge(all, "10:50")},
		kap.RuleObservationTime:   {without: discharge(all, "10:00"), with: discharge(all, "10:50")},
		kap.RuleDischargeEscort:   {without: discharge(obs{true, true, true, false}, "10:50"), with: discharge(all, "10:50")},
	}
	for _, code := range kap.RuleCodes() {
		c, ok := cases[code]
		if !ok {
			t.Errorf("rule %s has no case", code)
			continue
		}
		t.Run(string(code), func(t *testing.T) {
			k.t = t
			defer func() { k.t = e.t }()
			req := c.without()
			r := req(nil)
			if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"code":"`+string(code)+`"`) {
				t.Fatalf("without the precondition: %d, want 422 naming %s: %s", r.status, code, r.body)
			}
			before := overrides(t, e, code)
			reason := "clinician's judgement for " + string(code)
			r = req(M{"rules": []string{string(code)}, "reason": reason, "clinician": p.prescriber})
			if r.status >= 300 {
				t.Fatalf("overridden: %d %s", r.status, r.body)
			}
			checkOverride(t, e, code, reason, p.prescriber, before)
			if code == kap.RuleWeightRequired {
				checkUncalculated(t, e, r)
			}
			if r := c.with()(nil); r.status >= 300 {
				t.Errorf("with the precondition: %d %s", r.status, r.body)
			}
		})
	}
}

// checkOverride checks that an accepted override of code was counted and
// recorded as a Provenance by the clinician with the reason.
func checkOverride(t *testing.T, e *env, code kap.RuleCode, reason, clinician string, before float64) {
	t.Helper()
	if got := overrides(t, e, code); got != before+1 {
		t.Errorf("overrides counted for %s: %v, want %v", code, got, before+1)
	}
	prov := e.get("/fhir/Provenance?agent=Practitioner/" + clinician + "&_count=1000")
	if !strings.Contains(string(prov.body), reason) || !strings.Contains(string(prov.body), `"code":"`+string(code)+`"`) {
		t.Errorf("no Provenance records the override of %s: %s", code, prov.body)
	}
}

// checkUncalculated checks a prescription written by overriding
// dose.weight-required: the mg/kg order alone, no calculated mg, no weight.
func checkUncalculated(t *testing.T, e *env, r *response) {
	t.Helper()
	rx := r.json(t)
	if rx["calculatedMg"] != nil || rx["weightObservationId"] != nil {
		t.Errorf("a prescription without a weight has a calculation: %v", rx)
	}
	mr := e.get("/fhir/MedicationRequest/" + rx["id"].(string))
	if body := string(mr.body); mr.status != http.StatusOK || !strings.Contains(body, `"code":"mg/kg"`) || strings.Contains(body, `"calculated"`) || strings.Contains(body, `"Observation/`) {
		t.Errorf("MedicationRequest without a weight: %d %s", mr.status, body)
	}
}

// startDosing plans a dosing session at a time (its escort confirmed or
// not) and returns the request starting it then with order.
func startDosing(k *kapAPI, p kapProgram, at string, confirm bool, order M) kapRequest {
	s := k.create("/sessions", M{"programId": p.program, "kind": "dosing", "product": "ketamine", "status": "planned", "start": at})
	if confirm {
		k.call("POST", "/sessions/"+s+"/escort-confirmation", M{"escortId": p.escort, "time": at}, http.StatusOK)
	}
	return func(ov M) *response {
		body := withOverride(M{"status": "in-progress", "time": at}, ov)
		for key, v := range order {
			body[key] = v
		}
		return k.raw("POST", "/sessions/"+s+"/status", body)
	}
}

// withOverride adds the override, if any, to a request body.
func withOverride(body, ov M) M {
	if ov != nil {
		body["override"] = ov
	}
	return body
}

// overrides reads kapfhir_kap_rule_overrides_total{rule}.
func overrides(t *testing.T, e *env, rule kap.RuleCode) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kapfhir_kap_rule_overrides_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" && l.GetValue() == string(rule) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no override counter for %s", rule)
	return 0
}
