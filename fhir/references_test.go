package fhir

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConditionalReferenceOption(t *testing.T) {
	body := []byte(`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},` +
		`"subject":{"reference":"Patient?identifier=http://x.org/mrn|12"}}`)
	if _, err := ParseResource(body); err == nil {
		t.Error("ParseResource accepted a conditional reference")
	}
	if _, err := ParseResourceWith(body, ParseOptions{ConditionalReferences: true}); err != nil {
		t.Errorf("with ConditionalReferences: %v", err)
	}
	// The target type is still checked.
	bad := []byte(`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},` +
		`"subject":{"reference":"Medication?code=x"}}`)
	if _, err := ParseResourceWith(bad, ParseOptions{ConditionalReferences: true}); err == nil {
		t.Error("a conditional reference to a type the element does not allow was accepted")
	}
}

func TestConditionalReference(t *testing.T) {
	for _, tc := range []struct {
		ref, typ, criteria string
		ok                 bool
	}{
		{"Patient?identifier=s|v", "Patient", "identifier=s|v", true},
		{"Patient/1", "", "", false},
		{"Patient?", "", "", false},
		{"Nope?identifier=x", "", "", false},
		{"http://h/Patient?x=1", "", "", false},
	} {
		typ, criteria, ok := ConditionalReference(tc.ref)
		if typ != tc.typ || criteria != tc.criteria || ok != tc.ok {
			t.Errorf("ConditionalReference(%q) = %q, %q, %v", tc.ref, typ, criteria, ok)
		}
	}
}

// RewriteReferences visits contained resources and extensions too, and
// keeps everything else byte for byte.
func TestRewriteReferencesEverywhere(t *testing.T) {
	body := []byte(`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},` +
		`"contained":[{"resourceType":"Patient","id":"p","link":[{"other":{"reference":"Patient/9"},"type":"seealso"}]}],` +
		`"extension":[{"url":"http://e","valueReference":{"reference":"Device/d"}}],` +
		`"subject":{"reference":"#p"},"performer":[{"display":"no ref"},{"reference":"Practitioner/a"}],` +
		`"valueQuantity":{"value":1.50}}`)
	r, err := ParseResource(body)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := r.RewriteReferences(func(path, ref string) (string, error) {
		got = append(got, path+"="+ref)
		return ref + "x", nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"contained[0].link[0].other.reference=Patient/9",
		"extension[0].valueReference.reference=Device/d",
		"subject.reference=#p",
		"performer[1].reference=Practitioner/a",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	wantBytes := `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},` +
		`"contained":[{"resourceType":"Patient","id":"p","link":[{"other":{"reference":"Patient/9x"},"type":"seealso"}]}],` +
		`"extension":[{"url":"http://e","valueReference":{"reference":"Device/dx"}}],` +
		`"subject":{"reference":"#px"},"performer":[{"display":"no ref"},{"reference":"Practitioner/ax"}],` +
		`"valueQuantity":{"value":1.50}}`
	if d := cmp.Diff(wantBytes, string(r.Bytes())); d != "" {
		t.Errorf("rewritten (-want +got):\n%s", d)
	}
}
