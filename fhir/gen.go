package fhir

// model.json is generated from spec/fhir.schema.r4-4.0.1.json and the samply
// Go models (for required primitives and the list of resource types) and the
// google/fhir R4 protos (for the target types of references, see spec/README.md).
//go:generate go run ./internal/modelgen

// searchparams.json is generated from the SearchParameter Bundle of the npm
// package hl7.fhir.r4.examples@4.0.1 (see spec/README.md); it needs npm.
//go:generate go run ./internal/searchgen

// summary.json is generated from the resource StructureDefinitions of the
// same npm package (see spec/README.md); it needs npm.
//go:generate go run ./internal/summarygen

// compartments.json is generated from the CompartmentDefinitions of the same
// npm package (see spec/README.md); it needs npm.
//go:generate go run ./internal/compartmentgen
