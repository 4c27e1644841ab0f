// Command searchgen writes fhir/searchparams.json, the compact registry of
// the FHIR R4 (4.0.1) search parameters. It is run by go generate in the fhir
// directory (see fhir/gen.go) and needs npm and the npm registry; CI never
// runs it, the output is committed.
//
// Input: package/Bundle-searchParams.json of the npm package
// hl7.fhir.r4.examples@4.0.1 (HL7 International, CC0-1.0), the Bundle of the
// 1,375 SearchParameter resources of the R4 specification (the same content
// as the spec's search-parameters.json). The tarball is fetched with
// `npm pack` into a temporary directory and checked against its pinned
// sha512 integrity, so the output is reproducible.
//
// Output: one entry per (base type, code), sorted by base then code. A
// parameter with several bases (clinical-code: AllergyIntolerance.code |
// Condition.code | ...) is split so that each base keeps only the union
// branches rooted at it. Only what search needs is kept: code, type,
// expression, targets, multipleOr/multipleAnd, comparators, modifiers and,
// for composites, the components (code and type of the component's
// definition, and the expression relative to the composite's element).
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
	member  = "package/Bundle-searchParams.json"
	outPath = "searchparams.json"
)

type bundle struct {
	Entry []struct {
		Resource searchParameter `json:"resource"`
	} `json:"entry"`
}

type searchParameter struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Code         string   `json:"code"`
	Base         []string `json:"base"`
	Type         string   `json:"type"`
	Expression   string   `json:"expression"`
	Target       []string `json:"target"`
	MultipleOr   *bool    `json:"multipleOr"`
	MultipleAnd  *bool    `json:"multipleAnd"`
	Comparator   []string `json:"comparator"`
	Modifier     []string `json:"modifier"`
	Component    []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
}

// Param is one entry of searchparams.json; the fhir package mirrors it.
type Param struct {
	Base        string      `json:"base"`
	Code        string      `json:"code"`
	Type        string      `json:"type"`
	Expression  string      `json:"expr,omitempty"`
	Targets     []string    `json:"targets,omitempty"`
	MultipleOr  *bool       `json:"multipleOr,omitempty"`
	MultipleAnd *bool       `json:"multipleAnd,omitempty"`
	Comparators []string    `json:"comparators,omitempty"`
	Modifiers   []string    `json:"modifiers,omitempty"`
	Components  []Component `json:"components,omitempty"`
}

// Component is one component of a composite parameter.
type Component struct {
	Code       string `json:"code"`
	Type       string `json:"type"`
	Expression string `json:"expr"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("searchgen: ")
	data, err := fetch()
	if err != nil {
		log.Fatal(err)
	}
	params, err := build(data)
	if err != nil {
		log.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "{\"source\":%q,\n\"params\":[\n", specpkg.Name+" "+member)
	for i, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			log.Fatal(err)
		}
		out.Write(b)
		if i < len(params)-1 {
			out.WriteByte(',')
		}
		out.WriteByte('\n')
	}
	out.WriteString("]}\n")
	if err := os.WriteFile(outPath, out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %d parameters", outPath, len(params))
}

// fetch returns the Bundle's bytes.
func fetch() ([]byte, error) {
	files, err := specpkg.Read(func(name string) bool { return name == member })
	if err != nil {
		return nil, err
	}
	if files[member] == nil {
		return nil, fmt.Errorf("%s: no %s", specpkg.Name, member)
	}
	return files[member], nil
}

func build(data []byte) ([]Param, error) {
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	byURL := map[string]*searchParameter{}
	for i := range b.Entry {
		sp := &b.Entry[i].Resource
		if sp.ResourceType != "SearchParameter" {
			return nil, fmt.Errorf("entry %d is a %s", i, sp.ResourceType)
		}
		byURL[sp.URL] = sp
	}
	var out []Param
	seen := map[string]string{}
	for i := range b.Entry {
		sp := &b.Entry[i].Resource
		var comps []Component
		for _, c := range sp.Component {
			def := byURL[c.Definition]
			if def == nil {
				return nil, fmt.Errorf("%s: component definition %s not found", sp.ID, c.Definition)
			}
			comps = append(comps, Component{Code: def.Code, Type: def.Type, Expression: c.Expression})
		}
		for _, base := range sp.Base {
			key := base + "." + sp.Code
			if other, dup := seen[key]; dup {
				return nil, fmt.Errorf("%s and %s both define %s", other, sp.ID, key)
			}
			seen[key] = sp.ID
			expr := sp.Expression
			if len(sp.Base) > 1 {
				expr = branchesOf(expr, base)
			}
			out = append(out, Param{
				Base: base, Code: sp.Code, Type: sp.Type, Expression: expr,
				Targets: sorted(sp.Target), MultipleOr: sp.MultipleOr, MultipleAnd: sp.MultipleAnd,
				Comparators: sp.Comparator, Modifiers: sp.Modifier, Components: comps,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Base != out[j].Base {
			return out[i].Base < out[j].Base
		}
		return out[i].Code < out[j].Code
	})
	return out, nil
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// branchesOf returns the top-level union branches of expr rooted at base,
// joined again with " | ".
func branchesOf(expr, base string) string {
	var keep []string
	for _, br := range splitUnion(expr) {
		if root(br) == base {
			keep = append(keep, br)
		}
	}
	return strings.Join(keep, " | ")
}

// splitUnion splits expr at the | operators outside parentheses and
// string literals.
func splitUnion(expr string) []string {
	var parts []string
	depth, start := 0, 0
	inStr := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '\'' {
				inStr = false
			}
		case c == '\'':
			inStr = true
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			parts = append(parts, strings.TrimSpace(expr[start:i]))
			start = i + 1
		}
	}
	return append(parts, strings.TrimSpace(expr[start:]))
}

// root is the first identifier of a branch: Observation of
// (Observation.value as Quantity).
func root(br string) string {
	br = strings.TrimLeft(br, "( ")
	end := strings.IndexFunc(br, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	if end < 0 {
		return br
	}
	return br[:end]
}
