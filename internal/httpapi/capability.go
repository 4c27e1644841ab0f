package httpapi

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
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

// opDef is what the CapabilityStatement says of an operation route
// ($name in its path): its OperationDefinition and, at type or instance
// level, the types that have it (none: every type).
type opDef struct {
	definition string
	types      []string
}

// operationDefs are keyed by operation name, or by route path where the
// definition depends on the level.
var operationDefs = map[string]opDef{
	"everything":  {"http://hl7.org/fhir/OperationDefinition/Patient-everything", []string{"Patient"}},
	"validate":    {"http://hl7.org/fhir/OperationDefinition/Resource-validate", nil},
	"import":      {importDefinition, nil},
	"kap-summary": {kapSummaryDefinition, []string{"EpisodeOfCare"}},
	// Bulk Data export: one name, a definition per level.
	"/fhir/$export":           {"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", nil},
	"/fhir/:type/$export":     {"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export", []string{"Patient"}},
	"/fhir/:type/:id/$export": {"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export", []string{"Group"}},
}

// operationName is the $name segment of an operation route's path.
func operationName(path string) string {
	i := strings.LastIndex(path, "/$")
	if i < 0 {
		return ""
	}
	return strings.SplitN(path[i+2:], "/", 2)[0]
}

// interactionLevels are the interactions and operations of the routes
// table by the level the CapabilityStatement lists them at.
type interactionLevels struct {
	typeLevel, systemLevel []code
	// typeOps are the operations of each resource type, systemOps those
	// of the system.
	typeOps   map[string][]capOperation
	systemOps []capOperation
}

// levelsOf sorts the routes with a level into interactions and operations;
// an operation route must have an entry in operationDefs.
func levelsOf(rs []route) interactionLevels {
	l := interactionLevels{typeOps: map[string][]capOperation{}}
	seen := map[string]bool{}
	for _, rt := range rs {
		if rt.level == "" {
			continue
		}
		if rt.interaction == "operation" {
			l.addOperation(rt, seen)
			continue
		}
		// A route may serve several interactions ("transaction batch").
		for _, in := range strings.Fields(rt.interaction) {
			if seen[in] {
				continue
			}
			seen[in] = true
			if rt.level == "system" {
				l.systemLevel = append(l.systemLevel, code{in})
			} else {
				l.typeLevel = append(l.typeLevel, code{in})
			}
		}
	}
	return l
}

// restDocumentation is the CapabilityStatement's rest.documentation: what
// the interactions serve and leave out.
const restDocumentation = "JSON only. Search serves token, string, uri, reference, date, number, quantity and composite parameters, _id and _lastUpdated, " +
	"at type level, at system level (_type) and in the compartments listed (GET /fhir/Patient/1/Observation). " +
	"Bulk Data export ($export) at system, Patient and Group level. " +
	"PATCH (instance, and conditional with criteria in the URL) takes JSON Patch (application/json-patch+json) or " + fhir.FHIRPathPatchSupport +
	" See docs/fhir-behaviour.md."

func (l *interactionLevels) addOperation(rt route, seen map[string]bool) {
	name := operationName(rt.path)
	def, ok := operationDefs[rt.path] // an operation whose definition depends on the level
	if !ok {
		def, ok = operationDefs[name]
	}
	if !ok {
		panic("httpapi: operation route " + rt.path + " has no entry in operationDefs") // a routes table defect
	}
	if seen[rt.level+" "+def.definition] {
		return // its other methods, or instance and type level
	}
	seen[rt.level+" "+def.definition] = true
	op := capOperation{Name: name, Definition: def.definition}
	if rt.level == "system" {
		l.systemOps = append(l.systemOps, op)
		return
	}
	types := def.types
	if types == nil {
		types = fhir.ResourceTypes()
	}
	for _, t := range types {
		l.typeOps[t] = append(l.typeOps[t], op)
	}
}

// capabilityStatement describes what the routes table serves, for every
// resource type the validator knows, with the search parameters of reg.
// With smart, rest.security says how to get a token.
func capabilityStatement(reg *fhir.Registry, levels interactionLevels, version string, started time.Time, smart *auth.SMART) []byte {
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
			"documentation": restDocumentation,
			"resource":      resources,
			"interaction":   levels.systemLevel,
			"compartment":   compartments,
			"operation":     levels.systemOps,
		}},
		// The Bulk Data export ($export) of the IG is served.
		"instantiates": []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"},
	}
	if len(levels.systemOps) > 0 {
		cs["rest"].([]map[string]any)[0]["operation"] = levels.systemOps
	}
	if smart != nil {
		cs["rest"].([]map[string]any)[0]["security"] = restSecurity(*smart)
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
