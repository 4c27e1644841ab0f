package fhir_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

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
	if b.Entries[0].Resource.Type() != "Observation" {
		t.Errorf("entry 0 is a %s", b.Entries[0].Resource.Type())
	}
	res, err := b.Entries[0].Resource.Resource()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	err = res.RewriteReferences(func(path, ref string) (string, error) {
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
	if got := string(res.Bytes()); !strings.Contains(got, `"reference":"URN:UUID:22222222-2222-4222-8222-222222222222"`) {
		t.Errorf("not rewritten: %s", got)
	}
	// Conditional references are for transactions only.
	_, err = fhir.ParseResource([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=1"}}`))
	if !fault.Is(err, fault.Unprocessable) {
		t.Errorf("a conditional reference outside a transaction: %v", err)
	}
}

// DecodeBundle reads the body as a stream: members in any order, entries
// validated one by one, and the envelope's problems reported as a parse of
// the whole body would.
func TestDecodeBundleStream(t *testing.T) {
	patient := `{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`
	bad := `{"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}`
	b, err := fhir.ParseBundle([]byte(`{"entry":[`+patient+`,`+bad+`,`+patient+`],"type":"batch","resourceType":"Bundle"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if b.Type != "batch" || len(b.Entries) != 3 {
		t.Fatalf("bundle %+v", b)
	}
	for _, i := range []int{0, 2} {
		e := b.Entries[i]
		if e.Err != nil || e.Resource == nil || string(e.Resource.Bytes()) != `{"resourceType":"Patient","active":true}` || e.Request.URL != "Patient" {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	if b.Entries[1].Resource != nil || fault.As(b.Entries[1].Err).Issues[0].Expression[0] != "Bundle.entry[1].resource.status" {
		t.Errorf("entry 1: %v", b.Entries[1].Err)
	}

	for _, tc := range []struct{ name, body, expr, mention string }{
		{"empty", ``, "", "unexpected end of input"},
		{"not an object", `[]`, "resourceType", "must be a Bundle"},
		{"not a Bundle", `{"resourceType":"Patient","entry":[` + patient + `]}`, "resourceType", "must be a Bundle"},
		{"duplicate member", `{"resourceType":"Bundle","type":"batch","type":"batch"}`, "", `duplicate member "type"`},
		{"duplicate member in an entry", `{"resourceType":"Bundle","type":"batch","entry":[{"fullUrl":"a","fullUrl":"b"}]}`, "", `duplicate member "fullUrl"`},
		{"duplicate entry", `{"resourceType":"Bundle","type":"batch","entry":[` + patient + `],"entry":[` + patient + `]}`, "", `duplicate member "entry"`},
		{"unknown element", `{"resourceType":"Bundle","entry":[` + patient + `],"type":"batch","nickname":1}`, "Bundle.nickname", ""},
		{"unknown element in an entry", `{"resourceType":"Bundle","type":"batch","entry":[` + patient + `,{"nickname":1}]}`, "Bundle.entry[1].nickname", ""},
		{"entry not an array", `{"resourceType":"Bundle","type":"batch","entry":{"fullUrl":{"a":[1]}}}`, "Bundle.entry", "must be an array"},
		{"syntax error in an entry", `{"resourceType":"Bundle","type":"batch","entry":[` + patient + `,{"fullUrl":}]}`, "", "invalid JSON at offset"},
		{"invalid UTF-8 in an entry", "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"fullUrl\":\"a\xff\"}]}", "", "invalid UTF-8"},
		{"truncated", `{"resourceType":"Bundle","type":"batch","entry":[` + patient, "", "unexpected end of input"},
		{"data after the bundle", `{"resourceType":"Bundle","type":"batch"} {}`, "", "after the JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fhir.ParseBundle([]byte(tc.body), false)
			fe := fault.As(err)
			if !fault.Is(err, fault.Invalid) || len(fe.Issues) == 0 {
				t.Fatalf("got %v, want an Invalid fault", err)
			}
			var expr string
			if len(fe.Issues[0].Expression) > 0 {
				expr = fe.Issues[0].Expression[0]
			}
			if expr != tc.expr || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("got %v at %q, want %q mentioning %q", err, expr, tc.expr, tc.mention)
			}
		})
	}
}

// A reader's failure (a body over the size limit, say) comes back as it is.
func TestDecodeBundleReaderError(t *testing.T) {
	errLimit := errors.New("over the limit")
	r := io.MultiReader(strings.NewReader(`{"resourceType":"Bundle","type":"batch","entry":[`), iotest.ErrReader(errLimit))
	if _, err := fhir.DecodeBundle(r, fhir.BundleOptions{}); !errors.Is(err, errLimit) {
		t.Errorf("got %v, want the reader's error", err)
	}
}

// One entry over the limit is a 413 naming Bundle.entry; the limit itself
// is fine.
func TestDecodeBundleMaxEntries(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient"}},{"request":{"method":"GET","url":"Patient"}}]}`
	if b, err := fhir.DecodeBundle(strings.NewReader(body), fhir.BundleOptions{MaxEntries: 2}); err != nil || len(b.Entries) != 2 {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := fhir.DecodeBundle(strings.NewReader(body), fhir.BundleOptions{MaxEntries: 1})
	fe := fault.As(err)
	if fe.Kind != fault.TooLarge || fe.Issues[0].Expression[0] != "Bundle.entry" {
		t.Errorf("over the limit: %v (kind %v)", err, fe.Kind)
	}
}

// FuzzDecodeBundle: the streaming bundle decoder never panics, every error
// is a 4xx fault (the reader here cannot fail), and an entry's resource
// is a compact form that parses back.
func FuzzDecodeBundle(f *testing.F) {
	for _, name := range []string{"Bundle-bundle-request-medsallergies.json", "Bundle-bundle-request-simplesummary.json"} {
		b, err := os.ReadFile("../testdata/r4-examples/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"entry":[{"resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=a|b"}},"request":{"method":"POST","url":"Patient"}}],"type":"transaction","resourceType":"Bundle"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := fhir.DecodeBundle(bytes.NewReader(body), fhir.BundleOptions{ConditionalReferences: true, MaxEntries: 100})
		if err != nil {
			if s := fault.Status(err); s < 400 || s >= 500 {
				t.Fatalf("status %d: %v", s, err)
			}
			return
		}
		for i, e := range b.Entries {
			if e.Resource == nil {
				continue
			}
			if _, err := e.Resource.Resource(); err != nil {
				t.Fatalf("entry %d: its compact form does not parse: %v", i, err)
			}
		}
	})
}
