// Package mappings is the contract between the clinic's JSON (the KAP API)
// and FHIR R4: KAP→FHIR and FHIR→KAP as pure functions over data tables
// (tables/*.json). No I/O and no clock: times and FHIR ids are inputs.
//
// Every XxxToFHIR validates its input (a fault.Invalid error naming the JSON
// field) and returns the FHIR resources, with references Type/id between
// them. Every XxxFromFHIR reads a group of resources (the output of
// XxxToFHIR, or resources written through the FHIR API) back into the clinic
// view; it reports false when the group does not fit the KAP model and
// ignores content it does not know.
package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/internal/fault"
)

// Resource is one emitted FHIR resource.
type Resource struct {
	Type string
	ID   string
	JSON json.RawMessage
}

// Ref is the resource's relative reference, Type/id.
func (r Resource) Ref() string { return r.Type + "/" + r.ID }

// Config holds the clinic's parameters that change the mapping.
type Config struct {
	// NoDrivingHours is the length of the no-driving/machinery/work
	// instruction after a dosing session (default 8).
	NoDrivingHours int
}

// Mapper maps between the KAP model and FHIR with the embedded tables.
type Mapper struct {
	t              *tables
	noDrivingHours int
}

// New loads the tables and checks that every local code they use is in the
// kap CodeSystem.
func New(cfg Config) (*Mapper, error) {
	t, err := loadTables()
	if err != nil {
		return nil, err
	}
	for _, code := range t.kapCodesUsed() {
		if find(t.concepts, func(c *concept) bool { return c.Code == code }) == nil {
			return nil, fmt.Errorf("mappings: kap code %q used by a table is not in the CodeSystem table", code)
		}
	}
	if cfg.NoDrivingHours == 0 {
		cfg.NoDrivingHours = 8
	}
	if cfg.NoDrivingHours < 0 {
		return nil, fmt.Errorf("mappings: NoDrivingHours must be positive")
	}
	return &Mapper{t: t, noDrivingHours: cfg.NoDrivingHours}, nil
}

// ClientIndexCode is the kap code of a KAP client's index List (List.code),
// the KAP service's bookkeeping: the EHR sync never sends it.
const ClientIndexCode = "client-records"

// KapSystem is the URL of the local CodeSystem.
func (m *Mapper) KapSystem() string { return m.t.kapURL }

// KapCoding is the coding of a concept of the kap CodeSystem table, with its
// display; false when the table has no such concept.
func (m *Mapper) KapCoding(code string) (Coding, bool) {
	c := find(m.t.concepts, func(c *concept) bool { return c.Code == code })
	if c == nil {
		return Coding{}, false
	}
	return Coding{System: m.t.kapURL, Code: c.Code, Display: c.Display}, true
}

// RouteKeys lists the route keys of the routes table (iv, im, ...), in
// table order.
func (m *Mapper) RouteKeys() []string {
	return keys(m.t.routes, func(r *route) string { return r.Route })
}

// RouteName is the plain name of a route key ("iv" → "intravenous"), the
// term of the KAP rules; false for a key not in the table.
func (m *Mapper) RouteName(key string) (string, bool) {
	if r := m.t.route(key); r != nil {
		return r.Name, true
	}
	return "", false
}

// ProductFamily is the family (ketamine | esketamine) of a product key;
// false for a key not in the table.
func (m *Mapper) ProductFamily(key string) (string, bool) {
	if p := m.t.product(key); p != nil {
		return p.Family, true
	}
	return "", false
}

// Labels is the sensitivity of a program: it decides the meta.security of
// every clinical resource of the program.
type Labels struct {
	// SubstanceUse is set when an indication is a substance-use disorder
	// (ICD-10-CM F10-F19): SUD and 42 CFR Part 2 labels.
	SubstanceUse bool `json:"substanceUse,omitempty"`
}

