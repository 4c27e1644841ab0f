// Package ehr describes the hospital EHRs kapfhir synchronises with: the
// endpoint configuration (KAPFHIR_EHR_CONFIG, docs/ehr-sync.md), the
// capability profile discovered from each EHR's CapabilityStatement, and
// the outbound HTTP client that authenticates requests (none, a static
// bearer token, or SMART Backend Services through package ehr/smart).
package ehr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kapfhir/kapfhir/fhir"
	"github.com/kapfhir/kapfhir/internal/ehr/smart"
	"go.yaml.in/yaml/v4"
)

// Config is the set of EHR endpoints.
type Config struct {
	Endpoints []Endpoint
}

// Endpoint is one EHR.
type Endpoint struct {
	// Name identifies the endpoint in APIs, logs and metrics (the only
	// metric label), so NamePattern keeps it short and plain.
	Name string
	// BaseURL is the FHIR base, without a trailing slash.
	BaseURL string
	Auth    Auth
	// Overrides correct the discovered capability profile per resource
	// type (Profile.Merge).
	Overrides map[string]Override
	Send      SendPolicy
	// Pull is what inbound pull reads from the endpoint; no types: nothing.
	Pull PullPolicy
	// Source is where the endpoint is defined: the file or the admin API.
	Source Source
}

// Source is where an endpoint is defined.
type Source string

// The sources. File endpoints cannot be changed through the admin API.
const (
	SourceFile Source = "file"
	SourceAPI  Source = "api"
)

// PullPolicy is what is pulled from an endpoint (package ehr/inbound).
type PullPolicy struct {
	// Types are pulled in this order each round (Patient first, so the
	// resources that refer to a patient find it pulled).
	Types []string
	// Every is the time between rounds.
	Every time.Duration
}

// DefaultPullEvery is the time between pull rounds when pull.every is not
// given; MinPullEvery the shortest accepted (an EHR's rate limits).
const (
	DefaultPullEvery = 5 * time.Minute
	MinPullEvery     = 10 * time.Second
)

// AuthType is how requests to an endpoint authenticate.
type AuthType string

// The auth types.
const (
	AuthNone         AuthType = "none"
	AuthBearer       AuthType = "bearer"
	AuthSMARTBackend AuthType = "smart-backend"
)

// Auth is an endpoint's authentication, with its secrets resolved.
type Auth struct {
	Type AuthType
	// Token is the static token of AuthBearer.
	Token Secret
	// TokenRef and PrivateKeyRef are the references (env:NAME,
	// file:/path) the secrets were read from: the admin API shows them,
	// never the values.
	TokenRef, PrivateKeyRef string
	// The SMART Backend Services client of AuthSMARTBackend; Key carries
	// the key id and algorithm.
	TokenURL string
	ClientID string
	Key      smart.Key
	Scopes   []string
}

// Override sets capability flags of one resource type; nil keeps what
// discovery found.
type Override struct {
	Create            *bool `json:"create"`
	Update            *bool `json:"update"`
	Delete            *bool `json:"delete"`
	SearchType        *bool `json:"searchType"`
	ConditionalCreate *bool `json:"conditionalCreate"`
	ConditionalUpdate *bool `json:"conditionalUpdate"`
}

// Part2Policy is what happens to data labelled 42CFRPart2.
type Part2Policy string

// The Part 2 policies. There is deliberately no "always": Part 2 data
// leaves only under a patient's consent (mapping spec §10).
const (
	// Part2Consent sends Part 2 data only when an active Consent permits
	// disclosure to this endpoint's Recipient. The default.
	Part2Consent Part2Policy = "consent"
	// Part2Never never sends Part 2 data to this endpoint.
	Part2Never Part2Policy = "never"
)

