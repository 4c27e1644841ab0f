package fhir

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOutboundEdits(t *testing.T) {
	ours := Identifier{System: "urn:kapfhir:x", Value: "Observation/o1"}
	for _, tc := range []struct {
		name, in, want string
		edit           func(r *Resource) bool
	}{
		{
			name: "create: no id, meta of ours, identifier, tag, lexemes kept",
			in:   `{"resourceType":"Observation","id":"o1","meta":{"versionId":"3","lastUpdated":"2026-01-01T00:00:00Z","source":"#a","security":[{"code":"R"}]},"status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}`,
			want: `{"resourceType":"Observation","meta":{"security":[{"code":"R"}],"tag":[{"system":"urn:kapfhir:version","code":"3"}]},"identifier":[{"system":"urn:kapfhir:x","value":"Observation/o1"}],"status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}`,
			edit: func(r *Resource) bool {
				r.RemoveID()
				r.RemoveMeta("versionId", "lastUpdated", "source")
				r.AddTag("urn:kapfhir:version", "3")
				return r.AddIdentifier(ours)
			},
		},
		{
			name: "an empty meta goes, identifiers are appended",
			in:   `{"resourceType":"Observation","id":"o1","meta":{"versionId":"1"},"identifier":[{"value":"a"}],"status":"final","code":{"text":"x"}}`,
			want: `{"resourceType":"Observation","id":"o1","identifier":[{"value":"a"},{"system":"urn:kapfhir:x","value":"Observation/o1"}],"status":"final","code":{"text":"x"}}`,
			edit: func(r *Resource) bool {
				r.RemoveMeta("versionId")
				return r.AddIdentifier(ours)
			},
		},
		{
			name: "one identifier: set when absent",
			in:   `{"resourceType":"QuestionnaireResponse","status":"completed"}`,
			want: `{"resourceType":"QuestionnaireResponse","identifier":{"system":"urn:kapfhir:x","value":"Observation/o1"},"status":"completed"}`,
			edit: func(r *Resource) bool { return r.AddIdentifier(ours) },
		},
		{
			name: "one identifier taken",
			in:   `{"resourceType":"QuestionnaireResponse","identifier":{"value":"q"},"status":"completed"}`,
			want: `{"resourceType":"QuestionnaireResponse","identifier":{"value":"q"},"status":"completed"}`,
			edit: func(r *Resource) bool { return !r.AddIdentifier(ours) },
		},
		{
			name: "no identifier element",
			in:   `{"resourceType":"Binary","contentType":"text/plain"}`,
			want: `{"resourceType":"Binary","contentType":"text/plain"}`,
			edit: func(r *Resource) bool { return !r.AddIdentifier(ours) },
		},
		{
			name: "references rewritten or made logical, contained too",
			in:   `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","link":[{"other":{"reference":"Patient/x"},"type":"seealso"}]}],"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1","display":"D"},"performer":[{"reference":"Practitioner/2"},{"reference":"#p"}]}`,
			want: `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","link":[{"other":{"reference":"Patient/X"},"type":"seealso"}]}],"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/R1","display":"D"},"performer":[{"identifier":{"system":"urn:kapfhir:x","value":"Practitioner/2"}},{"reference":"#p"}]}`,
			edit: func(r *Resource) bool {
				return r.EditReferences(func(_, ref string) (ReferenceEdit, error) {
					switch ref {
					case "Patient/1":
						return ReferenceEdit{Reference: "Patient/R1"}, nil
					case "Patient/x":
						return ReferenceEdit{Reference: "Patient/X"}, nil
					case "Practitioner/2":
						return ReferenceEdit{Logical: &Identifier{System: "urn:kapfhir:x", Value: ref}}, nil
					}
					return ReferenceEdit{Reference: ref}, nil
				}) == nil
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResource([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.edit(r) {
				t.Error("the edit reported the wrong result")
			}
			if diff := cmp.Diff(tc.want, string(r.Bytes())); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := ParseResource(r.Bytes()); err != nil {
				t.Errorf("the edited resource is invalid: %v", err)
			}
		})
	}
}
