package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestKapClientIndex: every KAP write lists the client's records in
// List/<client>-kap (docs/architecture.md, "The client index") and so does
// every write through /fhir of a record of the client (its delete removes
// it); concurrent writers lose no entry.
func TestKapClientIndex(t *testing.T) {
	e := newEnv(t)
	k := newKapAPI(t, e)
	p := setUpProgram(k)
	index := func() (refs []string, raw string) {
		t.Helper()
		r := e.get("/fhir/List/" + p.client + "-kap")
		if r.status != http.StatusOK {
			t.Fatalf("the client's index: %d %s", r.status, r.body)
		}
		var l struct {
			Code  struct{ Coding []struct{ Code string } }
			Entry []struct{ Item struct{ Reference string } }
		}
		if err := json.Unmarshal(r.body, &l); err != nil || len(l.Code.Coding) != 1 || l.Code.Coding[0].Code != "client-records" {
			t.Fatalf("the client's index: %v %s", err, r.body)
		}
		for _, x := range l.Entry {
			refs = append(refs, x.Item.Reference)
		}
		return refs, string(r.body)
	}
	// Three concurrent KAP writes for the client race on its index: the
	// losers decide again (a loser loses at most twice, once to each of
	// the others), so all are stored and listed.
	var wg sync.WaitGroup
	ids := make([]string, 3)
	for i := range ids {
		wg.Go(func() {
			body := `{"clientId":"` + p.client + `","kind":"hr","time":"` + day(6, "09:0"+string(rune('0'+i))) + `","value":7` + string(rune('0'+i)) + `}`
			resp, err := http.Post(e.srv.URL+"/kap/v1/measurements", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var m struct{ ID string }
			if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &m) != nil {
				t.Errorf("concurrent measurement %d: %d %s", i, resp.StatusCode, b)
			}
			ids[i] = m.ID
		})
	}
	wg.Wait()
	refs, raw := index()
	for _, id := range ids {
		if !slices.Contains(refs, "Observation/"+id) {
			t.Errorf("the index lost the concurrent measurement %s: %v", id, refs)
		}
	}
	for _, want := range []string{"MedicationRequest/" + p.prescription, "Observation/" + p.weight} {
		if !slices.Contains(refs, want) {
			t.Errorf("the index lacks %s: %v", want, refs)
		}
	}
	if !strings.Contains(raw, `"code":"PSY"`) {
		t.Errorf("the index is not labelled like the client's records: %s", raw)
	}
	var consent string
	for _, r := range refs {
		if id, ok := strings.CutPrefix(r, "Consent/"); ok {
			consent = id
		}
	}
	if consent == "" {
		t.Fatalf("the index lists no consent: %v", refs)
	}

	// Through /fhir: the KAP consent ends, a new one is recorded.
	var c map[string]any
	if err := json.Unmarshal(e.get("/fhir/Consent/"+consent).body, &c); err != nil {
		t.Fatal(err)
	}
	c["status"] = "inactive"
	body, _ := json.Marshal(c)
	if r := e.do("PUT", "/fhir/Consent/"+consent, string(body)); r.status != http.StatusOK {
		t.Fatalf("PUT Consent: %d %s", r.status, r.body)
	}
	c["status"] = "active"
	delete(c, "id")
	delete(c, "meta")
	body, _ = json.Marshal(c)
	fhirConsent := e.create("Consent", string(body))
	if refs, _ := index(); !slices.Contains(refs, "Consent/"+fhirConsent) {
		t.Fatalf("a Consent written through /fhir is not in the index: %v", refs)
	}
	if r := startDosing(k, p, day(9, "09:00"), true, M{"prescriptionId": p.prescription})(nil); r.status != http.StatusOK {
		t.Fatalf("dosing with the treatment consent written through /fhir: %d %s", r.status, r.body)
	}

	// Concurrent writes through /fhir and the KAP API for the client race
	// on its index: every write succeeds and is listed.
	hr := func(i int) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
			"subject":{"reference":"Patient/` + p.client + `"},"effectiveDateTime":"` + day(10, "09:0"+string(rune('0'+i))) + `",
			"valueQuantity":{"value":6` + string(rune('0'+i)) + `,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`
	}
	fhirIDs := make([]string, 4)
	for i := range fhirIDs {
		wg.Go(func() {
			r := do(t, e.srv.URL, "POST", "/fhir/Observation", hr(i))
			if r.status != http.StatusCreated {
				t.Errorf("concurrent /fhir create %d: %d %s", i, r.status, r.body)
				return
			}
			var o struct{ ID string }
			_ = json.Unmarshal(r.body, &o)
			fhirIDs[i] = o.ID
		})
	}
	var kapID string
	wg.Go(func() {
		resp, err := http.Post(e.srv.URL+"/kap/v1/measurements", "application/json", strings.NewReader(`{"clientId":"`+p.client+`","kind":"hr","time":"`+day(10, "10:00")+`","value":70}`))
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var m struct{ ID string }
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &m) != nil {
			t.Errorf("concurrent KAP measurement: %d %s", resp.StatusCode, b)
		}
		kapID = m.ID
	})
	wg.Wait()
	refs, _ = index()
	for _, id := range append(fhirIDs, kapID) {
		if !slices.Contains(refs, "Observation/"+id) {
			t.Errorf("the index lost the concurrent write of Observation/%s: %v", id, refs)
		}
	}

	// A delete through /fhir removes the entry.
	if r := e.do("DELETE", "/fhir/Consent/"+fhirConsent, ""); r.status >= 300 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if refs, _ := index(); slices.Contains(refs, "Consent/"+fhirConsent) {
		t.Errorf("a deleted Consent is still in the index: %v", refs)
	}
}
