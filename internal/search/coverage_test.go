package search

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/store"
)

// TestEveryQueryShapeIsIndexed compiles a search for every searchable
// parameter of every type, with each modifier and prefix, and checks that
// each condition the compiler emits, and each sort, is served by a declared
// index whose keys start with the resource type and the condition's field
// (the prefix rule): on MongoDB no search scans a collection. Custom
// parameters of each type are included.
func TestEveryQueryShapeIsIndexed(t *testing.T) {
	reg := fhir.NewRegistry()
	for _, c := range []fhir.CustomParam{
		{ID: "t", Code: "x-token", Type: "token", Expression: "Patient.gender"},
		{ID: "s", Code: "x-string", Type: "string", Expression: "Patient.name.given"},
		{ID: "u", Code: "x-uri", Type: "uri", Expression: "Patient.implicitRules"},
		{ID: "r", Code: "x-reference", Type: "reference", Expression: "Patient.managingOrganization"},
		{ID: "d", Code: "x-date", Type: "date", Expression: "Patient.birthDate"},
	} {
		c.Base = []string{"Patient"}
		if err := reg.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	indexed := map[string]bool{}     // "field" served by {type, field, ...}
	sorted := map[string]bool{}      // "field1,field2" served by {type, field1, field2}
	crossSorted := map[string]bool{} // "field1,type" served by {field1, type}
	for _, ix := range store.Indexes()["resources"] {
		if len(ix.Keys) >= 2 && ix.Keys[0].Key != "type" && ix.Keys[len(ix.Keys)-1].Key == "type" {
			crossSorted[keyNames(ix.Keys)] = true
		}
		if len(ix.Keys) < 2 || ix.Keys[0].Key != "type" {
			continue
		}
		indexed[ix.Keys[1].Key] = true
		key := ""
		for i, k := range ix.Keys[1:] {
			if i > 0 {
				key += ","
			}
			key += k.Key
			sorted[key] = true
		}
	}
	values := map[string][]string{
		"token":     {"a", "s|a", "|a", "s|"},
		"string":    {"ab"},
		"uri":       {"http://x/y"},
		"reference": {"Patient/1", "1", "http://x/fhir/Patient/1"},
		"date":      {"2021", "eq2021-03-04", "ne2021", "gt2021", "ge2021", "lt2021", "le2021", "sa2021", "eb2021", "ap2021"},
	}
	modifiers := map[string][]string{
		"token":     {"", ":not", ":text", ":missing"},
		"string":    {"", ":exact", ":contains", ":missing"},
		"uri":       {"", ":below", ":above", ":missing"},
		"reference": {"", ":identifier", ":missing"},
		"date":      {"", ":missing"},
	}
	shapes := 0
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range reg.SearchParams(typ) {
			if !Searchable(p) {
				continue
			}
			mods := modifiers[p.Type]
			if p.Code == "_id" || p.Code == "_lastUpdated" {
				mods = []string{""} // the record's own fields, no modifiers
			}
			if p.Identifiers {
				mods = append(mods[:len(mods):len(mods)], ":of-type")
			}
			for _, mod := range mods {
				vals := values[p.Type]
				switch mod {
				case ":missing":
					vals = []string{"true", "false"}
				case ":identifier":
					vals = []string{"s|a"}
				case ":of-type":
					vals = []string{"s|c|a"}
				}
				for _, v := range vals {
					r, err := Parse(reg, typ, url.Values{p.Code + mod: {v}}, false)
					if err != nil {
						t.Errorf("%s?%s%s=%s: %v", typ, p.Code, mod, v, err)
						continue
					}
					for _, c := range r.Conds {
						checkIndexed(t, typ+"?"+p.Code+mod+"="+v, c, indexed)
						shapes++
					}
				}
			}
		}
	}
	for _, s := range []string{"", "_lastUpdated", "-_lastUpdated", "_id", "-_id"} {
		q := url.Values{}
		if s != "" {
			q.Set("_sort", s)
		}
		r, err := Parse(builtins, "Patient", q, false)
		if err != nil {
			t.Fatal(err)
		}
		key := ""
		for i, k := range r.Sort {
			if i > 0 {
				key += ","
			}
			key += k.Field
		}
		if !sorted[key] {
			t.Errorf("_sort=%s sorts by %s, which no index {type, %s} serves", s, key, key)
		}
	}
	// A sort by a search parameter is deliberately not index-served (64
	// indexes cannot cover ~1,400 codes): the store sorts what the
	// index-served conditions select, and the keyset condition of its
	// cursor names only the sort fields. Each such sort must name its own
	// sa/sd field and end with rid.
	sorts := 0
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range builtins.SearchParams(typ) {
			if !sortable(p) || p.Code == "_id" || p.Code == "_lastUpdated" {
				continue
			}
			for _, dir := range []string{"", "-"} {
				r, err := Parse(builtins, typ, url.Values{"_sort": {dir + p.Code}}, false)
				if err != nil {
					t.Errorf("%s?_sort=%s%s: %v", typ, dir, p.Code, err)
					continue
				}
				want := []store.Sort{{Field: map[string]string{"": "sa.", "-": "sd."}[dir] + p.Code, Desc: dir == "-"}, {Field: "rid"}}
				if diff := cmp.Diff(want, r.Sort); diff != "" {
					t.Errorf("%s?_sort=%s%s (-want +got):\n%s", typ, dir, p.Code, diff)
				}
				sorts++
			}
		}
	}
	t.Logf("%d parameter sorts checked", sorts)
	// Reindex jobs walk resources by _id (its own index), phase 1 those of
	// their types written since a time.
	if !indexed["ts"] {
		t.Error("no index {type, ts} serves the reindex catch-up phase")
	}
	// A search over several types filters type by $in, which the indexes
	// above serve like one type (its conditions are those of one type, see
	// compileAll); its sort ends with type, served by {..., type} scanned in
	// order.
	for _, s := range []string{"", "_lastUpdated", "-_lastUpdated", "_id", "-_id"} {
		q := url.Values{"_type": {"Patient,Observation"}}
		if s != "" {
			q.Set("_sort", s)
		}
		r, err := ParseSystem(builtins, q, false)
		if err != nil {
			t.Fatal(err)
		}
		var keys bson.D
		for _, k := range r.Sort {
			keys = append(keys, bson.E{Key: k.Field})
		}
		if !crossSorted[keyNames(keys)] {
			t.Errorf("system search _sort=%s sorts by %s, which no index serves", s, keyNames(keys))
		}
	}
	checkEverythingIndexed(t, indexed, crossSorted)
	t.Logf("%d condition shapes checked against %d indexed fields", shapes, len(indexed))
}

