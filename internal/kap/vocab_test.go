package kap

import (
	"slices"
	"testing"
)

// TestVocabularyInMappings: the rules' codes and terms are those of the
// mappings tables: every rule code and the override activity are concepts
// of the kap CodeSystem (the codes of the 422s and Provenances), every
// route of the table names a rules route and every rules route has a key,
// every product is of a rules family.
func TestVocabularyInMappings(t *testing.T) {
	m, err := NewMapper(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	if m.KapSystem() != CodeSystem {
		t.Errorf("the 422s name the system %s, the mappings %s", CodeSystem, m.KapSystem())
	}
	codes := []string{overrideActivity}
	for _, c := range RuleCodes() {
		codes = append(codes, string(c))
	}
	for _, c := range codes {
		if coding, ok := m.KapCoding(c); !ok || coding.Display == "" {
			t.Errorf("%s is not a concept of the kap CodeSystem (with a display)", c)
		}
	}
	var named []Route
	for _, k := range m.RouteKeys() {
		r, ok := route(m, k)
		if !ok || !slices.Contains(Routes(), r) {
			t.Errorf("route key %s: name %q is not a rules route", k, r)
		}
		named = append(named, r)
	}
	for _, r := range Routes() {
		if !slices.Contains(named, r) {
			t.Errorf("rules route %s has no key in the routes table", r)
		}
	}
	for _, p := range []string{"ketamine", "ketamine-troche", "esketamine", "spravato"} {
		if f := family(m, p); f != Ketamine && f != Esketamine {
			t.Errorf("product %s: family %q", p, f)
		}
	}
	if got := productCode(m, "spravato"); got != "spravato" {
		t.Errorf("productCode(spravato) = %q; a specific product names itself", got)
	}
	if got := productCode(m, "esketamine"); got != "" {
		t.Errorf("productCode(esketamine) = %q; the generic entry matches the family", got)
	}
}
