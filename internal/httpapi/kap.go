package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/internal/fault"
	"github.com/kapfhir/kapfhir/internal/kap"
)

// The clinic's API, /kap/v1: JSON in clinic terms (the mappings types),
// served by kap.Service. Errors are OperationOutcomes like the FHIR API's.

// kapRoute is a /kap/v1 route of the routes table: interaction "kap" (for
// metrics), not in the CapabilityStatement. scope names the FHIR types the
// route reads and writes (see scopeRule): the KAP API is enforced like
// the FHIR API, and a patient/ grant serves only the /clients/{id} routes
// of the token's own patient.
func kapRoute(method, path, scope string, h func(*api, *gin.Context) error) route {
	return route{method, "/kap/v1" + path, "kap", "", scope, h}
}

var kapRoutes = []route{
	kapRoute("POST", "/clients", "Patient.c", kapCreate((*kap.Service).CreateClient)),
	kapRoute("GET", "/clients", "Patient.s", kapList(func(s *kap.Service, ctx context.Context, _ *gin.Context, _ string, o kap.ListOptions) (any, error) {
		return s.Clients(ctx, o)
	})),
	kapRoute("GET", "/clients/:id", "Patient.r client", kapGet((*kap.Service).Client)),
	kapRoute("GET", "/clients/:id/measurements", "Observation.s client", kapList(func(s *kap.Service, ctx context.Context, c *gin.Context, id string, o kap.ListOptions) (any, error) {
		return s.Measurements(ctx, id, kap.MeasurementFilter{SessionID: c.Query("sessionId"), Kind: c.Query("kind")}, o)
	}, "sessionId", "kind")),
	kapRoute("GET", "/clients/:id/consents", "Consent.s client", kapList(clientList((*kap.Service).Consents))),
	kapRoute("GET", "/clients/:id/intentions", "Goal.s client", kapList(clientList((*kap.Service).Intentions))),
	kapRoute("GET", "/clients/:id/escorts", "RelatedPerson.s client", kapList(clientList((*kap.Service).Escorts))),
	kapRoute("POST", "/team-members", "Practitioner.c PractitionerRole.c", kapCreate((*kap.Service).CreateTeamMember)),
	kapRoute("GET", "/team-members", "Practitioner.s PractitionerRole.s", kapList(func(s *kap.Service, ctx context.Context, _ *gin.Context, _ string, o kap.ListOptions) (any, error) {
		return s.TeamMembers(ctx, o)
	})),
	kapRoute("GET", "/team-members/:id", "Practitioner.r PractitionerRole.s", kapGet((*kap.Service).TeamMember)),
	kapRoute("POST", "/programs", "EpisodeOfCare.c Condition.r CareTeam.r ServiceRequest.c", kapCreate((*kap.Service).CreateProgram)),
	kapRoute("GET", "/programs", "EpisodeOfCare.s Condition.r CareTeam.r ServiceRequest.r", kapList(func(s *kap.Service, ctx context.Context, c *gin.Context, _ string, o kap.ListOptions) (any, error) {
		return s.Programs(ctx, kap.ProgramFilter{ClientID: c.Query("clientId"), Status: c.Query("status")}, o)
	}, "clientId", "status")),
	kapRoute("GET", "/programs/:id", "EpisodeOfCare.r Condition.r CareTeam.r ServiceRequest.r", kapGet((*kap.Service).Program)),
	kapRoute("POST", "/programs/:id/status", "EpisodeOfCare.ru", kapAction((*kap.Service).SetProgramStatus)),
	kapRoute("GET", "/programs/:id/summary", "EpisodeOfCare.r Encounter.r Observation.r MedicationAdministration.r", kapGet((*kap.Service).Summary)),
	kapRoute("GET", "/programs/:id/sessions", "Encounter.s CarePlan.r Observation.r", kapList(func(s *kap.Service, ctx context.Context, c *gin.Context, id string, o kap.ListOptions) (any, error) {
		return s.Sessions(ctx, id, kap.SessionFilter{Kind: c.Query("kind"), Status: c.Query("status")}, o)
	}, "kind", "status")),
	kapRoute("GET", "/programs/:id/prescriptions", "MedicationRequest.s", kapList(func(s *kap.Service, ctx context.Context, _ *gin.Context, id string, o kap.ListOptions) (any, error) {
		return s.Prescriptions(ctx, id, o)
	})),
	kapRoute("POST", "/sessions", "Encounter.c EpisodeOfCare.r", kapCreate((*kap.Service).CreateSession)),
	kapRoute("GET", "/sessions/:id", "Encounter.r CarePlan.r Observation.r", kapGet((*kap.Service).Session)),
	kapRoute("POST", "/sessions/:id/status", "Encounter.ru", kapAction((*kap.Service).SetSessionStatus)),
	kapRoute("POST", "/sessions/:id/escort-confirmation", "Encounter.ru RelatedPerson.r", kapAction((*kap.Service).ConfirmEscort)),
	kapRoute("POST", "/sessions/:id/discharge", "Encounter.ru CarePlan.c Observation.c", kapAction((*kap.Service).Discharge)),
	kapRoute("GET", "/sessions/:id/rems", "Encounter.r Observation.r MedicationAdministration.r Patient.r", kapGet((*kap.Service).REMSForm)),
	kapRoute("GET", "/sessions/:id/administrations", "MedicationAdministration.s", kapList(func(s *kap.Service, ctx context.Context, _ *gin.Context, id string, o kap.ListOptions) (any, error) {
		return s.Administrations(ctx, id, o)
	})),
	kapRoute("POST", "/prescriptions", "MedicationRequest.c EpisodeOfCare.r", kapCreate((*kap.Service).CreatePrescription)),
	kapRoute("GET", "/prescriptions/:id", "MedicationRequest.r", kapGet((*kap.Service).Prescription)),
	kapRoute("POST", "/administrations", "MedicationAdministration.c MedicationRequest.r Encounter.r", kapCreate((*kap.Service).CreateAdministration)),
	kapRoute("GET", "/administrations/:id", "MedicationAdministration.r", kapGet((*kap.Service).Administration)),
	kapRoute("POST", "/measurements", "Observation.c", kapCreate((*kap.Service).CreateMeasurement)),
	kapRoute("GET", "/measurements/:id", "Observation.r", kapGet((*kap.Service).Measurement)),
	kapRoute("POST", "/consents", "Consent.c", kapCreate((*kap.Service).CreateConsent)),
	kapRoute("GET", "/consents/:id", "Consent.r", kapGet((*kap.Service).Consent)),
	kapRoute("POST", "/intentions", "Goal.c", kapCreate((*kap.Service).CreateIntention)),
	kapRoute("GET", "/intentions/:id", "Goal.r", kapGet((*kap.Service).Intention)),
	kapRoute("POST", "/escorts", "RelatedPerson.c", kapCreate((*kap.Service).CreateEscort)),
	kapRoute("GET", "/escorts/:id", "RelatedPerson.r", kapGet((*kap.Service).Escort)),
}

