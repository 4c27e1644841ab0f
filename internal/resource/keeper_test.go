package resource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/kap"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/storetest"
	"github.com/kapfhir/kapfhir/mappings"
)

// TestKeeperOnEveryPath: the companions of a Keeper (here the KAP client
// index) commit with writes made by import, by concurrent single writes
// (which race on the index and all get in) and by a transaction's delete.
func TestKeeperOnEveryPath(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t, nil)
	m, err := kap.NewMapper(kap.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	svc := resource.New(st, fhir.NewRegistry(), time.Now).WithKeeper(kap.NewIndexKeeper(m))
	parse := func(s string) *fhir.Resource {
		t.Helper()
		res, err := fhir.ParseResource([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	obs := func(id, patient string) *fhir.Resource {
		return parse(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"hr"},"subject":{"reference":"Patient/` + patient + `"}}`)
	}
	kapCode, _ := m.KapCoding(mappings.ClientIndexCode)
	if _, err := svc.Update(ctx, "List", "c1-kap", parse(`{"resourceType":"List","id":"c1-kap","status":"current","mode":"working",
		"code":{"coding":[{"system":"`+kapCode.System+`","code":"`+mappings.ClientIndexCode+`"}]},"subject":{"reference":"Patient/c1"}}`), nil); err != nil {
		t.Fatal(err)
	}
	entries := func() []string {
		t.Helper()
		rec, err := svc.Read(ctx, "List", "c1-kap")
		if err != nil {
			t.Fatal(err)
		}
		var l struct {
			Entry []struct{ Item struct{ Reference string } }
		}
		if err := json.Unmarshal([]byte(rec.Raw), &l); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l.Entry {
			out = append(out, e.Item.Reference)
		}
		slices.Sort(out)
		return out
	}

	results, err := svc.Import(ctx, []*fhir.Resource{obs("i1", "c1"), obs("i2", "c2"), parse(`{"resourceType":"Patient","id":"c3"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Errorf("import %d: %v", i, r.Err)
		}
	}
	if d := cmp.Diff([]string{"Observation/i1"}, entries()); d != "" {
		t.Errorf("after import (-want +got):\n%s", d)
	}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := svc.Update(ctx, "Observation", fmt.Sprintf("w%d", i), obs(fmt.Sprintf("w%d", i), "c1"), nil); err != nil {
				t.Errorf("concurrent write %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	want := []string{"Observation/i1"}
	for i := range 8 {
		want = append(want, fmt.Sprintf("Observation/w%d", i))
	}
	if d := cmp.Diff(want, entries()); d != "" {
		t.Errorf("after concurrent writes (-want +got):\n%s", d)
	}

	ops := []*resource.Op{{Method: "DELETE", Type: "Observation", ID: "i1"}, {Method: "PUT", Type: "Observation", ID: "w0", Resource: obs("w0", "c2")}}
	if err := svc.Resolve(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if err := svc.Apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want[2:], entries()); d != "" {
		t.Errorf("after a transaction deleting one and moving one away (-want +got):\n%s", d)
	}
}
