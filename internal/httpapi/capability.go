package httpapi

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/search"
)

type code struct {
	Code string `json:"code"`
}

type capSearchParam struct {
	Name       string `json:"name"`
	Definition string `json:"definition,omitempty"`
	Type       string `json:"type"`
}

type capResource struct {
	Type              string           `json:"type"`
	SearchParam       []capSearchParam `json:"searchParam,omitempty"`
	SearchInclude     []string         `json:"searchInclude,omitempty"`
	SearchRevInclude  []string         `json:"searchRevInclude,omitempty"`
	Interaction       []code           `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete"`
	Operation         []capOperation   `json:"operation,omitempty"`
}

type capOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

// operationDefs describe the operation routes of the routes table, by
// path: the resource type they are listed under ("" for the system
// level) and their OperationDefinition.
var operationDefs = map[string]struct {
	resource string
	op       capOperation
}{
	"/fhir/$export":           {"", capOperation{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}},
	"/fhir/:type/$export":     {"Patient", capOperation{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}},
	"/fhir/:type/:id/$export": {"Group", capOperation{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}},
}

// interactionLevels are the interactions of the routes table by the level
// the CapabilityStatement lists them at.
type interactionLevels struct {
	typeLevel, systemLevel []code
	// The operations of the routes table: system level, and by type.
	systemOps []capOperation
	typeOps   map[string][]capOperation
}

func levelsOf(rs []route) interactionLevels {
	l := interactionLevels{typeOps: map[string][]capOperation{}}
	seen, seenOp := map[string]bool{}, map[string]bool{}
	for _, rt := range rs {
		if d, ok := operationDefs[rt.path]; ok && !seenOp[rt.path] {
			seenOp[rt.path] = true
			if d.resource == "" {
				l.systemOps = append(l.systemOps, d.op)
			} else {
				l.typeOps[d.resource] = append(l.typeOps[d.resource], d.op)
			}
		}
		if rt.level == "" || seen[rt.interaction] {
			continue
		}
		seen[rt.interaction] = true
		if rt.level == "system" {
			l.systemLevel = append(l.systemLevel, code{rt.interaction})
		} else {
			l.typeLevel = append(l.typeLevel, code{rt.interaction})
		}
	}
	return l
}

// capabilityStatement describes what the routes table serves, for every
// resource type the validator knows, with the search parameters of reg.
func capabilityStatement(reg *fhir.Registry, levels interactionLevels, version string, started time.Time) []byte {
	includes, revIncludes := includeTargets(reg)
	var resources []capResource
	for _, t := range fhir.ResourceTypes() {
		var params []capSearchParam
		for _, p := range reg.SearchParams(t) {
			if !search.Searchable(p) {
				continue
			}
			cp := capSearchParam{Name: p.Code, Type: p.Type}
			if p.Custom != nil {
				cp.Definition = p.Custom.URL
			}
			params = append(params, cp)
		}
		resources = append(resources, capResource{
			Type: t, Interaction: levels.typeLevel, SearchParam: params,
			SearchInclude: includes[t], SearchRevInclude: revIncludes[t],
			Versioning: "versioned-update", ReadHistory: true, UpdateCreate: true,
			ConditionalCreate: true, ConditionalRead: "full-support",
			ConditionalUpdate: true, ConditionalDelete: "single",
			Operation: levels.typeOps[t],
		})
	}
	var compartments []string
	for _, c := range fhir.Compartments() {
		// The canonical URLs of R4's CompartmentDefinitions: the code, lower camel case.
		compartments = append(compartments, "http://hl7.org/fhir/CompartmentDefinition/"+strings.ToLower(c[:1])+c[1:])
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         started.UTC().Format(fhir.InstantLayout),
		"publisher":    "kapfhir",
		"kind":         "instance",
		"software":     map[string]string{"name": "kapfhir", "version": version},
		"implementation": map[string]string{
			"description": "kapfhir FHIR R4 server for Ketamine-Assisted Psychotherapy records",
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []map[string]any{{
			"mode":          "server",
			"documentation": "JSON only. Search serves token, string, uri, reference, date, number, quantity and composite parameters, _id and _lastUpdated, at type level, at system level (_type) and in the compartments listed (GET /fhir/Patient/1/Observation); Bulk Data export ($export) at system, Patient and Group level; see docs/fhir-behaviour.md.",
			"resource":      resources,
			"interaction":   levels.systemLevel,
			"compartment":   compartments,
			"operation":     levels.systemOps,
		}},
		// The Bulk Data export ($export) of the IG is served.
		"instantiates": []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"},
	}
	b, _ := json.Marshal(cs)
	return b
}

// includeTargets lists, per type, the _include values its reference
// parameters allow (Type:param) and the _revinclude values of the
// parameters of any type that can refer to it.
func includeTargets(reg *fhir.Registry) (includes, revIncludes map[string][]string) {
	includes, revIncludes = map[string][]string{}, map[string][]string{}
	types := fhir.ResourceTypes()
	for _, u := range types {
		for _, p := range reg.SearchParams(u) {
			if p.Type != "reference" {
				continue
			}
			v := u + ":" + p.Code
			includes[u] = append(includes[u], v)
			targets := p.Targets
			if len(targets) == 0 {
				targets = types
			}
			for _, t := range targets {
				revIncludes[t] = append(revIncludes[t], v)
			}
		}
	}
	for _, m := range []map[string][]string{includes, revIncludes} {
		for t := range m {
			sort.Strings(m[t])
		}
	}
	return includes, revIncludes
}