// kapCreate answers a POST that creates: 201 with the stored record.
func kapCreate[In, Out any](create func(*kap.Service, context.Context, In) (Out, error)) func(*api, *gin.Context) error {
	return func(a *api, c *gin.Context) error {
		var in In
		if err := a.kapBody(c, &in); err != nil {
			return err
		}
		out, err := create(a.Kap, c.Request.Context(), in)
		if err != nil {
			return err
		}
		c.JSON(http.StatusCreated, out)
		return nil
	}
}

// kapAction answers a POST on a record (:id): 200 with the record after.
func kapAction[In, Out any](act func(*kap.Service, context.Context, string, In) (Out, error)) func(*api, *gin.Context) error {
	return func(a *api, c *gin.Context) error {
		var in In
		if err := a.kapBody(c, &in); err != nil {
			return err
		}
		out, err := act(a.Kap, c.Request.Context(), c.Param("id"), in)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, out)
		return nil
	}
}

// kapGet answers a GET of one record (:id).
func kapGet[Out any](read func(*kap.Service, context.Context, string) (Out, error)) func(*api, *gin.Context) error {
	return func(a *api, c *gin.Context) error {
		if err := onlyParams(c); err != nil {
			return err
		}
		out, err := read(a.Kap, c.Request.Context(), c.Param("id"))
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, out)
		return nil
	}
}

type lister func(s *kap.Service, ctx context.Context, c *gin.Context, id string, o kap.ListOptions) (any, error)

// kapList answers a GET of a list: limit and cursor page it, filters are
// the other parameters it takes.
func kapList(l lister, filters ...string) func(*api, *gin.Context) error {
	return func(a *api, c *gin.Context) error {
		if err := onlyParams(c, append(filters, "limit", "cursor")...); err != nil {
			return err
		}
		o := kap.ListOptions{Cursor: c.Query("cursor")}
		if v, ok := c.GetQuery("limit"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fault.New(fault.Invalid, "limit", "limit must be a whole number from 1, not %q", v).WithCode("value")
			}
			o.Limit = n
		}
		page, err := l(a.Kap, c.Request.Context(), c, c.Param("id"), o)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, page)
		return nil
	}
}

// clientList lists a client's records of one kind.
func clientList[T any](l func(*kap.Service, context.Context, string, kap.ListOptions) (kap.Page[T], error)) lister {
	return func(s *kap.Service, ctx context.Context, _ *gin.Context, id string, o kap.ListOptions) (any, error) {
		return l(s, ctx, id, o)
	}
}