// SecurityLabels is the meta.security of a KAP clinical resource: R and PSY
// always, SUD and 42CFRPart2 for substance use (§10.2).
func (m *Mapper) SecurityLabels(l Labels) []Coding {
	out := append([]Coding(nil), m.t.secAlways...)
	if l.SubstanceUse {
		out = append(out, m.t.secSUD...)
	}
	return out
}

func (m *Mapper) meta(profile string, l Labels) *meta {
	mt := &meta{Security: m.SecurityLabels(l)}
	if profile != "" {
		mt.Profile = []string{usCore(profile)}
	}
	return mt
}

// usCore is the versioned canonical of a US Core 6.1.0 profile.
func usCore(name string) string {
	return "http://hl7.org/fhir/us/core/StructureDefinition/" + name + "|6.1.0"
}

func ref(typ, id string) *reference {
	if id == "" {
		return nil
	}
	return &reference{Reference: typ + "/" + id}
}

func refs(typ string, ids []string) []reference {
	var out []reference
	for _, id := range ids {
		out = append(out, *ref(typ, id))
	}
	return out
}

func cc(codings ...Coding) *codeableConcept { return &codeableConcept{Coding: codings} }

func ptr[T any](v T) *T { return &v }

// encode renders one resource. HTML escaping is off: narrative divs stay
// readable.
func encode(typ, id string, v any) (Resource, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return Resource{}, fault.Wrap(err, "mappings: encode "+typ)
	}
	return Resource{Type: typ, ID: id, JSON: bytes.TrimSuffix(b.Bytes(), []byte("\n"))}, nil
}

// emitter collects resources and the first encoding error.
type emitter struct {
	out []Resource
	err error
}

func (e *emitter) add(typ, id string, v any) {
	if e.err != nil {
		return
	}
	r, err := encode(typ, id, v)
	e.out, e.err = append(e.out, r), err
}

func (e *emitter) result() ([]Resource, error) {
	if e.err != nil {
		return nil, e.err
	}
	return e.out, nil
}

// Input checks. Each error names the JSON field of the KAP input.

func invalid(expr, format string, args ...any) error {
	return fault.New(fault.Invalid, expr, format, args...).WithCode("value")
}

func missing(expr string) error {
	return fault.New(fault.Invalid, expr, "%s is required", expr).WithCode("required")
}

var (
	idRE       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	dateRE     = regexp.MustCompile(`^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$`)
	decimalRE  = regexp.MustCompile(`^(0|[1-9]\d*)(\.\d+)?$`)
)

