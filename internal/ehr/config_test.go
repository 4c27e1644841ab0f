package ehr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kapfhir/kapfhir/internal/ehr/smart"
	"github.com/kapfhir/kapfhir/internal/ehr/smart/smarttest"
)

// fakeSources resolve secrets from maps.
func fakeSources(env map[string]string, files map[string][]byte) Sources {
	return Sources{
		LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok },
		ReadFile: func(p string) ([]byte, error) {
			if b, ok := files[p]; ok {
				return b, nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
}

// cmpSecrets compares secrets by value and keys by alg and kid.
var cmpSecrets = cmp.Options{
	cmp.Comparer(func(a, b Secret) bool { return a.IsZero() == b.IsZero() && a.Reveal() == b.Reveal() }),
	cmp.Comparer(func(a, b smart.Key) bool { return a.Algorithm() == b.Algorithm() && a.KeyID() == b.KeyID() }),
}

func secretOf(v string) Secret { return Secret{v: &v} }

func TestParseExample(t *testing.T) {
	keyPEM, _ := smarttest.NewKey(t, "ES384")
	key, err := smart.ParseKey(keyPEM, smart.ES384, "kapfhir-2026-01")
	if err != nil {
		t.Fatal(err)
	}
	src := fakeSources(map[string]string{"KAPFHIR_COUNTY_TOKEN": "county-token\n"},
		map[string][]byte{"/etc/kapfhir/st-mary-es384.pem": keyPEM})
	yes, no := true, false
	want := Config{Endpoints: []Endpoint{{
		Name:    "st-mary-epic",
		BaseURL: "https://fhir.st-mary.example/api/FHIR/R4",
		Auth: Auth{Type: AuthSMARTBackend, TokenURL: "https://fhir.st-mary.example/oauth2/token", ClientID: "kapfhir-clinic", Key: key,
			PrivateKeyRef: "file:/etc/kapfhir/st-mary-es384.pem",
			Scopes:        []string{"system/Observation.cu", "system/DocumentReference.cu", "system/Condition.c", "system/Patient.rs"}},
		Overrides: map[string]Override{"Observation": {Update: &yes}, "Encounter": {Create: &no}},
		Send:      SendPolicy{Types: []string{"Observation", "DocumentReference", "Condition"}, KAPOnly: true, Part2: Part2Consent, Recipient: "Organization/st-mary"},
		Pull:      PullPolicy{Types: []string{"Patient", "Condition", "MedicationRequest", "AllergyIntolerance"}, Every: 5 * time.Minute},
		Source:    SourceFile,
	}, {
		Name:    "county-oracle",
		BaseURL: "https://fhir.county.example/r4/tenant-1",
		Auth:    Auth{Type: AuthBearer, Token: secretOf("county-token"), TokenRef: "env:KAPFHIR_COUNTY_TOKEN"},
		Send:    SendPolicy{Types: []string{"Observation"}, Part2: Part2Never},
		Source:  SourceFile,
	}}}
	for _, tc := range []struct {
		file   string
		format Format
	}{{"testdata/ehr-example.yaml", YAML}, {"testdata/ehr-example.json", JSON}} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(data, tc.format, src)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if diff := cmp.Diff(want, got, cmpSecrets); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.file, diff)
		}
	}
}

