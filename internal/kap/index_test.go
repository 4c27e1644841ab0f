package kap

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/resource"
	"github.com/kapfhir/kapfhir/internal/store"
	"github.com/kapfhir/kapfhir/mappings"
)

// TestIndexKeeper: which writes touch which client's index, and the
// entries they add and remove; a write naming no client costs nothing.
func TestIndexKeeper(t *testing.T) {
	m, err := NewMapper(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	k := NewIndexKeeper(m)
	rec := func(typ, id, raw string) *store.Record {
		return &store.Record{Type: typ, ID: id, VersionID: 1, Raw: raw}
	}
	obs := func(id, patient string) *store.Record {
		return rec("Observation", id, `{"resourceType":"Observation","id":"`+id+`","subject":{"reference":"Patient/`+patient+`"}}`)
	}
	gone := &store.Record{Type: "Observation", ID: "o1", VersionID: 2, Deleted: true}
	index := func(client string, refs ...string) *store.Record {
		res, err := indexResource(m, client+"-kap", client, refs, mappings.Labels{SubstanceUse: true})
		if err != nil {
			t.Fatal(err)
		}
		return &store.Record{Type: "List", ID: client + "-kap", VersionID: 3, Raw: string(res.Bytes())}
	}
	current := map[string]*store.Record{"List/a-kap": index("a", "Observation/o1", "Encounter/e1"), "List/b-kap": index("b")}
	for _, tc := range []struct {
		name   string
		change resource.Change
		keys   []string
		want   map[string][]string // index id: its entries after the write
	}{
		{"a patient", resource.Change{Next: rec("Patient", "a", `{"resourceType":"Patient","id":"a"}`)}, nil, nil},
		{"not a record of the KAP model", resource.Change{Next: rec("Condition", "c1", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"}}`)}, nil, nil},
		{"no subject", resource.Change{Next: rec("Observation", "o9", `{"resourceType":"Observation","id":"o9"}`)}, nil, nil},
		{"a client without an index", resource.Change{Next: obs("o2", "c")}, []string{"List/c-kap"}, nil},
		{"listed already", resource.Change{Prev: obs("o1", "a"), Next: obs("o1", "a")}, []string{"List/a-kap"}, nil},
		{"added", resource.Change{Next: obs("o2", "a")}, []string{"List/a-kap"},
			map[string][]string{"a-kap": {"Observation/o1", "Encounter/e1", "Observation/o2"}}},
		{"a consent by its patient", resource.Change{Next: rec("Consent", "k1", `{"resourceType":"Consent","id":"k1","patient":{"reference":"Patient/b"}}`)}, []string{"List/b-kap"},
			map[string][]string{"b-kap": {"Consent/k1"}}},
		{"deleted", resource.Change{Prev: obs("o1", "a"), Next: gone}, []string{"List/a-kap"},
			map[string][]string{"a-kap": {"Encounter/e1"}}},
		{"moved to another client", resource.Change{Prev: obs("o1", "a"), Next: obs("o1", "b")}, []string{"List/a-kap", "List/b-kap"},
			map[string][]string{"a-kap": {"Encounter/e1"}, "b-kap": {"Observation/o1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.keys, k.Keys(tc.change)); d != "" {
				t.Errorf("keys (-want +got):\n%s", d)
			}
			cs, err := k.Keep([]resource.Change{tc.change}, current)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string][]string
			for _, c := range cs {
				if c.Prev != current["List/"+c.Resource.ID()] {
					t.Errorf("%s does not follow the current version", c.Resource.ID())
				}
				idx, err := decodeIndex(&store.Record{ID: c.Resource.ID(), Raw: string(c.Resource.Bytes())})
				if err != nil {
					t.Fatal(err)
				}
				if !idx.labels.SubstanceUse {
					t.Errorf("%s lost its labels", c.Resource.ID())
				}
				if got == nil {
					got = map[string][]string{}
				}
				got[c.Resource.ID()] = idx.refs
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("indexes (-want +got):\n%s", d)
			}
		})
	}
}
