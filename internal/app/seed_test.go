package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/kapfhir/kapfhir/internal/seed"
)

// TestSeedCommand: `kapfhir seed` loads the clinic into the configured
// store, the service started on it serves the seeded clients and programs
// through the KAP API and the FHIR API, and a second seed without --force
// is refused.
func TestSeedCommand(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, map[string]string{})
	var out strings.Builder
	if err := Seed(ctx, cfg, SeedOptions{Clients: 2, Seed: 1}, &out, testOptions()); err != nil {
		t.Fatalf("seed: %v\n%s", err, out.String())
	}
	for _, want := range []string{`2 of 2 clients`, `(?m)^\s+clients\s+2$`, `(?m)^\s+EpisodeOfCare\s+2$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("the seed's report lacks %s:\n%s", want, out.String())
		}
	}

	a, err := Start(ctx, cfg, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(sctx) }()
	get := func(path string, into any) {
		t.Helper()
		resp, err := http.Get(a.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var programs struct {
		Items []struct{ ID, ClientID string } `json:"items"`
	}
	get("/kap/v1/programs", &programs)
	if len(programs.Items) != 2 {
		t.Fatalf("KAP programs: %+v, want 2", programs.Items)
	}
	for _, p := range programs.Items {
		var sessions struct {
			Items []struct{ Kind, Status string } `json:"items"`
		}
		get("/kap/v1/programs/"+p.ID+"/sessions", &sessions)
		var summary struct {
			Sessions map[string]map[string]int `json:"sessions"`
		}
		get("/kap/v1/programs/"+p.ID+"/summary", &summary)
		n := 0
		for _, byStatus := range summary.Sessions {
			for _, c := range byStatus {
				n += c
			}
		}
		if len(sessions.Items) == 0 || n != len(sessions.Items) {
			t.Errorf("program: %d sessions listed, %d in the summary", len(sessions.Items), n)
		}
		var eoc struct {
			ResourceType string
			Patient      struct{ Reference string }
		}
		get("/fhir/EpisodeOfCare/"+p.ID, &eoc)
		if eoc.ResourceType != "EpisodeOfCare" || eoc.Patient.Reference != "Patient/"+p.ClientID {
			t.Errorf("FHIR EpisodeOfCare/%s: %+v", p.ID, eoc)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	out.Reset()
	if err := Seed(ctx, cfg, SeedOptions{Clients: 2, Seed: 1}, &out, testOptions()); !errors.Is(err, seed.ErrNotEmpty) {
		t.Errorf("a second seed without --force: %v, want ErrNotEmpty", err)
	}
}