// TestLoad reads a real file, with the secrets from the process
// environment and a key file.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	keyPEM, _ := smarttest.NewKey(t, "RS384")
	keyFile := filepath.Join(dir, "key.pem")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("key.pem", string(keyPEM))
	t.Setenv("KAPFHIR_TEST_EHR_TOKEN", "tok")
	cfg := fmt.Sprintf(`endpoints:
- {name: a, baseUrl: "http://127.0.0.1:9/fhir", auth: {type: bearer, token: "env:KAPFHIR_TEST_EHR_TOKEN"}}
- name: b
  baseUrl: https://ehr.example/fhir
  auth: {type: smart-backend, tokenUrl: "https://ehr.example/token", clientId: c, keyId: k, algorithm: RS384, privateKey: "file:%s"}
`, keyFile)
	for _, name := range []string{"ehr.yaml", "ehr.yml"} {
		c, err := Load(write(name, cfg), DefaultSources())
		if err != nil {
			t.Fatal(err)
		}
		if got := []string{c.Endpoints[0].Auth.Token.Reveal(), c.Endpoints[1].Auth.Key.KeyID()}; !cmp.Equal(got, []string{"tok", "k"}) {
			t.Errorf("%s: %v", name, got)
		}
	}
	for _, tc := range []struct{ name, content, want string }{
		{"ehr.toml", "", "must end in .yaml, .yml or .json"},
		{"ehr.json", `{"endpoints": []} {}`, "more than one JSON value"},
		{"bad.json", `{"endpoints": [{"nmae": "x"}]}`, `unknown field "nmae"`},
		{"bad.yaml", "endpoints:\n  - name: [", "yaml"},
	} {
		if _, err := Load(write(tc.name, tc.content), DefaultSources()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), DefaultSources()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestParseErrors: every problem is reported, each with its field path.
func TestParseErrors(t *testing.T) {
	ecPEM, _ := smarttest.NewKey(t, "ES384")
	src := fakeSources(map[string]string{"TOKEN": "t", "EMPTY": " "},
		map[string][]byte{"/keys/ec.pem": ecPEM, "/keys/junk.pem": []byte("super-secret-junk")})
	smartAuth := func(extra string) string {
		return `{type: smart-backend, tokenUrl: "https://e.example/token", clientId: c, keyId: k, algorithm: ES384, privateKey: "file:/keys/ec.pem"` + extra + `}`
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"name", `endpoints: [{name: "St Mary", baseUrl: "https://e.example", auth: {type: none}}]`,
			[]string{"endpoints[0].name: must match"}},
		{"duplicate names", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: none}}, {name: a, baseUrl: "https://f.example", auth: {type: none}}]`,
			[]string{`endpoints[1].name: "a" is used by an earlier endpoint`}},
		{"base URLs", `endpoints: [{name: a, baseUrl: "http://ehr.example/fhir", auth: {type: none}}, {name: b, baseUrl: "fhir", auth: {type: none}}, {name: c, baseUrl: "https://e.example/?x=1", auth: {type: none}}, {name: d, auth: {type: none}}, {name: e, baseUrl: "ftp://e.example", auth: {type: none}}]`,
			[]string{"endpoints[0].baseUrl: must be https (plain http only to a loopback host)", "endpoints[1].baseUrl: must be an absolute URL",
				"endpoints[2].baseUrl: must have no user info, query or fragment", "endpoints[3].baseUrl: is required", "endpoints[4].baseUrl: must be an https URL"}},
		{"auth type", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {}}, {name: b, baseUrl: "https://e.example", auth: {type: basic}}]`,
			[]string{"endpoints[0].auth.type: is required", "endpoints[1].auth.type: must be none, bearer or smart-backend"}},
		{"bearer", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: bearer}}, {name: b, baseUrl: "https://e.example", auth: {type: bearer, token: "env:NOPE"}}, {name: c, baseUrl: "https://e.example", auth: {type: bearer, token: "env:EMPTY", clientId: x}}, {name: d, baseUrl: "https://e.example", auth: {type: bearer, token: "file:keys/t"}}]`,
			[]string{"endpoints[0].auth.token: is required", "endpoints[1].auth.token: environment variable NOPE is not set",
				"endpoints[2].auth.token: env:EMPTY is empty", `endpoints[2].auth.clientId: is not used with auth type "bearer"`,
				`endpoints[3].auth.token: file "keys/t": the path must be absolute`}},
		{"smart fields", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: smart-backend, algorithm: HS256}}]`,
			[]string{"endpoints[0].auth.tokenUrl: is required", "endpoints[0].auth.clientId: is required", "endpoints[0].auth.algorithm: must be RS384 or ES384",
				"endpoints[0].auth.keyId: is required", "endpoints[0].auth.privateKey: is required"}},
		{"smart key", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: smart-backend, tokenUrl: "https://e.example/t", clientId: c, keyId: k, algorithm: RS384, privateKey: "file:/keys/ec.pem"}}, {name: b, baseUrl: "https://e.example", auth: {type: smart-backend, tokenUrl: "https://e.example/t", clientId: c, keyId: k, algorithm: ES384, privateKey: "file:/keys/junk.pem"}}, {name: c, baseUrl: "https://e.example", auth: {type: smart-backend, tokenUrl: "https://e.example/t", clientId: c, keyId: k, algorithm: ES384, privateKey: "file:/keys/none.pem"}}]`,
			[]string{"endpoints[0].auth.privateKey: RS384 needs an RSA key, got an EC key on P-384", "endpoints[1].auth.privateKey: no PEM block found",
				"endpoints[2].auth.privateKey: open /keys/none.pem: file does not exist"}},
		{"scopes", `endpoints: [{name: a, baseUrl: "https://e.example", auth: ` + smartAuth(`, scopes: ["system/Observation.c system/Condition.c", ""]`) + `}, {name: b, baseUrl: "https://e.example", auth: {type: none, scopes: [x]}}]`,
			[]string{"endpoints[0].auth.scopes[0]: must be one scope without spaces", "endpoints[0].auth.scopes[1]: must be one scope", `endpoints[1].auth.scopes: is not used with auth type "none"`}},
		{"send", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: none}, capabilities: {Obs: {create: true}}, send: {types: [Observation, Vitals, Observation], part2: always, recipient: "Hospital/1"}}]`,
			[]string{`endpoints[0].capabilities: "Obs" is not a FHIR R4 resource type`, `endpoints[0].send.types[1]: "Vitals" is not a FHIR R4 resource type`,
				`endpoints[0].send.types[2]: "Observation" is listed twice`, "endpoints[0].send.part2: must be consent or never", "endpoints[0].send.recipient: must be a reference Organization/<id>"}},
		{"pull", `endpoints: [{name: a, baseUrl: "https://e.example", auth: {type: none}, pull: {types: [Patient, Patient, Pt], every: 1s}}, {name: b, baseUrl: "https://e.example", auth: {type: none}, pull: {types: [Patient], every: soon}}]`,
			[]string{`endpoints[0].pull.types[1]: "Patient" is listed twice`, `endpoints[0].pull.types[2]: "Pt" is not a FHIR R4 resource type`,
				"endpoints[0].pull.every: must be at least 10s", "endpoints[1].pull.every: must be a duration such as 5m or 90s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), YAML, src)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "; ")
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(want, got string) bool { return strings.HasPrefix(got, want) || strings.HasPrefix(want, got) })); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "super-secret") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

