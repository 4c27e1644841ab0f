package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/search"
)

// everything answers GET /fhir/Patient/:id/$everything with a searchset
// Bundle: the patient, its compartment and what they refer to (see
// search.Everything).
func (a *api) everything(c *gin.Context) error {
	return a.everythingOf(c, c.Request.URL.Query())
}

// everythingPost is the POST form: the parameters in a Parameters body
// (and the URL).
func (a *api) everythingPost(c *gin.Context) error {
	body, err := a.body(c)
	if err != nil {
		return err
	}
	res, err := fhir.ParseResource(body)
	if err != nil {
		return err
	}
	if res.Type() != "Parameters" {
		return fault.New(fault.Invalid, "resourceType", "the body of POST $everything is a Parameters resource, not a %s", res.Type())
	}
	params, resources, err := operationParams(body)
	if err != nil {
		return err
	}
	if len(resources) > 0 {
		return fault.New(fault.Invalid, "Parameters.parameter", "$everything takes no resource parameters")
	}
	// _type may repeat in Parameters; the query form is one comma list.
	if types, ok := params["_type"]; ok {
		params["_type"] = []string{strings.Join(types, ",")}
	}
	for k, v := range c.Request.URL.Query() {
		params[k] = append(params[k], v...)
	}
	return a.everythingOf(c, params)
}

func (a *api) everythingOf(c *gin.Context, params url.Values) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	if typ != "Patient" {
		return fault.New(fault.NotFound, "", "$everything is defined on Patient only, not on %s", typ)
	}
	if patient, ok := compartmentPatient(c); ok && id != patient {
		return outsideCompartment()
	}
	req, err := search.Everything(a.Registry, id, params, preferLenient(c))
	if err != nil {
		return err
	}
	if err := everythingScopes(c, req); err != nil {
		return err
	}
	// An unknown patient is a 404 and a deleted one a 410, not an empty
	// Bundle: the operation is on an instance.
	if _, err := a.Resources.Read(c.Request.Context(), typ, id); err != nil {
		return err
	}
	return a.searchset(c, params, req, a.base(c)+"/Patient/"+id+"/$everything")
}

// operationParams reads the parameters of a Parameters resource: the
// primitive values by name (strings unquoted, numbers and booleans as
// written) and the resource values by name as their JSON, untouched.
func operationParams(body []byte) (url.Values, map[string]json.RawMessage, error) {
	var p struct {
		Parameter []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, nil, fault.New(fault.Invalid, "", "the Parameters body cannot be read: %v", err)
	}
	values, resources := url.Values{}, map[string]json.RawMessage{}
	for i, pm := range p.Parameter {
		var name string
		_ = json.Unmarshal(pm["name"], &name)
		if name == "" {
			return nil, nil, fault.New(fault.Invalid, "Parameters.parameter["+strconv.Itoa(i)+"].name", "a parameter has no name")
		}
		if r, ok := pm["resource"]; ok {
			resources[name] = r
			continue
		}
		for k, raw := range pm {
			if !strings.HasPrefix(k, "value") {
				continue
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				s = string(bytes.TrimSpace(raw)) // a number or a boolean
			}
			values.Add(name, s)
		}
	}
	return values, resources, nil
}

// validateType answers POST /fhir/:type/$validate.
func (a *api) validateType(c *gin.Context) error {
	typ, err := resourceType(c)
	if err != nil {
		return err
	}
	return a.validate(c, typ, "")
}

// validateInstance answers POST /fhir/:type/:id/$validate.
func (a *api) validateInstance(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	return a.validate(c, typ, id)
}

