// Command summarygen writes fhir/summary.json, what _summary and _elements
// keep of each FHIR R4 (4.0.1) resource type. It is run by go generate in
// the fhir directory (see fhir/gen.go) and needs npm and the npm registry;
// CI never runs it, the output is committed.
//
// Input: package/Bundle-resources.json of the npm package
// hl7.fhir.r4.examples@4.0.1 (HL7 International, CC0-1.0), the
// StructureDefinitions of the R4 resources (read through specpkg, which
// checks the tarball's pinned integrity).
//
// Output, per concrete resource type, element paths relative to the
// resource (Observation.component.code is "component.code"), choice
// elements expanded to their typed names (deceasedBoolean,
// deceasedDateTime), every list sorted:
//   - summary: the elements with isSummary true;
//   - mandatory: the elements with min >= 1;
//   - backbone: the elements defined inline (they have child elements),
//     which _summary=true filters element by element;
//   - refs: elements whose definition is another backbone element's
//     (contentReference, Questionnaire.item.item → item).
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

const (
	member  = "package/Bundle-resources.json"
	outPath = "summary.json"
)

// bundle holds resources of several types (OperationDefinition's type is a
// boolean), so each is decoded once its resourceType is known.
type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type structureDefinition struct {
	Type     string `json:"type"`
	Kind     string `json:"kind"`
	Abstract bool   `json:"abstract"`
	Snapshot struct {
		Element []element `json:"element"`
	} `json:"snapshot"`
}

type element struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	IsSummary        bool   `json:"isSummary"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code string `json:"code"`
	} `json:"type"`
}

// Type is one entry of summary.json; the fhir package mirrors it.
type Type struct {
	Summary   []string          `json:"summary"`
	Mandatory []string          `json:"mandatory,omitempty"`
	Backbone  []string          `json:"backbone,omitempty"`
	Refs      map[string]string `json:"refs,omitempty"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("summarygen: ")
	files, err := specpkg.Read(func(name string) bool { return name == member })
	if err != nil {
		log.Fatal(err)
	}
	if files[member] == nil {
		log.Fatalf("%s: no %s", specpkg.Name, member)
	}
	types, err := build(files[member])
	if err != nil {
		log.Fatal(err)
	}
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	var out bytes.Buffer
	fmt.Fprintf(&out, "{\"source\":%q,\n\"types\":{\n", specpkg.Name+" "+member)
	for i, n := range names {
		b, err := json.Marshal(types[n])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(&out, "%q:%s", n, b)
		if i < len(names)-1 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
	}
	out.WriteString("}}\n")
	if err := os.WriteFile(outPath, out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %d resource types", outPath, len(names))
}

func build(data []byte) (map[string]Type, error) {
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	out := map[string]Type{}
	for _, e := range b.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, err
		}
		if head.ResourceType != "StructureDefinition" {
			continue
		}
		var sd structureDefinition
		if err := json.Unmarshal(e.Resource, &sd); err != nil {
			return nil, err
		}
		if sd.Kind != "resource" || sd.Abstract {
			continue
		}
		t, err := resourceType(sd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sd.Type, err)
		}
		out[sd.Type] = t
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no resource StructureDefinitions", member)
	}
	return out, nil
}

func resourceType(sd structureDefinition) (Type, error) {
	prefix := sd.Type + "."
	t := Type{Summary: []string{}}
	parents := map[string]bool{}
	for _, e := range sd.Snapshot.Element {
		if e.Path == sd.Type {
			continue
		}
		path, ok := strings.CutPrefix(e.Path, prefix)
		if !ok {
			return t, fmt.Errorf("element %s outside the type", e.Path)
		}
		if i := strings.LastIndexByte(path, '.'); i >= 0 {
			parents[path[:i]] = true
		}
		names, err := expand(path, e)
		if err != nil {
			return t, err
		}
		if e.IsSummary {
			t.Summary = append(t.Summary, names...)
		}
		if e.Min >= 1 {
			t.Mandatory = append(t.Mandatory, names...)
		}
		if e.ContentReference != "" {
			target, ok := strings.CutPrefix(e.ContentReference, "#"+prefix)
			if !ok {
				return t, fmt.Errorf("%s: contentReference %s outside the type", e.Path, e.ContentReference)
			}
			if t.Refs == nil {
				t.Refs = map[string]string{}
			}
			t.Refs[path] = target
		}
	}
	for p := range parents {
		if strings.HasSuffix(p, "[x]") {
			return t, fmt.Errorf("choice element %s has child elements", p)
		}
		t.Backbone = append(t.Backbone, p)
	}
	for p, target := range t.Refs {
		if !parents[target] {
			return t, fmt.Errorf("%s refers to %s, which has no child elements", p, target)
		}
	}
	sort.Strings(t.Summary)
	sort.Strings(t.Mandatory)
	sort.Strings(t.Backbone)
	return t, nil
}

// expand returns the JSON names of an element: value[x] of types Quantity
// and string is valueQuantity and valueString.
func expand(path string, e element) ([]string, error) {
	base, ok := strings.CutSuffix(path, "[x]")
	if !ok {
		return []string{path}, nil
	}
	if len(e.Type) == 0 {
		return nil, fmt.Errorf("choice element %s has no types", e.Path)
	}
	var out []string
	for _, t := range e.Type {
		if t.Code == "" {
			return nil, fmt.Errorf("choice element %s has a type without code", e.Path)
		}
		out = append(out, base+strings.ToUpper(t.Code[:1])+t.Code[1:])
	}
	return out, nil
}