// check runs the checks in order and returns the first failure.
func check(checks ...error) error {
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkID checks a FHIR id; derived ids (id + suffix) must fit too, so the
// caller's ids are limited to 48 characters.
func checkID(expr, id string, required bool) error {
	switch {
	case id == "" && required:
		return missing(expr)
	case id == "":
		return nil
	case !idRE.MatchString(id) || len(id) > 48:
		return invalid(expr, "%s must be a FHIR id of at most 48 characters (letters, digits, '-', '.')", expr)
	}
	return nil
}

func checkIDs(expr string, ids []string) error {
	for i, id := range ids {
		if err := checkID(fmt.Sprintf("%s[%d]", expr, i), id, true); err != nil {
			return err
		}
	}
	return nil
}

// checkDateTime accepts a FHIR dateTime with seconds and a time zone (an
// instant-like value: KAP times are points in time).
func checkDateTime(expr, v string, required bool) error {
	switch {
	case v == "" && required:
		return missing(expr)
	case v == "":
		return nil
	case !dateTimeRE.MatchString(v):
		return invalid(expr, "%s must be a date and time with seconds and zone, e.g. 2026-03-02T09:30:00-05:00", expr)
	}
	return nil
}

func checkDate(expr, v string, required bool) error {
	switch {
	case v == "" && required:
		return missing(expr)
	case v == "":
		return nil
	case !dateRE.MatchString(v):
		return invalid(expr, "%s must be a date (YYYY, YYYY-MM or YYYY-MM-DD)", expr)
	}
	return nil
}

// checkDecimal accepts a non-negative decimal lexeme (kept exactly as given).
func checkDecimal(expr string, v json.Number, required bool) error {
	switch {
	case v == "" && required:
		return missing(expr)
	case v == "":
		return nil
	case !decimalRE.MatchString(string(v)):
		return invalid(expr, "%s must be a non-negative decimal number", expr)
	}
	return nil
}

func checkEnum(expr, v string, allowed []string, required bool) error {
	switch {
	case v == "" && required:
		return missing(expr)
	case v == "":
		return nil
	case !contains(allowed, v):
		return invalid(expr, "%s %q is not one of: %s", expr, v, strings.Join(allowed, ", "))
	}
	return nil
}

// addHours adds whole hours to a FHIR dateTime, keeping its zone offset.
func addHours(dt string, h int) (string, error) {
	t, err := time.Parse(time.RFC3339Nano, dt)
	if err != nil {
		return "", err
	}
	return t.Add(time.Duration(h) * time.Hour).Format(time.RFC3339), nil
}

// hoursBetween is the whole number of hours from a to b, 0 when either does
// not parse.
func hoursBetween(a, b string) int {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil {
		return 0
	}
	return int(tb.Sub(ta) / time.Hour)
}

// Reading FHIR.

// group indexes a set of resources by Type/id.
type group struct {
	list []Resource
	byID map[string]Resource
}

func newGroup(rs []Resource) group {
	g := group{list: rs, byID: map[string]Resource{}}
	for _, r := range rs {
		g.byID[r.Ref()] = r
	}
	return g
}

// first decodes the first resource of typ.
func first[T any](g group, typ string) (*T, bool) {
	for _, r := range g.list {
		if r.Type == typ {
			return decode[T](r)
		}
	}
	return nil, false
}

// all decodes every resource of typ (undecodable ones are skipped).
func all[T any](g group, typ string) []*T {
	var out []*T
	for _, r := range g.list {
		if r.Type == typ {
			if v, ok := decode[T](r); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// resolve decodes the resource a reference points to, when it is in the
// group.
func resolve[T any](g group, typ string, rf *reference) (*T, bool) {
	id := refID(rf, typ)
	if id == "" {
		return nil, false
	}
	r, ok := g.byID[typ+"/"+id]
	if !ok {
		return nil, false
	}
	return decode[T](r)
}

func decode[T any](r Resource) (*T, bool) {
	v := new(T)
	if err := json.Unmarshal(r.JSON, v); err != nil {
		return nil, false // content of another shape: it does not fit
	}
	return v, true
}

// refID is the id of a reference to typ (relative, or absolute ending in
// Type/id), "" otherwise.
func refID(r *reference, typ string) string {
	if r == nil {
		return ""
	}
	s := r.Reference
	if i := strings.LastIndex(s, typ+"/"); i >= 0 && (i == 0 || s[i-1] == '/') {
		id := s[i+len(typ)+1:]
		if j := strings.Index(id, "/_history/"); j >= 0 {
			id = id[:j]
		}
		if idRE.MatchString(id) {
			return id
		}
	}
	return ""
}

func refIDs(rs []reference, typ string) []string {
	var out []string
	for i := range rs {
		if id := refID(&rs[i], typ); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// code is the first code of system in c, "" when none.
func (c *codeableConcept) code(system string) string {
	if c == nil {
		return ""
	}
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}

func (c *codeableConcept) has(system, code string) bool {
	if c == nil {
		return false
	}
	for _, cd := range c.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

func anyHas(cs []codeableConcept, system, code string) bool {
	for i := range cs {
		if cs[i].has(system, code) {
			return true
		}
	}
	return false
}

func anyCode(cs []codeableConcept, system string) string {
	for i := range cs {
		if c := cs[i].code(system); c != "" {
			return c
		}
	}
	return ""
}

// checkWhen accepts a date or a date and time (Period.start, onset).
func checkWhen(expr, v string, required bool) error {
	if dateRE.MatchString(v) {
		return nil
	}
	return checkDateTime(expr, v, required)
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
