package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// tokens is a test-only Authenticator: the bearer string names the
// principal (the real verifier checks JWTs).
type tokens map[string]*auth.Principal

func (ts tokens) Authenticate(r *http.Request) (*auth.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if p := ts[tok]; ok && p != nil {
		return p, nil
	}
	return nil, fault.New(fault.Unauthorized, "", "no valid bearer token")
}

func scoped(client, patient string, scopes ...string) *auth.Principal {
	return &auth.Principal{Issuer: "https://idp.test", Subject: client, ClientID: client, Patient: patient, Scopes: scopes}
}

// scopeEnv is a server with authentication and a small fixture: Patients
// p1 and p2, an Observation of each (o1 performed by Practitioner pr1),
// created by a system/*.* token.
type scopeEnv struct {
	*env
	tokens tokens
}

func newScopeEnv(t *testing.T) *scopeEnv {
	ts := tokens{
		"admin":    scoped("admin", "", "system/*.cruds"),
		"none":     scoped("none", "", "openid", "fhirUser"),
		"obs-r":    scoped("obs-r", "", "user/Observation.r"),
		"obs-s":    scoped("obs-s", "", "user/Observation.s"),
		"obs-c":    scoped("obs-c", "", "user/Observation.c"),
		"obs-u":    scoped("obs-u", "", "user/Observation.u"),
		"obs-d":    scoped("obs-d", "", "user/Observation.d"),
		"obs-cs":   scoped("obs-cs", "", "user/Observation.cs"),
		"obs-read": scoped("obs-read", "", "user/Observation.read"),
		"obs-wr":   scoped("obs-wr", "", "user/Observation.write"),
		"obs-gran": scoped("obs-gran", "", "user/Observation.rs?category=laboratory"),
		"pat1":     scoped("pat1", "p1", "patient/*.cruds"),
		"pat1-v1":  scoped("pat1-v1", "p1", "patient/*.read"),
		"nopat":    scoped("nopat", "", "patient/*.rs"),
		"sub-c":    scoped("sub-c", "", "user/Subscription.cu"),
		"sub-obs":  scoped("sub-obs", "", "user/Subscription.cu", "user/Observation.rs"),
		"sub-pat":  scoped("sub-pat", "p1", "user/Subscription.cu", "patient/Observation.rs"),
	}
	s := &scopeEnv{env: newEnvAuth(t, ts), tokens: ts}
	for _, put := range []struct{ path, body string }{
		{"/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`},
		{"/fhir/Patient/p2", `{"resourceType":"Patient","id":"p2"}`},
		{"/fhir/Practitioner/pr1", `{"resourceType":"Practitioner","id":"pr1"}`},
		{"/fhir/Observation/o1", obs("o1", "p1")},
		{"/fhir/Observation/o2", obs("o2", "p2")},
	} {
		if r := s.as("admin", "PUT", put.path, put.body); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", put.path, r.status, r.body)
		}
	}
	return s
}

func obs(id, patient string) string {
	idm := ""
	if id != "" {
		idm = `"id":"` + id + `",`
	}
	return `{"resourceType":"Observation",` + idm + `"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"},"performer":[{"reference":"Practitioner/pr1"}]}`
}

func (s *scopeEnv) as(token, method, path, body string, headers ...string) *response {
	s.t.Helper()
	if token != "" {
		headers = append(headers, "Authorization", "Bearer "+token)
	}
	return do(s.t, s.srv.URL, method, path, body, headers...)
}

// entryIDs lists Type/id of a Bundle's entries.
func entryIDs(t *testing.T, r *response) []string {
	t.Helper()
	var out []string
	entries, _ := r.json(t)["entry"].([]any)
	for _, e := range entries {
		res, _ := e.(map[string]any)["resource"].(map[string]any)
		if res == nil || res["resourceType"] == "OperationOutcome" {
			continue
		}
		out = append(out, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type scopeCase struct {
	name, token, method, path, body string
	headers                         []string
	want                            int
	missing                         string // a 403 names it
}

func (s *scopeEnv) run(t *testing.T, cases []scopeCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			r := s.as(tc.token, tc.method, tc.path, tc.body, tc.headers...)
			if r.status != tc.want {
				t.Fatalf("%s %s as %s: %d, want %d: %s", tc.method, tc.path, tc.token, r.status, tc.want, r.body)
			}
			if r.status == http.StatusForbidden {
				if !strings.Contains(string(r.body), `"code":"forbidden"`) || !strings.Contains(string(r.body), tc.missing) {
					t.Errorf("the OperationOutcome should be forbidden and name %q: %s", tc.missing, r.body)
				}
			}
		})
	}
}

