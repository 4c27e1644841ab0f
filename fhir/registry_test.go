package fhir

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/fault"
)

func TestRegistryCustomParams(t *testing.T) {
	eye := CustomParam{ID: "eye", Version: 1, URL: "http://example.org/sp/eye", Code: "eye-colour", Type: "token",
		Expression: "Patient.extension.where(url='http://example.org/eye-colour').value", Base: []string{"Patient"}}
	tests := []struct {
		name     string
		edit     func(c *CustomParam)
		wantExpr string // "" when accepted
	}{
		{"accepted", func(c *CustomParam) {}, ""},
		{"string on two bases", func(c *CustomParam) {
			c.Code, c.Type, c.Expression, c.Base = "note-text", "string", "Observation.note.text | Condition.note.text", []string{"Observation", "Condition"}
		}, ""},
		{"branch for no base", func(c *CustomParam) { c.Expression = "Observation.note.text" }, "SearchParameter.expression"},
		{"bad code characters", func(c *CustomParam) { c.Code = "eye colour" }, "SearchParameter.code"},
		{"code starting with _", func(c *CustomParam) { c.Code = "_eye" }, "SearchParameter.code"},
		{"built-in code", func(c *CustomParam) { c.Code = "birthdate" }, "SearchParameter.code"},
		{"composite", func(c *CustomParam) { c.Type = "composite" }, "SearchParameter.type"},
		{"special", func(c *CustomParam) { c.Type = "special" }, "SearchParameter.type"},
		{"no expression", func(c *CustomParam) { c.Expression = "" }, "SearchParameter.expression"},
		{"syntax error", func(c *CustomParam) { c.Expression = "Patient.name.where(" }, "SearchParameter.expression"},
		{"unknown element", func(c *CustomParam) { c.Expression = "Patient.eyeColour" }, "SearchParameter.expression"},
		{"type cannot index", func(c *CustomParam) { c.Type, c.Expression = "date", "Patient.gender" }, "SearchParameter.expression"},
		{"abstract base", func(c *CustomParam) { c.Base = []string{"Patient", "DomainResource"} }, "SearchParameter.base[1]"},
		{"no base", func(c *CustomParam) { c.Base = nil }, "SearchParameter.base"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewRegistry()
			c := eye
			c.Base = append([]string(nil), eye.Base...)
			tc.edit(&c)
			err := reg.Put(c)
			if tc.wantExpr == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				for _, base := range c.Base {
					p := reg.Lookup(base, c.Code)
					if p == nil || p.Custom == nil || p.Custom.URL != c.URL {
						t.Fatalf("%s.%s not registered: %+v", base, c.Code, p)
					}
					if !slices.Contains(reg.SearchParams(base), p) {
						t.Errorf("%s.%s missing from SearchParams", base, c.Code)
					}
				}
				return
			}
			fe := fault.As(err)
			if err == nil || fe.Kind != fault.Unprocessable {
				t.Fatalf("got %v, want a 422", err)
			}
			if got := fe.Issues[0].Expression; !cmp.Equal(got, []string{tc.wantExpr}) {
				t.Errorf("expression %v, want %s", got, tc.wantExpr)
			}
			if reg.Lookup("Patient", c.Code) != nil && c.Code != "birthdate" {
				t.Errorf("a rejected parameter was registered")
			}
		})
	}
}

func TestRegistryCustomLifecycle(t *testing.T) {
	reg := NewRegistry()
	builtin := len(reg.SearchParams("Patient"))
	a := CustomParam{ID: "a", Version: 1, Code: "nickname", Type: "string", Expression: "Patient.name.given", Base: []string{"Patient"}}
	if err := reg.Put(a); err != nil {
		t.Fatal(err)
	}
	// Another SearchParameter may not take the code on the same base ...
	b := a
	b.ID = "b"
	if err := reg.Put(b); err == nil {
		t.Fatal("two custom parameters with one code on one base were accepted")
	}
	// ... but the same one may change its definition.
	a.Version, a.Type, a.Expression = 2, "token", "Patient.gender"
	if err := reg.Put(a); err != nil {
		t.Fatal(err)
	}
	if p := reg.Lookup("Patient", "nickname"); p == nil || p.Type != "token" || reg.CustomVersion("a") != 2 {
		t.Fatalf("the update did not replace the parameter: %+v", p)
	}
	if got := len(reg.SearchParams("Patient")); got != builtin+1 {
		t.Errorf("%d Patient parameters, want %d", got, builtin+1)
	}
	reg.Remove("a")
	if reg.Lookup("Patient", "nickname") != nil || len(reg.SearchParams("Patient")) != builtin || reg.CustomVersion("a") != 0 {
		t.Error("the removed parameter is still served")
	}
	if err := reg.Put(b); err != nil {
		t.Errorf("the code is free again, but: %v", err)
	}
}

// builtins serves the tests that read built-in parameters only.
var builtins = NewRegistry()
