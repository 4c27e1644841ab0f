package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/internal/kap"
)

// TestKapRulesSeeFHIRWrites: the three checks that turn stricter with more
// records read a record written through /fhir at once, however it was
// written (a plain create, a transaction entry, or a PATCH moving it from
// another patient to the client): every write keeps the client's index
// (docs/architecture.md, "The client index"). A prescription with a lower
// maximum refuses a dose naming no prescription above it; a newer weight is
// the one of an mg/kg calculation; a later dose holds the discharge until
// its minimum observation time has passed.
func TestKapRulesSeeFHIRWrites(t *testing.T) {
	for _, mode := range []string{"plain", "transaction", "patch"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			k := newKapAPI(t, e)
			p := setUpProgram(k)
			const d = 9
			other := e.create("Patient", `{"resourceType":"Patient","gender":"male"}`)
			listed := func(ref string) bool {
				t.Helper()
				var l struct {
					Entry []struct{ Item struct{ Reference string } }
				}
				if err := json.Unmarshal(e.get("/fhir/List/"+p.client+"-kap").body, &l); err != nil {
					t.Fatal(err)
				}
				return slices.ContainsFunc(l.Entry, func(x struct{ Item struct{ Reference string } }) bool { return x.Item.Reference == ref })
			}
			// write stores a copy of a KAP-written resource, changed by
			// edit, through /fhir in the mode under test; its id.
			write := func(typ, id string, edit func(M)) string {
				t.Helper()
				var m M
				dec := json.NewDecoder(bytes.NewReader(e.get("/fhir/" + typ + "/" + id).body))
				dec.UseNumber()
				if err := dec.Decode(&m); err != nil {
					t.Fatal(err)
				}
				delete(m, "id")
				delete(m, "meta")
				edit(m)
				client := m["subject"].(map[string]any)["reference"]
				if mode == "patch" {
					m["subject"] = M{"reference": "Patient/" + other}
				}
				body, _ := json.Marshal(m)
				var newID string
				switch mode {
				case "transaction":
					r := e.do("POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:4f6a0b52-3c1d-4d55-9a51-2b8c1e7d9f10","resource":`+string(body)+`,"request":{"method":"POST","url":"`+typ+`"}}]}`)
					if r.status != http.StatusOK {
						t.Fatalf("transaction: %d %s", r.status, r.body)
					}
					loc := r.json(t)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
					newID = strings.Split(strings.TrimPrefix(loc, typ+"/"), "/")[0]
				default:
					newID = e.create(typ, string(body))
				}
				if mode == "patch" {
					if listed(typ + "/" + newID) {
						t.Fatalf("%s/%s of another patient is in the client's index", typ, newID)
					}
					r := e.do("PATCH", "/fhir/"+typ+"/"+newID, `[{"op":"replace","path":"/subject/reference","value":"`+client.(string)+`"}]`, "Content-Type", "application/json-patch+json")
					if r.status != http.StatusOK {
						t.Fatalf("PATCH: %d %s", r.status, r.body)
					}
				}
				if !listed(typ + "/" + newID) {
					t.Fatalf("%s/%s written through /fhir (%s) is not in the client's index", typ, newID, mode)
				}
				return newID
			}
			refused := func(r *response, code kap.RuleCode) {
				t.Helper()
				if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"code":"`+string(code)+`"`) {
					t.Errorf("%d, want 422 naming %s: %s", r.status, code, r.body)
				}
			}
			accepted := func(r *response) {
				t.Helper()
				if r.status >= 300 {
					t.Errorf("%d, want accepted: %s", r.status, r.body)
				}
			}
			started := func() string {
				return k.create("/sessions", M{"programId": p.program, "kind": "dosing", "product": "ketamine", "status": "in-progress",
					"start": day(d, "09:00"), "escortId": p.escort, "prescriptionId": p.prescription})
			}
			dose := func(s, mg, hhmm string, rx M) *response {
				body := M{"sessionId": s, "product": "ketamine-100mg-ml", "route": "im", "doseMg": json.Number(mg), "time": day(d, hhmm), "performerId": p.prescriber, "status": "completed"}
				for key, v := range rx {
					body[key] = v
				}
				return k.raw("POST", "/administrations", body)
			}
			measure := func(s, kind, hhmm string, extra M) {
				body := M{"clientId": p.client, "sessionId": s, "kind": kind, "time": day(d, hhmm)}
				for key, v := range extra {
					body[key] = v
				}
				k.create("/measurements", body)
			}
			bp := M{"systolic": json.Number("120"), "diastolic": json.Number("80")}

			// The newest weight (80 kg, after the KAP one of 72.4 kg).
			weight := write("Observation", p.weight, func(m M) {
				m["effectiveDateTime"] = day(3, "10:30")
				m["valueQuantity"].(map[string]any)["value"] = json.Number("80")
			})
			rx := k.call("POST", "/prescriptions", M{"programId": p.program, "product": "ketamine-100mg-ml", "route": "im",
				"dose": M{"value": json.Number("0.5"), "unit": "mg/kg"}, "maxPerAdministrationMg": json.Number("40"),
				"status": "active", "prescriberId": p.prescriber, "authoredOn": day(3, "11:30")}, http.StatusCreated)
			if rx["calculatedMg"] != json.Number("40.0") || rx["weightObservationId"] != weight {
				t.Errorf("0.5 mg/kg: calculatedMg %v from %v, want 40.0 from the weight %s written through /fhir", rx["calculatedMg"], rx["weightObservationId"], weight)
			}

			// A second prescription of the product with a lower maximum.
			write("MedicationRequest", p.prescription, func(m M) {
				m["dosageInstruction"].([]any)[0].(map[string]any)["maxDosePerAdministration"].(map[string]any)["value"] = json.Number("20")
			})
			refused(dose(started(), "30", "09:15", nil), kap.RuleDoseMaxExceeded)
			accepted(dose(started(), "20", "09:15", nil))

			// A later dose through /fhir holds the discharge.
			s := started()
			measure(s, "bp", "09:05", bp)
			first := dose(s, "36.2", "09:15", M{"prescriptionId": p.prescription})
			if first.status != http.StatusCreated {
				t.Fatalf("dose: %d %s", first.status, first.body)
			}
			measure(s, "bp", "09:56", bp)
			measure(s, "discharge-ready", "09:58", M{"finding": true})
			write("MedicationAdministration", first.json(t)["id"].(string), func(m M) {
				m["effectiveDateTime"] = day(d, "10:30")
			})
			discharge := func(hhmm string) *response {
				return k.raw("POST", "/sessions/"+s+"/discharge", M{"time": day(d, hhmm), "releasedToEscort": true, "performerId": p.nurse})
			}
			refused(discharge("10:50"), kap.RuleObservationTime)
			measure(s, "bp", "11:15", bp)
			measure(s, "discharge-ready", "11:20", M{"finding": true})
			accepted(discharge("12:05"))
		})
	}
}