// SendPolicy is what goes to an endpoint.
type SendPolicy struct {
	// Types are the resource types sent; none means nothing is sent (an
	// endpoint that is only read from).
	Types []string
	// KAPOnly limits sending to resources of the KAP program (those the
	// KAP mappings write), leaving out other data of the same types.
	KAPOnly bool
	Part2   Part2Policy
	// Recipient is the Organization a Consent's provision.actor must name
	// to permit Part 2 disclosure to this endpoint, as a reference
	// "Organization/<id>"; empty: no Consent can match.
	Recipient string
}

// NamePattern is the form of an endpoint name.
var NamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// file is the configuration file's form; secrets are references.
type file struct {
	Endpoints []fileEndpoint `json:"endpoints"`
}

// The omitempty tags keep the stored form of an API definition (its
// canonical JSON, EndpointDefinition) as short as a hand-written entry.
type fileEndpoint struct {
	Name         string              `json:"name"`
	BaseURL      string              `json:"baseUrl"`
	Auth         fileAuth            `json:"auth"`
	Capabilities map[string]Override `json:"capabilities,omitempty"`
	Send         fileSend            `json:"send,omitzero"`
	Pull         filePull            `json:"pull,omitzero"`
}

type filePull struct {
	Types []string `json:"types,omitempty"`
	Every string   `json:"every,omitempty"`
}

