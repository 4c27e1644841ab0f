package resource_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/search"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/internal/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// A transaction's conditional create that fails before the commit point
// gives its guard back; one whose commit went through keeps it (a crash
// after the commit point: the resource exists, and the guard leads the
// competitors to it), whatever the writer was told.
func TestTransactionGuardAfterStoreFailure(t *testing.T) {
	injected := errors.New("injected store failure")
	for _, tc := range []struct {
		stage string
		err   error
		kept  bool
	}{
		{store.StageSequence, injected, false},
		{store.StageIntent, injected, false},
		{store.StageHistory, injected, false},
		{store.StageHistory, store.ErrSimulatedCrash, false}, // pending: it can never commit
		{store.StageCommit, store.ErrSimulatedCrash, true},
		{store.StageProject, store.ErrSimulatedCrash, true},
	} {
		t.Run(tc.stage+" "+tc.err.Error(), func(t *testing.T) {
			_, db := storetest.Open(t, nil)
			st := storetest.OpenWith(t, db, store.Options{TxnHook: func(stage string) error {
				if stage == tc.stage {
					return tc.err
				}
				return nil
			}})
			reg := fhir.NewRegistry()
			svc := resource.New(st, reg, time.Now)
			ctx := context.Background()
			crit, err := search.ParseCriteria(reg, "Practitioner", "identifier=http://example.org/npi|1")
			if err != nil {
				t.Fatal(err)
			}
			res, err := fhir.ParseResource([]byte(`{"resourceType":"Practitioner","identifier":[{"system":"http://example.org/npi","value":"1"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			ops := []*resource.Op{{Method: "POST", Type: "Practitioner", Resource: res, Criteria: crit}}
			if err := svc.Resolve(ctx, ops); err != nil {
				t.Fatal(err)
			}
			if err := svc.Apply(ctx, ops); !errors.Is(err, tc.err) {
				t.Fatalf("Apply = %v, want the injected %v", err, tc.err)
			}
			svc.Release(ctx, ops)
			probe := store.Guard{Key: crit.Canonical, Target: "Probe/1", Since: time.Now().UTC()}
			held, claimed, err := st.ClaimGuard(ctx, probe)
			switch {
			case err != nil:
				t.Fatal(err)
			case tc.kept && (claimed || held.Target != "Practitioner/"+ops[0].ID):
				t.Errorf("the guard of the committed create was given up (held: %+v)", held)
			case !tc.kept && !claimed:
				t.Errorf("the guard of the failed create is still held for %s", held.Target)
			}
		})
	}
}
