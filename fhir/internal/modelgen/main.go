// Command modelgen writes fhir/model.json, the compact type model the fhir
// package validates against. It is run by go generate in the fhir directory.
//
// Inputs:
//   - spec/fhir.schema.r4-4.0.1.json (HL7 FHIR R4 JSON Schema): elements,
//     their types, cardinality, code enums and required complex elements;
//   - the samply golang-fhir-models sources (a module dependency): required
//     primitives (json tags without omitempty, which the schema does not list)
//     and the set of resource types that both sources know;
//   - the google/fhir R4 core protos (a module dependency, github.com/google/fhir/go):
//     the resource types each Reference element may refer to (the
//     valid_reference_type field option), see targets.go.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"

	// Imported for its sources, which the generator parses: the import keeps
	// the module in go.mod and its files in the module cache.
	_ "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

const (
	schemaPath  = "spec/fhir.schema.r4-4.0.1.json"
	outPath     = "model.json"
	samplyMod   = "github.com/samply/golang-fhir-models/fhir-models"
	refPrefix   = "#/definitions/"
	resourceRef = "ResourceList"
)

// Model is the generated file; the fhir package has a mirror of it.
type Model struct {
	Primitives map[string]Primitive          `json:"primitives"`
	Resources  []string                      `json:"resources"`
	Types      map[string]map[string]Element `json:"types"`
}

// Primitive is a primitive type's JSON type and the schema's pattern.
type Primitive struct {
	JSON    string `json:"json"`
	Pattern string `json:"pattern,omitempty"`
}

// Element is one element of a type; short keys keep model.json small.
type Element struct {
	Type     string   `json:"t"`
	Array    bool     `json:"a,omitempty"`
	Required bool     `json:"r,omitempty"`
	Enum     []string `json:"e,omitempty"`
	Choice   string   `json:"c,omitempty"`
	// Targets are the resource types a Reference element may refer to;
	// none means any.
	Targets []string `json:"targets,omitempty"`
}

type schema struct {
	Definitions map[string]definition `json:"definitions"`
}

type definition struct {
	Type       string              `json:"type"`
	Pattern    string              `json:"pattern"`
	OneOf      []property          `json:"oneOf"`
	Properties map[string]property `json:"properties"`
	Required   []string            `json:"required"`
}

type property struct {
	Description string    `json:"description"`
	Ref         string    `json:"$ref"`
	Type        string    `json:"type"`
	Pattern     string    `json:"pattern"`
	Enum        []string  `json:"enum"`
	Const       string    `json:"const"`
	Items       *property `json:"items"`
}

func main() {
	log.SetFlags(0)
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		log.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(raw, &s); err != nil {
		log.Fatal(err)
	}
	dir, err := samplyDir()
	if err != nil {
		log.Fatal(err)
	}
	structs, samplyResources, err := parseSamply(dir)
	if err != nil {
		log.Fatal(err)
	}
	m, err := build(&s, structs, samplyResources)
	if err != nil {
		log.Fatal(err)
	}
	if err := addTargets(m); err != nil {
		log.Fatal(err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(outPath, out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}

func samplyDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", samplyMod).Output()
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", samplyMod, err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "fhir"), nil
}

// parseSamply returns, per struct name, the json names of fields that are
// required (tag without omitempty), and the names of resource structs (those
// whose MarshalJSON sets a ResourceType field).
func parseSamply(dir string) (map[string]map[string]bool, map[string]bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	structs := map[string]map[string]bool{}
	resources := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			return nil, nil, err
		}
		for _, decl := range file.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					req := map[string]bool{}
					for _, fld := range st.Fields.List {
						if fld.Tag == nil {
							continue
						}
						tag, err := strconv.Unquote(fld.Tag.Value)
						if err != nil {
							return nil, nil, err
						}
						name, opts, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
						req[name] = !strings.Contains(opts, "omitempty")
					}
					structs[ts.Name.Name] = req
				}
			case *ast.FuncDecl:
				if d.Name.Name != "MarshalJSON" || d.Recv == nil || len(d.Recv.List) != 1 {
					continue
				}
				recv, ok := d.Recv.List[0].Type.(*ast.Ident)
				if ok && setsResourceType(d.Body) {
					resources[recv.Name] = true
				}
			}
		}
	}
	return structs, resources, nil
}

