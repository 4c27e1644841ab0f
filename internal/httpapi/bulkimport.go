package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/internal/bulkimport"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// importDefinition is the canonical of the $import operation: the Bulk Data
// import drafts define none for R4, so it is this server's.
const importDefinition = "https://github.com/kapfhir/kapfhir/OperationDefinition/import"

// importNDJSON answers POST /fhir/$import: the body is NDJSON, one resource
// per line of any types, imported as `kapfhir import` imports a file
// (docs/fhir-behaviour.md, "Bulk import"). It answers 200 with an
// OperationOutcome: one information issue per type with its counts, one
// error issue per line not imported. The import runs in the request:
// Prefer: respond-async is not honoured (the body is bounded by
// KAPFHIR_MAX_BODY_BYTES, so the request is too).
func (a *api) importNDJSON(c *gin.Context) error {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !ndjsonFormat(mt) {
		return fault.New(fault.UnsupportedMediaType, "", "Content-Type %q is not supported; $import takes application/fhir+ndjson", c.GetHeader("Content-Type"))
	}
	b, err := a.body(c)
	if err != nil {
		return err
	}
	src := bulkimport.Source{Name: "body", Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	rep, err := a.Importer.Run(c.Request.Context(), []bulkimport.Source{src})
	if err != nil {
		return err
	}
	var issues []fault.Issue
	for _, typ := range slices.Sorted(maps.Keys(rep.Types)) {
		n := rep.Types[typ]
		if typ == "" {
			typ = "(unknown type)"
		}
		issues = append(issues, fault.Issue{Severity: "information", Code: "informational", Diagnostics: fmt.Sprintf(
			"%s: %d lines, %d created, %d updated, %d unchanged, %d failed", typ, n.Lines, n.Created, n.Updated, n.Unchanged, n.Failed)})
	}
	for _, e := range rep.Errors {
		for _, is := range e.Err.Issues {
			is.Diagnostics = fmt.Sprintf("line %d: %s", e.Line, is.Diagnostics)
			issues = append(issues, is)
		}
	}
	if failed := rep.Failed(); failed > len(rep.Errors) {
		issues = append(issues, fault.Issue{Severity: "warning", Code: "too-costly", Diagnostics: fmt.Sprintf("%d lines failed; the first %d are listed", failed, len(rep.Errors))})
	}
	if len(issues) == 0 {
		issues = append(issues, fault.Issue{Severity: "information", Code: "informational", Diagnostics: "the body holds no resources"})
	}
	c.Data(http.StatusOK, fhirJSON, pretty(c, fault.OutcomeOf(issues)))
	return nil
}