// checkEverythingIndexed checks the query of Patient/1/$everything: an $or
// with one branch per compartment type, each {type: T} AND conditions on
// indexed fields, so each branch is served by {type, field} (on MongoDB
// each $or branch is planned on its own); _since is a {type, ts} range;
// the sort is the cross-type one.
func checkEverythingIndexed(t *testing.T, indexed, crossSorted map[string]bool) {
	t.Helper()
	r, err := Everything(builtins, "1", url.Values{"_since": {"2020-01-01T00:00:00Z"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	var branches []store.Cond
	for _, c := range r.Conds {
		if c.Or == nil {
			checkIndexed(t, "$everything", c, indexed)
			continue
		}
		branches = c.Or
	}
	if len(branches) != len(r.Types) || len(branches) < 60 {
		t.Fatalf("$everything has %d branches for %d types, want one per Patient compartment type", len(branches), len(r.Types))
	}
	for _, b := range branches {
		if len(b.And) != 2 || b.And[0].Field != "type" || len(b.And[0].In) != 1 {
			t.Errorf("$everything branch %+v does not start with {type: T}", b)
			continue
		}
		checkIndexed(t, "$everything "+b.And[0].In[0], b.And[1], indexed)
	}
	var keys bson.D
	for _, k := range r.Sort {
		keys = append(keys, bson.E{Key: k.Field})
	}
	if !crossSorted[keyNames(keys)] {
		t.Errorf("$everything sorts by %s, which no index serves", keyNames(keys))
	}
}

func keyNames(keys bson.D) string {
	var names []string
	for _, k := range keys {
		names = append(names, k.Key)
	}
	return strings.Join(names, ",")
}

func checkIndexed(t *testing.T, query string, c store.Cond, indexed map[string]bool) {
	t.Helper()
	for _, sub := range append(c.Or, c.And...) {
		checkIndexed(t, query, sub, indexed)
	}
	if c.Or != nil || c.And != nil {
		return
	}
	// A negation (NotIn) cannot use an index bound; the type prefix still
	// narrows the scan to one type, as in any FHIR server.
	if !indexed[c.Field] {
		t.Errorf("%s: condition on %q, which no index {type, %s} serves", query, c.Field, c.Field)
	}
}

// builtins serves the tests that use built-in parameters only.
var builtins = fhir.NewRegistry()
