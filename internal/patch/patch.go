// Package patch is the entry point of PATCH, for the REST interaction and
// for PATCH entries of batch and transaction bundles alike: it picks the
// patch format by media type. Applying a patch is fhir.ApplyPatch (or
// resource.Service.Patch, which stores the result as an update).
package patch

import (
	"mime"
	"strings"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// The media types of the two patch formats.
const (
	JSONPatch = "application/json-patch+json" // RFC 6902
	FHIRJSON  = "application/fhir+json"       // FHIRPath Patch: a Parameters resource
)

// Parse reads body as the patch format of mediaType (a Content-Type value,
// parameters allowed): JSON Patch for application/json-patch+json, FHIRPath
// Patch for FHIR JSON (application/fhir+json, application/json,
// application/json+fhir). Another type is UnsupportedMediaType (415); a
// malformed document is Invalid (400) naming the operation.
func Parse(mediaType string, body []byte) (fhir.Patch, error) {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		mt = ""
	}
	switch strings.ToLower(mt) {
	case JSONPatch:
		return fhir.ParseJSONPatch(body)
	case FHIRJSON, "application/json", "application/json+fhir":
		return fhir.ParseFHIRPathPatch(body)
	}
	return nil, fault.New(fault.UnsupportedMediaType, "", "a patch must be %s (JSON Patch) or %s (FHIRPath Patch), not %q", JSONPatch, FHIRJSON, mediaType)
}

// Apply parses body as a patch of mediaType and applies it to current, a
// stored resource; the result is validated as an update would be (see
// fhir.ApplyPatch).
func Apply(current []byte, mediaType string, body []byte) (*fhir.Resource, error) {
	p, err := Parse(mediaType, body)
	if err != nil {
		return nil, err
	}
	return fhir.ApplyPatch(current, p)
}
