// Command compartmentgen writes fhir/compartments.json, the resources and
// search parameters of the five FHIR R4 (4.0.1) compartments (Patient,
// Encounter, RelatedPerson, Practitioner, Device). It is run by go generate
// in the fhir directory (see fhir/gen.go) and needs npm and the npm
// registry; CI never runs it, the output is committed.
//
// Input: package/CompartmentDefinition-{patient,encounter,relatedPerson,
// practitioner,device}.json of the npm package hl7.fhir.r4.examples@4.0.1
// (HL7 International, CC0-1.0), read through specpkg.
//
// Output: {"source": ..., "compartments": {"Patient": {"Observation":
// ["performer", "subject"], ...}, ...}}, with only the resource types that
// have parameters, everything sorted, so the file is reproducible.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"

	"github.com/kapfhir/kapfhir/fhir/internal/specpkg"
)

const outPath = "compartments.json"

var members = []string{
	"package/CompartmentDefinition-device.json",
	"package/CompartmentDefinition-encounter.json",
	"package/CompartmentDefinition-patient.json",
	"package/CompartmentDefinition-practitioner.json",
	"package/CompartmentDefinition-relatedPerson.json",
}

type compartmentDefinition struct {
	ResourceType string `json:"resourceType"`
	Code         string `json:"code"`
	Resource     []struct {
		Code  string   `json:"code"`
		Param []string `json:"param"`
	} `json:"resource"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("compartmentgen: ")
	files, err := specpkg.Read(func(name string) bool {
		return strings.HasPrefix(name, "package/CompartmentDefinition-")
	})
	if err != nil {
		log.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, m := range members {
		if files[m] == nil {
			log.Fatalf("%s: no %s", specpkg.Name, m)
		}
		var cd compartmentDefinition
		if err := json.Unmarshal(files[m], &cd); err != nil {
			log.Fatalf("%s: %v", m, err)
		}
		if cd.ResourceType != "CompartmentDefinition" || cd.Code == "" {
			log.Fatalf("%s is not a CompartmentDefinition with a code", m)
		}
		byType := map[string][]string{}
		for _, r := range cd.Resource {
			if len(r.Param) == 0 {
				continue
			}
			params := append([]string(nil), r.Param...)
			sort.Strings(params)
			byType[r.Code] = params
		}
		out[cd.Code] = byType
	}
	// One line per resource type, keys sorted, so diffs stay readable.
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"source\":%q,\n\"compartments\":{", specpkg.Name+" package/CompartmentDefinition-*.json")
	for i, code := range sortedKeys(out) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n%q:{", code)
		for j, typ := range sortedKeys(out[code]) {
			if j > 0 {
				b.WriteByte(',')
			}
			params, _ := json.Marshal(out[code][typ])
			fmt.Fprintf(&b, "\n %q:%s", typ, params)
		}
		b.WriteString("}")
	}
	b.WriteString("}}\n")
	if err := os.WriteFile(outPath, b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %d compartments", outPath, len(out))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
