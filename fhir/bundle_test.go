package fhir_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
)

func TestParseBundleEntries(t *testing.T) {
	b, err := fhir.ParseBundle([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
	   "subject":{"reference":"Patient?identifier=http://s|1"},
	   "contained":[{"resourceType":"Provenance","id":"p","recorded":"2020-01-01T00:00:00Z","target":[{"reference":"#"}],"agent":[{"who":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}}]}]},
	  "request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=a"}},
	 {"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"PUT","url":"Observation/1"}}
	]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if b.Entries[0].Err != nil {
		t.Fatal(b.Entries[0].Err)
	}
	if b.Type != "transaction" || len(b.Entries) != 2 || b.Entries[0].Request.IfNoneExist != "identifier=a" {
		t.Fatalf("bundle %+v", b)
	}
	if b.Entries[1].Resource != nil || !fault.Is(b.Entries[1].Err, fault.Invalid) ||
		fault.As(b.Entries[1].Err).Issues[0].Expression[0] != "Bundle.entry[1].resource.status" {
		t.Errorf("invalid entry: %v", b.Entries[1].Err)
	}
	var paths []string
	err = b.Entries[0].Resource.RewriteReferences(func(path, ref string) (string, error) {
		paths = append(paths, path+"="+ref)
		return strings.ToUpper(ref), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"subject.reference=Patient?identifier=http://s|1", "contained[0].target[0].reference=#", "contained[0].agent[0].who.reference=urn:uuid:22222222-2222-4222-8222-222222222222"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("references (-want +got):\n%s", diff)
	}
	if got := string(b.Entries[0].Resource.Bytes()); !strings.Contains(got, `"reference":"URN:UUID:22222222-2222-4222-8222-222222222222"`) {
		t.Errorf("not rewritten: %s", got)
	}
	// Conditional references are for transactions only.
	_, err = fhir.ParseResource([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=1"}}`))
	if !fault.Is(err, fault.Unprocessable) {
		t.Errorf("a conditional reference outside a transaction: %v", err)
	}
}