// TestScopeRules: each interaction with and without the scope it needs,
// SMART v2 letters and v1 read/write.
func TestScopeRules(t *testing.T) {
	s := newScopeEnv(t)
	jp := []string{"Content-Type", "application/json-patch+json"}
	patch := `[{"op":"replace","path":"/status","value":"amended"}]`
	s.run(t, []scopeCase{
		{name: "no token", method: "GET", path: "/fhir/Observation/o1", want: 401},
		{name: "metadata is public", method: "GET", path: "/fhir/metadata", want: 200},
		{name: "no resource scope", token: "none", method: "GET", path: "/fhir/Observation/o1", want: 403, missing: "Observation.r"},
		{name: "read r", token: "obs-r", method: "GET", path: "/fhir/Observation/o1", want: 200},
		{name: "read without r", token: "obs-s", method: "GET", path: "/fhir/Observation/o1", want: 403, missing: "Observation.r"},
		{name: "read of another type", token: "obs-r", method: "GET", path: "/fhir/Patient/p1", want: 403, missing: "Patient.r"},
		{name: "granular scope grants nothing", token: "obs-gran", method: "GET", path: "/fhir/Observation/o1", want: 403, missing: "Observation.r"},
		{name: "vread r", token: "obs-r", method: "GET", path: "/fhir/Observation/o1/_history/1", want: 200},
		{name: "vread without r", token: "obs-s", method: "GET", path: "/fhir/Observation/o1/_history/1", want: 403, missing: "Observation.r"},
		{name: "history-instance r", token: "obs-r", method: "GET", path: "/fhir/Observation/o1/_history", want: 200},
		{name: "history-instance without r", token: "obs-s", method: "GET", path: "/fhir/Observation/o1/_history", want: 403, missing: "Observation.r"},
		{name: "search s", token: "obs-s", method: "GET", path: "/fhir/Observation?status=final", want: 200},
		{name: "search without s", token: "obs-r", method: "GET", path: "/fhir/Observation", want: 403, missing: "Observation.s"},
		{name: "POST search without s", token: "obs-r", method: "POST", path: "/fhir/Observation/_search", body: "", headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, want: 403, missing: "Observation.s"},
		{name: "chain needs s on its type", token: "obs-read", method: "GET", path: "/fhir/Observation?subject:Patient.active=true", want: 403, missing: "Patient.s"},
		{name: "_has needs s on its type", token: "obs-read", method: "GET", path: "/fhir/Observation?_has:DiagnosticReport:result:status=final", want: 403, missing: "DiagnosticReport.s"},
		{name: "_has on a granted type", token: "obs-read", method: "GET", path: "/fhir/Observation?_has:Observation:has-member:status=final", want: 200},
		{name: "compartment search s", token: "obs-s", method: "GET", path: "/fhir/Patient/p1/Observation", want: 200},
		{name: "compartment search without s", token: "obs-r", method: "GET", path: "/fhir/Patient/p1/Observation", want: 403, missing: "Observation.s"},
		{name: "history-type s", token: "obs-s", method: "GET", path: "/fhir/Observation/_history", want: 200},
		{name: "history-type without s", token: "obs-r", method: "GET", path: "/fhir/Observation/_history", want: 403, missing: "Observation.s"},
		{name: "v1 read: read", token: "obs-read", method: "GET", path: "/fhir/Observation/o1", want: 200},
		{name: "v1 read: search", token: "obs-read", method: "GET", path: "/fhir/Observation", want: 200},
		{name: "v1 read: no write", token: "obs-read", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), want: 403, missing: "Observation.c"},
		{name: "create c", token: "obs-c", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), want: 201},
		{name: "create without c", token: "obs-u", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), want: 403, missing: "Observation.c"},
		{name: "v1 write: create", token: "obs-wr", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), want: 201},
		{name: "v1 write: no read", token: "obs-wr", method: "GET", path: "/fhir/Observation/o1", want: 403, missing: "Observation.r"},
		{name: "conditional create needs s", token: "obs-c", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), headers: []string{"If-None-Exist", "status=final"}, want: 403, missing: "Observation.s"},
		{name: "conditional create cs", token: "obs-cs", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), headers: []string{"If-None-Exist", "_id=o1"}, want: 200},
		{name: "update u", token: "obs-u", method: "PUT", path: "/fhir/Observation/o1", body: obs("o1", "p1"), want: 200},
		{name: "update without u", token: "obs-c", method: "PUT", path: "/fhir/Observation/o1", body: obs("o1", "p1"), want: 403, missing: "Observation.u"},
		{name: "update as create needs c", token: "obs-u", method: "PUT", path: "/fhir/Observation/new1", body: obs("new1", "p1"), want: 403, missing: "Observation.c"},
		{name: "v1 write: update as create", token: "obs-wr", method: "PUT", path: "/fhir/Observation/new2", body: obs("new2", "p1"), want: 201},
		{name: "conditional update needs s", token: "obs-wr", method: "PUT", path: "/fhir/Observation?_id=o1", body: obs("o1", "p1"), want: 403, missing: "Observation.s"},
		{name: "patch u", token: "obs-u", method: "PATCH", path: "/fhir/Observation/o1", body: patch, headers: jp, want: 200},
		{name: "patch without u", token: "obs-r", method: "PATCH", path: "/fhir/Observation/o1", body: patch, headers: jp, want: 403, missing: "Observation.u"},
		{name: "conditional patch needs s", token: "obs-u", method: "PATCH", path: "/fhir/Observation?_id=o1", body: patch, headers: jp, want: 403, missing: "Observation.s"},
		{name: "delete without d", token: "obs-u", method: "DELETE", path: "/fhir/Observation/new2", want: 403, missing: "Observation.d"},
		{name: "delete d", token: "obs-d", method: "DELETE", path: "/fhir/Observation/new2", want: 204},
		{name: "conditional delete needs s", token: "obs-d", method: "DELETE", path: "/fhir/Observation?_id=o1", want: 403, missing: "Observation.s"},
		{name: "$validate c", token: "obs-c", method: "POST", path: "/fhir/Observation/$validate", body: obs("", "p1"), want: 200},
		{name: "$validate without c", token: "obs-r", method: "POST", path: "/fhir/Observation/$validate", body: obs("", "p1"), want: 403, missing: "Observation.c"},
		{name: "$everything needs Patient rs", token: "obs-read", method: "GET", path: "/fhir/Patient/p1/$everything", want: 403, missing: "Patient.r"},
		{name: "$import is system write", token: "obs-wr", method: "POST", path: "/fhir/$import", body: "", want: 403, missing: "system/*.cu"},
		{name: "$reindex is system", token: "obs-read", method: "GET", path: "/fhir/$reindex", want: 403, missing: "system/SearchParameter.r"},
		{name: "admin API: system scope", token: "admin", method: "GET", path: "/admin/sync/endpoints", want: 200},
		{name: "admin API: user scope refused", token: "obs-wr", method: "GET", path: "/admin/sync/endpoints", want: 403, missing: "system/Endpoint.r"},
		{name: "admin API: patient scope refused", token: "pat1", method: "GET", path: "/admin/sync/endpoints", want: 403, missing: "system/Endpoint.r"},
		{name: "KAP API: scope", token: "admin", method: "GET", path: "/kap/v1/clients", want: 200},
		{name: "KAP API: without scope", token: "obs-read", method: "GET", path: "/kap/v1/clients", want: 403, missing: "Patient.s"},
		{name: "KAP API: patient scope on a list", token: "pat1", method: "GET", path: "/kap/v1/clients", want: 403, missing: "user/ or system/"},
		{name: "KAP API: another client", token: "pat1", method: "GET", path: "/kap/v1/clients/p2", want: 403, missing: "user/ or system/"},
		{name: "KAP API: another client's data", token: "pat1", method: "GET", path: "/kap/v1/clients/p2/measurements", want: 403, missing: "user/ or system/"},
	})
}

