package fhir

import "strings"

// ParseOptions relax ParseResource for callers that finish a resource
// before it is stored.
type ParseOptions struct {
	// ConditionalReferences accepts Reference.reference values of the form
	// Type?criteria (a conditional reference, as in transactions and bulk
	// import), which the caller must resolve to Type/id before storing.
	ConditionalReferences bool
}

// ConditionalReference splits a conditional reference Type?criteria with a
// known resource type and non-empty criteria; ok is false for anything else.
func ConditionalReference(ref string) (typ, criteria string, ok bool) {
	typ, criteria, found := strings.Cut(ref, "?")
	if !found || criteria == "" || model().resources[typ] == nil {
		return "", "", false
	}
	return typ, criteria, true
}

func (v *validator) conditionalType(ref string) string {
	typ, _, _ := ConditionalReference(ref)
	return typ
}