// validate checks a resource as a create, update or delete of typ (of
// typ/id at instance level) would, and stores nothing. The answer is 200
// with an OperationOutcome listing what is wrong, or an information issue
// when nothing is; only a request that is not a validate request (not
// JSON, no resource, a bad mode) is a 4xx.
func (a *api) validate(c *gin.Context, typ, id string) error {
	body, err := a.body(c)
	if err != nil {
		return err
	}
	empty := len(bytes.TrimSpace(body)) == 0 // mode=delete needs no resource
	if !empty && !json.Valid(body) {
		return fault.New(fault.Invalid, "", "the body is not JSON")
	}
	params := url.Values{}
	for k, v := range c.Request.URL.Query() {
		switch k {
		case "mode", "profile":
			params[k] = v
		case "_format", "_pretty":
		default:
			return fault.New(fault.Invalid, k, "$validate does not support the parameter %q (it takes mode and profile)", k)
		}
	}
	var res json.RawMessage
	if !empty {
		res = body
	}
	// A Parameters body carries the resource and the parameters, unless
	// a Parameters resource is what is validated.
	if typ != "Parameters" && resourceTypeOf(body) == "Parameters" {
		vals, resources, err := operationParams(body)
		if err != nil {
			return err
		}
		for k, v := range vals {
			if k != "mode" && k != "profile" {
				return fault.New(fault.Invalid, "Parameters.parameter", "$validate does not support the parameter %q (it takes resource, mode and profile)", k)
			}
			params[k] = append(params[k], v...)
		}
		res = resources["resource"]
	}
	if len(params["mode"]) > 1 {
		return fault.New(fault.Invalid, "mode", "mode is given %d times", len(params["mode"]))
	}
	mode := params.Get("mode")
	var issues []fault.Issue
	switch mode {
	case "delete":
		if id == "" {
			return fault.New(fault.Invalid, "mode", "mode=delete validates the deletion of an instance: POST /fhir/%s/{id}/$validate", typ)
		}
		issues, err = a.validateDelete(c, typ, id)
		if err != nil {
			return err
		}
	case "", "create", "update":
		if len(res) == 0 {
			return fault.New(fault.Invalid, "", "there is no resource to validate (send it as the body, or as the parameter resource of a Parameters body)")
		}
		issues = a.validateContent(typ, id, mode, res)
	default:
		return fault.New(fault.Invalid, "mode", "mode must be create, update or delete, not %q", mode)
	}
	for _, p := range params["profile"] {
		if p != "http://hl7.org/fhir/StructureDefinition/"+typ {
			issues = append(issues, fault.Issue{Severity: "warning", Code: "not-supported", Expression: []string{"profile"},
				Diagnostics: "profile " + p + " was not checked: only the base R4 definition of " + typ + " is validated"})
		}
	}
	if len(issues) == 0 {
		issues = []fault.Issue{{Severity: "information", Code: "informational", Diagnostics: "no issues: the " + typ + " is valid"}}
	}
	c.Data(http.StatusOK, fhirJSON, pretty(c, fault.OutcomeOf(issues)))
	return nil
}

// validateContent lists what a create (mode create, or none at type
// level) or an update (mode update, or none at instance level) of res
// would refuse.
func (a *api) validateContent(typ, id, mode string, body []byte) []fault.Issue {
	res, err := fhir.ParseResource(body)
	if err != nil {
		return fault.As(err).Issues
	}
	if res.Type() != typ {
		return fault.New(fault.Invalid, "resourceType", "the resource is a %s, but the URL is for %s", res.Type(), typ).Issues
	}
	update := mode == "update" || mode == "" && id != ""
	var issues []fault.Issue
	switch {
	case update && res.ID() == "":
		issues = fault.New(fault.Invalid, typ+".id", "the resource has no id; an update needs the id of the URL in the body").Issues
	case update && id != "" && res.ID() != id:
		issues = fault.New(fault.Invalid, typ+".id", "the resource id %q does not match the URL id %q", res.ID(), id).Issues
	}
	if err := a.Resources.Check(res); err != nil {
		issues = append(issues, fault.As(err).Issues...)
	}
	return issues
}

// validateDelete checks that typ/id exists: deleting a missing or deleted
// resource succeeds and changes nothing, so that is a warning.
func (a *api) validateDelete(c *gin.Context, typ, id string) ([]fault.Issue, error) {
	_, err := a.Resources.Read(c.Request.Context(), typ, id)
	switch {
	case err == nil:
		return nil, nil
	case fault.Is(err, fault.NotFound), fault.Is(err, fault.Gone):
		is := fault.As(err).Issues[0]
		is.Severity = "warning"
		is.Diagnostics += "; deleting it would change nothing"
		return []fault.Issue{is}, nil
	}
	return nil, err
}

// resourceTypeOf is the resourceType member of a JSON object, "" when it
// has none.
func resourceTypeOf(body []byte) string {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(body, &head)
	return head.ResourceType
}

// everythingScopes keeps $everything to the types the principal may read
// (its matches are all in the patient's compartment; the resources they
// refer to are filtered like any included ones).
func everythingScopes(c *gin.Context, req *search.Request) error {
	p, err := principal(c)
	if err != nil || p.Anonymous {
		return err
	}
	denied := func(t string) bool { return p.Grant(auth.Read, t) == auth.None }
	req.Types = slices.DeleteFunc(req.Types, denied)
	req.Referenced = slices.DeleteFunc(req.Referenced, denied)
	if len(req.Types) == 0 {
		return forbidden("patient|user|system/<type>.r on the types of the compartment")
	}
	return nil
}
