package faultproxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/internal/ehr/ehrtest"
	"github.com/kapfhir/kapfhir/internal/ehr/faultproxy"
)

// TestDropAfterApplyAgainstStandIn: the stand-in EHR applies a create
// whose answer the proxy drops; the client sees a connection error, the
// EHR has the resource once, and a search by our identifier through the
// proxy finds it (how the sync engine avoids a duplicate, §15.3).
func TestDropAfterApplyAgainstStandIn(t *testing.T) {
	s := ehrtest.Start(t, ehrtest.Options{})
	p, err := faultproxy.New(s.Origin())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	base := srv.URL + ehrtest.BasePath
	p.Add(faultproxy.Rule{Method: "POST", PathPrefix: ehrtest.BasePath + "/Observation", Fault: faultproxy.Fault{Kind: faultproxy.DropAfterApply}, Times: 1})

	obs := `{"resourceType":"Observation","status":"final","code":{"text":"mood"},` +
		`"identifier":[{"system":"urn:kapfhir:test","value":"drop-1"}]}`
	post := func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", base+"/Observation", strings.NewReader(obs))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		return client().Do(req)
	}
	if resp, err := post(); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped create answered %s", resp.Status)
	}
	all, err := s.All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("the stand-in holds %d resources after the dropped create, want 1: %v", len(all), all)
	}
	var created string
	for key, versions := range all {
		created = key
		if !strings.HasPrefix(key, "Observation/") || len(versions) != 1 {
			t.Errorf("stored %s with %d versions, want one Observation version", key, len(versions))
		}
	}

	resp, err := client().Get(base + "/Observation?identifier=urn:kapfhir:test|drop-1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			Resource struct{ ID string }
		}
	}
	if err := json.Unmarshal(data, &bundle); err != nil || len(bundle.Entry) != 1 || "Observation/"+bundle.Entry[0].Resource.ID != created {
		t.Errorf("search by identifier through the proxy: %v %s, want %s", err, data, created)
	}

	// The rule is spent: the next create is answered, and its Location
	// names the proxy, the base the client used.
	second, err := post()
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if loc := second.Header.Get("Location"); second.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, base+"/Observation/") {
		t.Errorf("second create: %s, Location %q; want 201 under %s", second.Status, loc, base)
	}
	if c := p.Counts(); c.DropAfterApply != 1 || c.Forwarded != 3 {
		t.Errorf("counts %+v, want 1 dropped, 3 forwarded", c)
	}
}
