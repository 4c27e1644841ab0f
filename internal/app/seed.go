package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kapfhir/kapfhir/internal/config"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/seed"
)

// SeedOptions choose the synthetic clinic `kapfhir seed` loads.
type SeedOptions struct {
	Clients int
	Seed    uint64
	// Force loads even when the store already holds KAP clients.
	Force bool
}

// Seed loads a synthetic clinic (package seed) into the configured store
// through the KAP service, with the clinic's rules (KAPFHIR_KAP_RULES), and
// writes counts (never names) to out: what it wrote in clinic terms, and
// the FHIR resources the store holds by type.
func Seed(ctx context.Context, cfg config.Config, so SeedOptions, out io.Writer, o Options) error {
	rules, mapper, err := clinicRules(cfg)
	if err != nil {
		return err
	}
	// No request waits on this command, and its final count reads the
	// whole store: a busy embedded store may take longer than the
	// service's per-command timeout.
	cfg.StoreTimeout = max(cfg.StoreTimeout, 2*time.Minute)
	st, reg, closeStore, err := openOffline(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer closeStore()
	now := time.Now()
	svc := kap.NewService(kap.Deps{
		Resources: resources(st, reg, mapper), Registry: reg, Mapper: mapper, Rules: rules,
		Overrides: kap.NewOverrideCounter(prometheus.NewRegistry()), Now: time.Now, Cursors: search.NewCursors(cfg.CursorSecret),
	})
	clinic := seed.Plan(seed.Options{Clients: so.Clients, Seed: so.Seed, Now: now, Rules: rules})
	// A line per tenth of the clients: seeding the embedded store takes minutes.
	step := max(1, so.Clients/10)
	progress := func(done, total int) {
		if done%step == 0 || done == total {
			fmt.Fprintf(out, "%d of %d clients (%s)\n", done, total, time.Since(now).Round(time.Second))
		}
	}
	sum, err := seed.Load(ctx, svc, clinic, seed.LoadOptions{Force: so.Force, Progress: progress})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	sum.Write(out, time.Since(now))
	counts, err := st.CountByType(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "FHIR resources in the store:")
	for _, c := range counts {
		fmt.Fprintf(out, "  %-26s %5d\n", c.Type, c.N)
	}
	return nil
}
