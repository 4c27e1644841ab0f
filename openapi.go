// Package kapfhir holds files that belong to the module as a whole. It
// exists because go:embed cannot reach files above a package's directory.
package kapfhir

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of every HTTP route the server
// serves (openapi.yaml at the module root).
//
//go:embed openapi.yaml
var OpenAPI []byte