// TestInlineSecretRefused: a secret written into the file is refused and
// the error does not repeat it.
func TestInlineSecretRefused(t *testing.T) {
	for _, v := range []string{"s3cr3t-token", "Bearer:s3cr3t-token", "-----BEGIN PRIVATE KEY-----s3cr3t"} {
		_, err := Parse([]byte(`{"endpoints":[{"name":"a","baseUrl":"https://e.example","auth":{"type":"bearer","token":`+fmt.Sprintf("%q", v)+`}}]}`), JSON, fakeSources(nil, nil))
		if err == nil || !strings.Contains(err.Error(), "endpoints[0].auth.token: must be a reference, env:NAME or file:/absolute/path") {
			t.Errorf("%q: error %v", v, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

// TestSecretRedacted: no way of printing, marshalling or logging a Secret
// or a Config that holds one shows the value.
func TestSecretRedacted(t *testing.T) {
	s := secretOf("s3cr3t-value")
	holder := struct {
		S      Secret
		hidden Secret
		P      *Secret
		Auth   Auth
	}{s, s, &s, Auth{Type: AuthBearer, Token: s}}
	cfg := Config{Endpoints: []Endpoint{{Name: "a", Auth: Auth{Type: AuthBearer, Token: s}}}}
	jsonOut, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	text, err := s.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", s, "config", cfg)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "secret", s, "holder", holder)
	for name, out := range map[string]string{
		"json": string(jsonOut), "text": string(text), "slog": logged.String(), "String": s.String(),
		"%v": fmt.Sprintf("%v", holder), "%+v": fmt.Sprintf("%+v", holder), "%#v": fmt.Sprintf("%#v", holder),
		"%s": fmt.Sprintf("%s", s), "%q": fmt.Sprintf("%q", s), "%x": fmt.Sprintf("%x", s), "config %+v": fmt.Sprintf("%+v", cfg),
		"config %#v": fmt.Sprintf("%#v", cfg), "error": fmt.Errorf("wrapped %v", s).Error(),
	} {
		if strings.Contains(out, "s3cr3t") || strings.Contains(out, fmt.Sprintf("%x", "s3cr3t")) {
			t.Errorf("%s shows the secret: %s", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s does not say %s: %s", name, Redacted, out)
		}
	}
	if s.Reveal() != "s3cr3t-value" {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

// TestParseEndpoint covers an endpoint defined through the admin API: the
// canonical definition keeps references only, and errors name the field
// path relative to the entry without repeating an inline secret.
func TestParseEndpoint(t *testing.T) {
	src := fakeSources(map[string]string{"TOKEN": "tok-value"}, nil)
	e, def, err := ParseEndpoint("lab", []byte(`{"baseUrl":"http://127.0.0.1:9/fhir/","auth":{"type":"bearer","token":"env:TOKEN"},
		"send":{"types":["Observation"]}}`), src)
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "lab" || e.Source != SourceAPI || e.Auth.Token.Reveal() != "tok-value" || e.Auth.TokenRef != "env:TOKEN" {
		t.Errorf("endpoint = %+v", e)
	}
	wantDef := `{"name":"lab","baseUrl":"http://127.0.0.1:9/fhir/","auth":{"type":"bearer","token":"env:TOKEN"},"send":{"types":["Observation"]}}`
	if string(def) != wantDef {
		t.Errorf("definition = %s, want %s", def, wantDef)
	}
	for _, tc := range []struct {
		body      string
		wantPaths []string
	}{
		{`{"baseUrl":"http://127.0.0.1:9","auth":{"type":"bearer","token":"inline-s3cret"}}`, []string{"auth.token"}},
		{`{"name":"other","baseUrl":"ftp://x","auth":{"type":"none"}}`, []string{"name", "baseUrl"}},
		{`{"baseUrl":"http://127.0.0.1:9","auth":{"type":"none"},"send":{"types":["Nope"]}}`, []string{"send.types[0]"}},
	} {
		_, _, err := ParseEndpoint("lab", []byte(tc.body), src)
		var fe FieldErrors
		if !errors.As(err, &fe) {
			t.Fatalf("%s: error %v, want FieldErrors", tc.body, err)
		}
		var paths []string
		for _, f := range fe {
			paths = append(paths, f.Path)
		}
		if diff := cmp.Diff(tc.wantPaths, paths); diff != "" {
			t.Errorf("%s: paths (-want +got):\n%s", tc.body, diff)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error repeats the secret: %v", tc.body, err)
		}
	}
	if _, _, err := ParseEndpoint("lab", []byte(`{"bogus":1}`), src); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field: %v", err)
	}
}