// onlyParams refuses query parameters a route does not take: a misspelt
// filter must not silently list everything.
func onlyParams(c *gin.Context, allowed ...string) error {
	for name := range c.Request.URL.Query() {
		if name != "_format" && name != "_pretty" && !slices.Contains(allowed, name) {
			return fault.New(fault.Invalid, name, "%s is not a parameter of this request", name).WithCode("not-supported")
		}
	}
	return nil
}

// kapBody decodes the JSON body into v. Unknown fields and values of the
// wrong type are 400s naming the field.
func (a *api) kapBody(c *gin.Context, v any) error {
	body, err := a.body(c)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFault(err)
	}
	if dec.More() {
		return fault.New(fault.Invalid, "", "the body must be one JSON object")
	}
	return nil
}

func jsonFault(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fault.New(fault.Invalid, te.Field, "%s must be a %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value).WithCode("value")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return fault.New(fault.Invalid, name, "%s is not a field of this request", name).WithCode("structure")
	}
	return fault.New(fault.Invalid, "", "the body is not a JSON object of this request: %v", err)
}

// jsonKind names a Go kind as a JSON type.
func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "slice":
		return "array"
	case k == "struct", k == "map", k == "ptr":
		return "object"
	case k == "bool":
		return "boolean"
	}
	return k
}

// kapSummaryOperation answers GET /fhir/EpisodeOfCare/:id/$kap-summary:
// the program summary as a Parameters resource.
func (a *api) kapSummaryOperation(c *gin.Context) error {
	typ, id, err := target(c)
	if err != nil {
		return err
	}
	if typ != "EpisodeOfCare" {
		return fault.New(fault.NotFound, "", "$kap-summary is defined on EpisodeOfCare only, not on %s", typ)
	}
	s, err := a.Kap.Summary(c.Request.Context(), id)
	if err != nil {
		return err
	}
	b, err := json.Marshal(summaryParameters(s))
	if err != nil {
		return fault.Wrap(err, "rendering the summary")
	}
	c.Data(http.StatusOK, fhirJSON, pretty(c, b))
	return nil
}

func intParam(name string, v int) param {
	n := int64(v)
	return param{Name: name, ValueInteger: &n}
}
func boolParam(name string, v bool) param { return param{Name: name, ValueBoolean: &v} }
func timeParam(name string, t time.Time) param {
	return param{Name: name, ValueDateTime: t.Format(time.RFC3339)}
}

// summaryParameters renders the summary as the parameters of the
// operation: the JSON summary's fields by name, maps as parts keyed by
// their keys (sorted).
func summaryParameters(s kap.Summary) any {
	var ps []param
	sessions := param{Name: "sessions"}
	for _, kind := range sortedKeys(s.Sessions) {
		k := param{Name: string(kind)}
		for _, status := range sortedKeys(s.Sessions[kind]) {
			k.Part = append(k.Part, intParam(status, s.Sessions[kind][status]))
		}
		sessions.Part = append(sessions.Part, k)
	}
	if len(sessions.Part) > 0 {
		ps = append(ps, sessions)
	}
	doses := param{Name: "dosesByRoute"}
	for _, r := range sortedKeys(s.DosesByRoute) {
		doses.Part = append(doses.Part, intParam(string(r), s.DosesByRoute[r]))
	}
	if len(doses.Part) > 0 {
		ps = append(ps, doses)
	}
	if p := s.PHQ9; p != nil {
		phq := param{Name: "phq9", Part: []param{
			intParam("count", p.Count),
			intParam("baseline", p.Baseline.Total), timeParam("baselineTime", p.Baseline.Time),
			intParam("latest", p.Latest.Total), timeParam("latestTime", p.Latest.Time),
			intParam("change", p.Change),
		}}
		if p.PercentChange != nil {
			phq.Part = append(phq.Part, param{Name: "percentChange", ValueDecimal: p.PercentChange})
		}
		phq.Part = append(phq.Part, boolParam("response", p.Response), boolParam("remission", p.Remission))
		ps = append(ps, phq)
	}
	ps = append(ps, param{Name: "dosing", Part: []param{
		intParam("completed", s.Dosing.Completed), intParam("recommended", s.Dosing.Recommended), boolParam("reached", s.Dosing.Reached),
	}})
	for _, it := range s.OpenSafetyItems {
		p := param{Name: "openSafetyItem", Part: []param{
			{Name: "kind", ValueCode: it.Kind},
			{Name: "session", ValueReference: map[string]any{"reference": "Encounter/" + it.Session}},
		}}
		if it.Until != nil {
			p.Part = append(p.Part, timeParam("until", *it.Until))
		}
		ps = append(ps, p)
	}
	return struct {
		ResourceType string  `json:"resourceType"`
		Parameter    []param `json:"parameter"`
	}{"Parameters", ps}
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// kapSummaryDefinition is the canonical of the $kap-summary operation.
const kapSummaryDefinition = kap.SummaryOperation