func setsResourceType(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if kv, ok := n.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "ResourceType" {
				found = true
			}
		}
		return !found
	})
	return found
}

func build(s *schema, structs map[string]map[string]bool, samplyResources map[string]bool) (*Model, error) {
	m := &Model{Primitives: map[string]Primitive{}, Types: map[string]map[string]Element{}}
	defs := s.Definitions
	for name, d := range defs {
		if d.Properties == nil && name != resourceRef {
			m.Primitives[name] = Primitive{JSON: d.Type, Pattern: d.Pattern}
		}
	}
	list, ok := defs[resourceRef]
	if !ok {
		return nil, fmt.Errorf("schema has no %s", resourceRef)
	}
	for _, r := range list.OneOf {
		name := strings.TrimPrefix(r.Ref, refPrefix)
		if samplyResources[name] {
			m.Resources = append(m.Resources, name)
		}
	}
	sort.Strings(m.Resources)
	for name, d := range defs {
		if d.Properties == nil {
			continue
		}
		elems := map[string]Element{}
		for pn, p := range d.Properties {
			// A resource's resourceType (a const) is the type tag, not an element;
			// ExampleScenario.instance.resourceType is a real code element.
			if (pn == "resourceType" && p.Const != "") || strings.HasPrefix(pn, "_") {
				continue
			}
			e, err := element(pn, p, m.Primitives)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", name, pn, err)
			}
			elems[pn] = e
		}
		for _, r := range d.Required {
			if r == "resourceType" {
				continue
			}
			e, ok := elems[r]
			if !ok {
				return nil, fmt.Errorf("%s: required %q is not an element", name, r)
			}
			e.Required = true
			elems[r] = e
		}
		// Samply names backbone elements without the underscore.
		if req, ok := structs[strings.ReplaceAll(name, "_", "")]; ok {
			for jn, r := range req {
				if e, ok := elems[jn]; ok && r {
					e.Required = true
					elems[jn] = e
				}
			}
		}
		markChoices(elems, d.Properties, defs)
		m.Types[name] = elems
	}
	return m, nil
}

func element(name string, p property, prims map[string]Primitive) (Element, error) {
	var e Element
	if p.Type == "array" {
		if p.Items == nil {
			return e, fmt.Errorf("array without items")
		}
		e.Array = true
		p = *p.Items
	}
	switch {
	case p.Ref != "":
		e.Type = strings.TrimPrefix(p.Ref, refPrefix)
	case p.Enum != nil:
		e.Type = "code"
		e.Enum = p.Enum
	case p.Pattern != "" || p.Type != "":
		// Choice elements of primitive type (Extension.value[x] and the
		// like) spell out the pattern instead of a $ref; the type is the
		// longest primitive name that ends the element name.
		for prim := range prims {
			if strings.HasSuffix(name, capitalise(prim)) && len(prim) > len(e.Type) {
				e.Type = prim
			}
		}
		if e.Type == "" {
			return e, fmt.Errorf("no primitive type matches")
		}
	default:
		return e, fmt.Errorf("unknown property shape")
	}
	return e, nil
}

// markChoices finds choice groups, which the schema does not mark: at least
// two single elements prefix+Type whose type is Type, where prefix is no
// element, all with the same description (the schema repeats the one of
// prefix[x]). The last two conditions keep out look-alikes such as
// CarePlan.activity.outcomeReference (an array) and
// PaymentReconciliation.paymentDate / paymentIdentifier.
func markChoices(elems map[string]Element, props map[string]property, defs map[string]definition) {
	groups := map[string][]string{}
	for name, e := range elems {
		if e.Array {
			continue
		}
		suffix := capitalise(strings.ReplaceAll(e.Type, "_", ""))
		if _, isType := defs[e.Type]; !isType || e.Type == resourceRef {
			continue
		}
		prefix, ok := strings.CutSuffix(name, suffix)
		if !ok || prefix == "" {
			continue
		}
		if _, clash := elems[prefix]; clash {
			continue
		}
		groups[prefix] = append(groups[prefix], name)
	}
	for prefix, names := range groups {
		if len(names) < 2 {
			continue
		}
		same := true
		for _, n := range names[1:] {
			same = same && props[n].Description == props[names[0]].Description
		}
		if !same {
			continue
		}
		for _, n := range names {
			e := elems[n]
			e.Choice = prefix
			elems[n] = e
		}
	}
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