type fileAuth struct {
	Type       string   `json:"type"`
	Token      string   `json:"token,omitempty"`
	TokenURL   string   `json:"tokenUrl,omitempty"`
	ClientID   string   `json:"clientId,omitempty"`
	KeyID      string   `json:"keyId,omitempty"`
	Algorithm  string   `json:"algorithm,omitempty"`
	PrivateKey string   `json:"privateKey,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
}

type fileSend struct {
	Types     []string `json:"types,omitempty"`
	KAPOnly   bool     `json:"kapOnly,omitempty"`
	Part2     string   `json:"part2,omitempty"`
	Recipient string   `json:"recipient,omitempty"`
}

// DefaultSources resolves secret references from the process environment
// and the file system.
func DefaultSources() Sources {
	return Sources{LookupEnv: os.LookupEnv, ReadFile: os.ReadFile}
}

// Load reads the configuration file at path: YAML (.yaml, .yml) or JSON
// (.json). Secret references are resolved through src.
func Load(path string, src Sources) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("EHR configuration: %w", err)
	}
	var format Format
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = JSON
	case ".yaml", ".yml":
		format = YAML
	default:
		return Config{}, fmt.Errorf("EHR configuration %s: the name must end in .yaml, .yml or .json", path)
	}
	c, err := Parse(data, format, src)
	if err != nil {
		return Config{}, fmt.Errorf("EHR configuration %s: %w", path, err)
	}
	return c, nil
}

// Format is a configuration file's syntax.
type Format int

// The formats.
const (
	JSON Format = iota
	YAML
)

// Parse reads a configuration. Unknown fields are errors (a misspelt
// field would otherwise be ignored), and so is every invalid value; the
// error lists them all, each with its field path such as
// endpoints[1].auth.keyId.
func Parse(data []byte, format Format, src Sources) (Config, error) {
	if format == YAML {
		// YAML is read into plain values and handed to the JSON decoder,
		// so both syntaxes share one set of field names and checks.
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return Config{}, err
		}
		var err error
		if data, err = json.Marshal(v); err != nil {
			return Config{}, fmt.Errorf("YAML that has no JSON form: %w", err)
		}
	}
	var f file
	if err := decodeStrict(data, &f); err != nil {
		return Config{}, err
	}
	var errs fieldErrors
	c := Config{Endpoints: make([]Endpoint, 0, len(f.Endpoints))}
	seen := map[string]bool{}
	for i, fe := range f.Endpoints {
		p := fmt.Sprintf("endpoints[%d]", i)
		e := fe.resolve(p, src, &errs)
		e.Source = SourceFile
		if e.Name != "" && seen[e.Name] {
			errs.add(p+".name", "%q is used by an earlier endpoint", e.Name)
		}
		seen[e.Name] = true
		c.Endpoints = append(c.Endpoints, e)
	}
	if len(errs) > 0 {
		return Config{}, errs
	}
	return c, nil
}

// decodeStrict decodes one JSON value; unknown fields are errors (a
// misspelt field would otherwise be ignored).
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// ParseEndpoint reads one endpoint defined through the admin API: a JSON
// object of the form of a configuration file's entry, checked and resolved
// as Parse does (secrets only as references). Its name is name; a "name"
// in data must agree. The result is the endpoint and its definition in
// canonical JSON (references, never a value) to store. The FieldErrors'
// paths are relative to the entry, such as auth.token.
func ParseEndpoint(name string, data []byte, src Sources) (Endpoint, []byte, error) {
	var fe fileEndpoint
	if err := decodeStrict(data, &fe); err != nil {
		return Endpoint{}, nil, err
	}
	var errs fieldErrors
	if fe.Name != "" && fe.Name != name {
		errs.add(".name", "must be the name in the path, %q, or absent", name)
	}
	fe.Name = name
	e := fe.resolve("", src, &errs)
	e.Source = SourceAPI
	if len(errs) > 0 {
		for i := range errs {
			errs[i].Path = strings.TrimPrefix(errs[i].Path, ".")
		}
		return Endpoint{}, nil, errs
	}
	def, err := json.Marshal(fe)
	if err != nil {
		return Endpoint{}, nil, err
	}
	return e, def, nil
}

func (fe fileEndpoint) resolve(p string, src Sources, errs *fieldErrors) Endpoint {
	e := Endpoint{Name: fe.Name, Overrides: fe.Capabilities}
	if !NamePattern.MatchString(fe.Name) {
		errs.add(p+".name", "must match %s", NamePattern)
	}
	e.BaseURL = checkURL(p+".baseUrl", fe.BaseURL, errs)
	e.Auth = fe.Auth.resolve(p+".auth", src, errs)
	for t := range fe.Capabilities {
		if !fhir.IsResourceType(t) {
			errs.add(p+".capabilities", "%q is not a FHIR R4 resource type", t)
		}
	}
	e.Send = fe.Send.resolve(p+".send", errs)
	e.Pull = fe.Pull.resolve(p+".pull", errs)
	return e
}

func (fa fileAuth) resolve(p string, src Sources, errs *fieldErrors) Auth {
	a := Auth{Type: AuthType(fa.Type)}
	// Fields of another auth type are errors: a token next to a SMART
	// client usually means the type is wrong.
	unused := func(field, value string) {
		if value != "" {
			errs.add(p+"."+field, "is not used with auth type %q", a.Type)
		}
	}
	switch a.Type {
	case AuthNone:
		unused("token", fa.Token)
	case AuthBearer:
		if a.Token = secret(p+".token", fa.Token, src, errs); !a.Token.IsZero() {
			a.TokenRef = fa.Token
		}
	case AuthSMARTBackend:
		unused("token", fa.Token)
		a.TokenURL = checkURL(p+".tokenUrl", fa.TokenURL, errs)
		a.ClientID = fa.ClientID
		if a.ClientID == "" {
			errs.add(p+".clientId", "is required")
		}
		alg := smart.Algorithm(fa.Algorithm)
		if alg != smart.RS384 && alg != smart.ES384 {
			errs.add(p+".algorithm", "must be RS384 or ES384")
		}
		if fa.KeyID == "" {
			errs.add(p+".keyId", "is required")
		}
		pem := secret(p+".privateKey", fa.PrivateKey, src, errs)
		if !pem.IsZero() {
			a.PrivateKeyRef = fa.PrivateKey
		}
		if !pem.IsZero() && fa.KeyID != "" && (alg == smart.RS384 || alg == smart.ES384) {
			k, err := smart.ParseKey([]byte(pem.Reveal()), alg, fa.KeyID)
			if err != nil {
				errs.add(p+".privateKey", "%v", err)
			}
			a.Key = k
		}
		a.Scopes = fa.Scopes
		for i, s := range fa.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n") {
				errs.add(fmt.Sprintf("%s.scopes[%d]", p, i), "must be one scope without spaces")
			}
		}
		return a
	case "":
		errs.add(p+".type", "is required (none, bearer or smart-backend)")
	default:
		errs.add(p+".type", "must be none, bearer or smart-backend")
	}
	unused("tokenUrl", fa.TokenURL)
	unused("clientId", fa.ClientID)
	unused("keyId", fa.KeyID)
	unused("algorithm", fa.Algorithm)
	unused("privateKey", fa.PrivateKey)
	if len(fa.Scopes) > 0 {
		errs.add(p+".scopes", "is not used with auth type %q", a.Type)
	}
	return a
}

func (fs fileSend) resolve(p string, errs *fieldErrors) SendPolicy {
	s := SendPolicy{Types: fs.Types, KAPOnly: fs.KAPOnly, Part2: Part2Policy(fs.Part2), Recipient: fs.Recipient}
	checkTypes(p+".types", fs.Types, errs)
	switch s.Part2 {
	case "":
		s.Part2 = Part2Consent
	case Part2Consent, Part2Never:
	default:
		errs.add(p+".part2", "must be consent or never")
	}
	if id, ok := strings.CutPrefix(s.Recipient, "Organization/"); s.Recipient != "" && (!ok || !fhir.ValidID(id)) {
		errs.add(p+".recipient", "must be a reference Organization/<id>")
	}
	return s
}

func (fp filePull) resolve(p string, errs *fieldErrors) PullPolicy {
	pp := PullPolicy{Types: fp.Types}
	checkTypes(p+".types", fp.Types, errs)
	if len(fp.Types) > 0 {
		pp.Every = DefaultPullEvery
	}
	if fp.Every != "" {
		d, err := time.ParseDuration(fp.Every)
		switch {
		case err != nil:
			errs.add(p+".every", "must be a duration such as 5m or 90s")
		case d < MinPullEvery:
			errs.add(p+".every", "must be at least %v", MinPullEvery)
		default:
			pp.Every = d
		}
	}
	return pp
}

// checkTypes reports a listed type that is not a resource type or is
// listed twice.
func checkTypes(p string, types []string, errs *fieldErrors) {
	for i, t := range types {
		if !fhir.IsResourceType(t) {
			errs.add(fmt.Sprintf("%s[%d]", p, i), "%q is not a FHIR R4 resource type", t)
		} else if slices.Index(types, t) < i {
			errs.add(fmt.Sprintf("%s[%d]", p, i), "%q is listed twice", t)
		}
	}
}

// secret resolves a reference; errors never repeat the value.
func secret(p, ref string, src Sources, errs *fieldErrors) Secret {
	if ref == "" {
		errs.add(p, "is required")
		return Secret{}
	}
	s, err := src.resolve(ref)
	if err != nil {
		errs.add(p, "%v", err)
	}
	return s
}

// checkURL accepts an absolute http(s) URL without query, fragment or
// user info; plain http only to a loopback host (tests, a local proxy),
// since these requests carry PHI and credentials.
func checkURL(p, raw string, errs *fieldErrors) string {
	if raw == "" {
		errs.add(p, "is required")
		return ""
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		errs.add(p, "must be an absolute URL")
	case u.Scheme != "https" && u.Scheme != "http":
		errs.add(p, "must be an https URL")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		errs.add(p, "must be https (plain http only to a loopback host)")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		errs.add(p, "must have no user info, query or fragment")
	}
	return strings.TrimRight(raw, "/")
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// FieldError is one problem of a configuration, at its field path such as
// endpoints[1].auth.keyId (auth.keyId in an API definition).
type FieldError struct {
	Path    string
	Message string
}

// FieldErrors are the problems of a configuration; the admin API reports
// each as an OperationOutcome issue with its path as the expression.
type FieldErrors []FieldError

type fieldErrors = FieldErrors

func (e *FieldErrors) add(path, format string, args ...any) {
	*e = append(*e, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Path + ": " + f.Message
	}
	return strings.Join(parts, "; ")
}
