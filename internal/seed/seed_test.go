package seed_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/seed"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var now = time.Date(2026, 5, 14, 15, 20, 0, 0, time.FixedZone("", -4*3600))

func newService(t *testing.T, rules kap.Rules) (*kap.Service, *resource.Service) {
	t.Helper()
	st, _ := storetest.Open(t, nil)
	reg := fhir.NewRegistry()
	mapper, err := kap.NewMapper(rules)
	if err != nil {
		t.Fatal(err)
	}
	res := resource.New(st, reg, time.Now).WithKeeper(kap.NewIndexKeeper(mapper))
	return kap.NewService(kap.Deps{
		Resources: res, Registry: reg, Mapper: mapper, Rules: rules,
		Overrides: kap.NewOverrideCounter(prometheus.NewRegistry()), Now: func() time.Time { return now }, Cursors: search.NewCursors("test"),
	}), res
}

// TestLoad seeds a small clinic (two finished programs, one under way in
// substance use) through the KAP service (every rule
// applies, none is overridden) and reads it back in clinic terms.
func TestLoad(t *testing.T) {
	ctx := context.Background()
	rules := kap.DefaultRules()
	svc, res := newService(t, rules)
	opts := seed.Options{Clients: 3, Seed: 7, Now: now, Rules: rules}
	clinic := seed.Plan(opts)
	sum, err := seed.Load(ctx, svc, clinic, seed.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Clients != 3 || sum.Programs != 3 || sum.TeamMembers != len(clinic.Team) {
		t.Errorf("summary: %+v", sum)
	}

	clients, err := svc.Clients(ctx, kap.ListOptions{})
	if err != nil || len(clients.Items) != 3 {
		t.Fatalf("clients: %d, %v", len(clients.Items), err)
	}
	mrn := map[string]seed.Client{}
	for _, c := range clinic.Clients {
		mrn[c.Client.Identifiers[0].Value] = c
	}
	var substanceUse, finished int
	for _, cl := range clients.Items {
		plan, ok := mrn[cl.Identifiers[0].Value]
		if !ok {
			t.Fatalf("client %s is not one of the plan", cl.ID)
		}
		programs, err := svc.Programs(ctx, kap.ProgramFilter{ClientID: cl.ID}, kap.ListOptions{})
		if err != nil || len(programs.Items) != 1 {
			t.Fatalf("programs of a client: %d, %v", len(programs.Items), err)
		}
		p := programs.Items[0]
		rec, err := res.Read(ctx, "EpisodeOfCare", p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Raw), `"code":"42CFRPart2"`) {
			substanceUse++
		}
		sessions, err := svc.Sessions(ctx, p.ID, kap.SessionFilter{}, kap.ListOptions{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		got, want := map[string]int{}, map[string]int{}
		for _, s := range sessions.Items {
			got[s.Kind+" "+s.Status]++
		}
		for _, s := range plan.Sessions {
			want[s.Kind+" "+s.Status]++
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s program: sessions by kind and status (-planned +stored):\n%s", plan.Stage, d)
		}
		summary, err := svc.Summary(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Stage != seed.Finished {
			continue
		}
		finished++
		var phq []int
		for _, s := range plan.Sessions {
			if s.PHQ9 != nil {
				phq = append(phq, s.PHQ9.Total)
			}
		}
		baseline, latest := phq[0], phq[len(phq)-1]
		if p.Status != "finished" || !summary.Dosing.Reached || summary.Dosing.Completed < 3 || summary.Dosing.Completed != plan.PlannedDosing {
			t.Errorf("finished program: status %s, dosing %+v, planned %d", p.Status, summary.Dosing, plan.PlannedDosing)
		}
		if summary.PHQ9 == nil || summary.PHQ9.Count != len(phq) || summary.PHQ9.Baseline.Total != baseline || summary.PHQ9.Latest.Total != latest || summary.PHQ9.Change != latest-baseline {
			t.Errorf("finished program: PHQ-9 %+v, planned %d totals from %d to %d", summary.PHQ9, len(phq), baseline, latest)
		}
		if len(summary.OpenSafetyItems) != 0 {
			t.Errorf("finished program: open safety items %+v", summary.OpenSafetyItems)
		}
	}
	if substanceUse == 0 || finished == 0 {
		t.Errorf("%d substance-use and %d finished programs, want some of each", substanceUse, finished)
	}

	if _, err := seed.Load(ctx, svc, clinic, seed.LoadOptions{}); !errors.Is(err, seed.ErrNotEmpty) {
		t.Errorf("a second seed without force: %v, want ErrNotEmpty", err)
	}
}

// TestPlanDeterministic: the same options give the same clinic, and a
// client's program does not depend on the clinic's size.
func TestPlanDeterministic(t *testing.T) {
	o := seed.Options{Clients: 50, Seed: 3, Now: now, Rules: kap.DefaultRules()}
	a, b := seed.Plan(o), seed.Plan(o)
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("two plans of the same options differ:\n%s", d)
	}
	o.Clients = 5
	if d := cmp.Diff(a.Clients[:5], seed.Plan(o).Clients); d != "" {
		t.Errorf("the first clients depend on the clinic's size:\n%s", d)
	}
	o.Seed = 4
	if cmp.Equal(a.Clients[:5], seed.Plan(o).Clients) {
		t.Error("another seed gives the same clients")
	}
	stages := map[seed.Stage]int{}
	for _, c := range a.Clients {
		stages[c.Stage]++
		for _, s := range c.Sessions {
			if s.Status == "finished" && s.End.After(now) || s.Status == "planned" && !s.Start.After(now) {
				t.Errorf("%s client: a %s %s session at %s..%s, now %s", c.Stage, s.Status, s.Kind, s.Start, s.End, now)
			}
		}
	}
	if len(stages) != 7 {
		t.Errorf("stages of 50 clients: %v, want all 7", stages)
	}
}