// TestScopeCompartment: patient/ scopes reach only the compartment of the
// token's patient.
func TestScopeCompartment(t *testing.T) {
	s := newScopeEnv(t)
	jp := []string{"Content-Type", "application/json-patch+json"}
	s.run(t, []scopeCase{
		{name: "read own", token: "pat1", method: "GET", path: "/fhir/Observation/o1", want: 200},
		{name: "read own patient", token: "pat1-v1", method: "GET", path: "/fhir/Patient/p1", want: 200},
		{name: "read other", token: "pat1", method: "GET", path: "/fhir/Observation/o2", want: 403, missing: "compartment"},
		{name: "read other patient", token: "pat1-v1", method: "GET", path: "/fhir/Patient/p2", want: 403, missing: "compartment"},
		{name: "vread other", token: "pat1", method: "GET", path: "/fhir/Observation/o2/_history/1", want: 403, missing: "compartment"},
		{name: "history other", token: "pat1", method: "GET", path: "/fhir/Observation/o2/_history", want: 403, missing: "compartment"},
		{name: "no patient in context", token: "nopat", method: "GET", path: "/fhir/Observation/o1", want: 403, missing: "Observation.r"},
		{name: "type outside the compartment", token: "pat1", method: "GET", path: "/fhir/Practitioner", want: 403, missing: "Patient compartment"},
		{name: "create in", token: "pat1", method: "POST", path: "/fhir/Observation", body: obs("", "p1"), want: 201},
		{name: "create outside", token: "pat1", method: "POST", path: "/fhir/Observation", body: obs("", "p2"), want: 403, missing: "compartment"},
		{name: "update other's into own", token: "pat1", method: "PUT", path: "/fhir/Observation/o2", body: obs("o2", "p1"), want: 403, missing: "compartment"},
		{name: "update own out", token: "pat1", method: "PUT", path: "/fhir/Observation/o1", body: obs("o1", "p2"), want: 403, missing: "compartment"},
		{name: "patch own out", token: "pat1", method: "PATCH", path: "/fhir/Observation/o1", body: `[{"op":"replace","path":"/subject/reference","value":"Patient/p2"}]`, headers: jp, want: 403, missing: "compartment"},
		{name: "patch own", token: "pat1", method: "PATCH", path: "/fhir/Observation/o1", body: `[{"op":"replace","path":"/status","value":"amended"}]`, headers: jp, want: 200},
		{name: "update own with a stale If-Match", token: "pat1", method: "PUT", path: "/fhir/Observation/o1", body: obs("o1", "p1"), headers: []string{"If-Match", `W/"1"`}, want: 412},
		{name: "update own", token: "pat1", method: "PUT", path: "/fhir/Observation/o1", body: obs("o1", "p1"), headers: []string{"If-Match", `W/"2"`}, want: 200},
		{name: "delete other", token: "pat1", method: "DELETE", path: "/fhir/Observation/o2", want: 403, missing: "compartment"},
		{name: "conditional delete does not reach other", token: "pat1", method: "DELETE", path: "/fhir/Observation?_id=o2", want: 204},
		{name: "other still there", token: "admin", method: "GET", path: "/fhir/Observation/o2", want: 200},
		{name: "everything of other", token: "pat1", method: "GET", path: "/fhir/Patient/p2/$everything", want: 403, missing: "compartment"},
		{name: "system search: patient grants reach no type", token: "pat1", method: "GET", path: "/fhir?_type=Observation", want: 403, missing: "user/Observation.s"},
		{name: "export refused", token: "pat1", method: "GET", path: "/fhir/Patient/$export", headers: []string{"Prefer", "respond-async"}, want: 403, missing: "user/ or system/"},
	})

	t.Run("search is limited to the compartment", func(t *testing.T) {
		s.t = t
		r := s.as("pat1-v1", "GET", "/fhir/Observation?status=final,amended", "")
		if diff := cmp.Diff([]string{"Observation/o1"}, slices.DeleteFunc(entryIDs(t, r), func(id string) bool { return id != "Observation/o1" && id != "Observation/o2" })); diff != "" {
			t.Errorf("matches (-want +got):\n%s\n%s", diff, r.body)
		}
		r = s.as("pat1-v1", "GET", "/fhir/Patient", "")
		if diff := cmp.Diff([]string{"Patient/p1"}, entryIDs(t, r)); diff != "" {
			t.Errorf("Patient search (-want +got):\n%s", diff)
		}
	})
	t.Run("includes outside the compartment are dropped", func(t *testing.T) {
		s.t = t
		r := s.as("pat1-v1", "GET", "/fhir/Observation?_id=o1&_include=Observation:performer&_include=Observation:subject", "")
		if diff := cmp.Diff([]string{"Observation/o1", "Patient/p1"}, entryIDs(t, r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		r = s.as("pat1-v1", "GET", "/fhir/Patient?_revinclude=Observation:subject", "")
		for _, id := range entryIDs(t, r) {
			if id == "Observation/o2" || id == "Patient/p2" {
				t.Errorf("%s leaked: %s", id, r.body)
			}
		}
	})
	t.Run("$everything of own patient", func(t *testing.T) {
		s.t = t
		r := s.as("pat1-v1", "GET", "/fhir/Patient/p1/$everything", "")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		ids := entryIDs(t, r)
		if !slices.Contains(ids, "Observation/o1") || slices.Contains(ids, "Practitioner/pr1") || slices.Contains(ids, "Observation/o2") {
			t.Errorf("$everything: %v", ids)
		}
	})
}

// TestScopeNoLeak: requests spanning types return only the types the
// token may read, in search, history and $everything.
func TestScopeNoLeak(t *testing.T) {
	s := newScopeEnv(t)
	only := func(t *testing.T, r *response, typ string) {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		ids := entryIDs(t, r)
		if len(ids) == 0 {
			t.Fatalf("no entries: %s", r.body)
		}
		for _, id := range ids {
			if !strings.HasPrefix(id, typ+"/") {
				t.Errorf("%s leaked", id)
			}
		}
	}
	t.Run("system search", func(t *testing.T) {
		s.t = t
		only(t, s.as("obs-read", "GET", "/fhir?_lastUpdated=gt2000-01-01", ""), "Observation")
		if r := s.as("obs-read", "GET", "/fhir?_type=Observation,Patient", ""); r.status != 403 {
			t.Errorf("_type naming a type not granted: %d", r.status)
		}
	})
	t.Run("system history", func(t *testing.T) {
		s.t = t
		only(t, s.as("obs-read", "GET", "/fhir/_history", ""), "Observation")
	})
	t.Run("includes of a type not granted", func(t *testing.T) {
		s.t = t
		only(t, s.as("obs-read", "GET", "/fhir/Observation?_include=Observation:performer&_include=Observation:subject", ""), "Observation")
	})
	t.Run("$everything", func(t *testing.T) {
		s.tokens["pat-obs"] = scoped("pat-obs", "", "user/Patient.rs", "user/Observation.r")
		s.t = t
		r := s.as("pat-obs", "GET", "/fhir/Patient/p1/$everything", "")
		for _, id := range entryIDs(t, r) {
			if !strings.HasPrefix(id, "Patient/") && !strings.HasPrefix(id, "Observation/") {
				t.Errorf("%s leaked", id)
			}
		}
	})
}

// TestScopeExport: export needs user/ or system/ read of the types, yields
// only those, and only its requester may use the job.
func TestScopeExport(t *testing.T) {
	s := newScopeEnv(t)
	s.tokens["exp-obs"] = scoped("exp-obs", "", "system/Observation.read")
	s.tokens["exp-other"] = scoped("exp-other", "", "system/*.read")
	async := []string{"Prefer", "respond-async"}
	if r := s.as("none", "GET", "/fhir/$export", "", async...); r.status != 403 {
		t.Errorf("export without scopes: %d %s", r.status, r.body)
	}
	if r := s.as("exp-obs", "GET", "/fhir/$export?_type=Patient", "", async...); r.status != 403 || !strings.Contains(string(r.body), "Patient.r") {
		t.Errorf("export of a type not granted: %d %s", r.status, r.body)
	}
	if r := s.as("exp-obs", "GET", "/fhir/Group/g1/$export", "", async...); r.status != 403 || !strings.Contains(string(r.body), "Group.r") {
		t.Errorf("group export without Group.r: %d %s", r.status, r.body)
	}
	r := s.as("exp-obs", "GET", "/fhir/$export", "", async...)
	if r.status != 202 {
		t.Fatalf("kick-off: %d %s", r.status, r.body)
	}
	status := strings.TrimPrefix(r.header.Get("Content-Location"), s.srv.URL)
	s.runExports()
	for _, method := range []string{"GET", "DELETE"} {
		if r := s.as("exp-other", method, status, ""); r.status != 403 {
			t.Errorf("%s of another's job: %d %s", method, r.status, r.body)
		}
	}
	if r := s.as("exp-other", "GET", status+"/Observation.ndjson", ""); r.status != 403 {
		t.Errorf("file of another's job: %d %s", r.status, r.body)
	}
	r = s.as("exp-obs", "GET", status, "")
	if r.status != 200 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	var types []string
	for _, o := range r.json(t)["output"].([]any) {
		types = append(types, o.(map[string]any)["type"].(string))
	}
	if diff := cmp.Diff([]string{"Observation"}, types); diff != "" {
		t.Errorf("exported types (-want +got):\n%s", diff)
	}
	if r := s.as("exp-obs", "GET", status+"/Observation.ndjson", "", "Accept", "application/fhir+ndjson"); r.status != 200 || strings.Count(string(r.body), "\n") != 2 {
		t.Errorf("file: %d %s", r.status, r.body)
	}
}

// TestScopeBundles: a transaction with an entry the token may not do fails
// whole; a batch answers that entry alone.
func TestScopeBundles(t *testing.T) {
	s := newScopeEnv(t)
	bundle := func(typ string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` +
			`{"resource":` + obs("", "p1") + `,"request":{"method":"POST","url":"Observation"}},` +
			`{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}]}`
	}
	count := func() int {
		return len(entryIDs(t, s.as("admin", "GET", "/fhir/Observation", "")))
	}
	before := count()
	r := s.as("obs-c", "POST", "/fhir", bundle("transaction"))
	if r.status != 403 || !strings.Contains(string(r.body), "Patient.c") || !strings.Contains(string(r.body), "Bundle.entry[1]") {
		t.Errorf("transaction: %d %s", r.status, r.body)
	}
	if n := count(); n != before {
		t.Errorf("the refused transaction wrote: %d Observations, had %d", n, before)
	}
	r = s.as("obs-c", "POST", "/fhir", bundle("batch"))
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var statuses []string
	for _, e := range r.json(t)["entry"].([]any) {
		statuses = append(statuses, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	if diff := cmp.Diff([]string{"201 Created", "403 Forbidden"}, statuses); diff != "" {
		t.Errorf("batch statuses (-want +got):\n%s", diff)
	}
	// A read entry the token may not do is refused too, before any write.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Patient/p1"}}]}`
	if r := s.as("obs-c", "POST", "/fhir", tx); r.status != 403 {
		t.Errorf("transaction with a read not granted: %d %s", r.status, r.body)
	}
}

// TestScopeSubscription: a Subscription discloses every resource its
// criteria match to its endpoint, so writing one needs rs on the criteria's
// type beyond a patient compartment, also inside a transaction.
func TestScopeSubscription(t *testing.T) {
	s := newScopeEnv(t)
	sub := `{"resourceType":"Subscription","status":"requested","reason":"x","criteria":"Observation?status=final",` +
		`"channel":{"type":"rest-hook","endpoint":"https://hook.example.org/x","payload":"application/fhir+json"}}`
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + sub + `,"request":{"method":"POST","url":"Subscription"}}]}`
	s.run(t, []scopeCase{
		{name: "criteria type not granted", token: "sub-c", method: "POST", path: "/fhir/Subscription", body: sub, want: 403, missing: "user/Observation.rs"},
		{name: "criteria type in a patient compartment only", token: "sub-pat", method: "POST", path: "/fhir/Subscription", body: sub, want: 403, missing: "user/Observation.rs"},
		{name: "transaction: criteria type not granted", token: "sub-c", method: "POST", path: "/fhir", body: tx, want: 403, missing: "user/Observation.rs"},
		{name: "criteria type granted", token: "sub-obs", method: "POST", path: "/fhir/Subscription", body: sub, want: 201},
		{name: "transaction: criteria type granted", token: "sub-obs", method: "POST", path: "/fhir", body: tx, want: 200},
	})
}

// TestScopeKAPClient: a patient/ token reads its own client through the
// KAP API.
func TestScopeKAPClient(t *testing.T) {
	s := newScopeEnv(t)
	r := s.as("admin", "POST", "/kap/v1/clients", `{"name":{"family":"Moss"},"gender":"male","identifiers":[{"system":"https://clinic.example/mrn","value":"MRN-9"}]}`, "Content-Type", "application/json")
	if r.status != 201 {
		t.Fatalf("create client: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	s.tokens["client"] = scoped("client", id, "patient/*.rs")
	if r := s.as("client", "GET", "/kap/v1/clients/"+id, ""); r.status != 200 {
		t.Errorf("own client: %d %s", r.status, r.body)
	}
	if r := s.as("client", "GET", "/kap/v1/clients/"+id+"/measurements", ""); r.status != 200 {
		t.Errorf("own measurements: %d %s", r.status, r.body)
	}
	if r := s.as("client", "GET", "/kap/v1/clients/p1", ""); r.status != 403 {
		t.Errorf("another client: %d %s", r.status, r.body)
	}
}
