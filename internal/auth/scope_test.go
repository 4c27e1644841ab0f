package auth

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseScope(t *testing.T) {
	all := Create | Read | Update | Delete | Search
	tests := []struct {
		in   string
		want Scope
		ok   bool
	}{
		{"patient/Observation.rs", Scope{PatientContext, "Observation", Read | Search}, true},
		{"user/*.cruds", Scope{UserContext, "*", all}, true},
		{"system/Patient.c", Scope{SystemContext, "Patient", Create}, true},
		{"user/Encounter.ud", Scope{UserContext, "Encounter", Update | Delete}, true},
		// v1
		{"patient/*.read", Scope{PatientContext, "*", Read | Search}, true},
		{"user/Observation.write", Scope{UserContext, "Observation", Create | Update | Delete}, true},
		{"system/*.*", Scope{SystemContext, "*", all}, true},
		// v2 letters out of order, repeated or unknown
		{"patient/Observation.sr", Scope{}, false},
		{"patient/Observation.rr", Scope{}, false},
		{"patient/Observation.rx", Scope{}, false},
		{"patient/Observation.", Scope{}, false},
		// granular scopes grant nothing (see ParseScope)
		{"patient/Observation.rs?category=laboratory", Scope{}, false},
		// not resource scopes
		{"openid", Scope{}, false},
		{"fhirUser", Scope{}, false},
		{"launch/patient", Scope{}, false},
		{"online_access", Scope{}, false},
		{"admin/Patient.r", Scope{}, false},
		{"patient/.rs", Scope{}, false},
		{"patient/Observation", Scope{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseScope(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPermString(t *testing.T) {
	for _, s := range []string{"c", "r", "rs", "cud", "cruds"} {
		p, ok := ParsePerm(s)
		if !ok || p.String() != s {
			t.Errorf("ParsePerm(%q) = %v, %v", s, p, ok)
		}
	}
}

func TestGrant(t *testing.T) {
	tests := []struct {
		name    string
		p       Principal
		perm    string
		typ     string
		want    Context
		missing string
	}{
		{"anonymous may do everything", Principal{Anonymous: true}, "cruds", "Observation", SystemContext, ""},
		{"no scopes", Principal{Scopes: []string{"openid"}}, "r", "Patient", None, "patient|user|system/Patient.r"},
		{"v2 exact", Principal{Scopes: []string{"user/Observation.rs"}}, "r", "Observation", UserContext, ""},
		{"v2 other type", Principal{Scopes: []string{"user/Observation.rs"}}, "r", "Condition", None, "patient|user|system/Condition.r"},
		{"v2 missing letter", Principal{Scopes: []string{"user/Observation.rs"}}, "c", "Observation", None, "patient|user|system/Observation.c"},
		{"v2 wildcard", Principal{Scopes: []string{"system/*.cruds"}}, "cruds", "Encounter", SystemContext, ""},
		{"letters from two scopes", Principal{Scopes: []string{"user/Observation.r", "user/Observation.s"}}, "rs", "Observation", UserContext, ""},
		{"narrowest of two scopes bounds", Principal{Patient: "p1", Scopes: []string{"system/Observation.r", "patient/Observation.s"}}, "rs", "Observation", PatientContext, ""},
		{"widest grant wins", Principal{Patient: "p1", Scopes: []string{"patient/*.rs", "user/Observation.rs"}}, "rs", "Observation", UserContext, ""},
		{"v1 read is r and s", Principal{Scopes: []string{"user/Patient.read"}}, "rs", "Patient", UserContext, ""},
		{"v1 read is not write", Principal{Scopes: []string{"user/Patient.read"}}, "u", "Patient", None, "patient|user|system/Patient.u"},
		{"v1 write is c u d", Principal{Scopes: []string{"user/Patient.write"}}, "cud", "Patient", UserContext, ""},
		{"v1 write is not read", Principal{Scopes: []string{"user/Patient.write"}}, "r", "Patient", None, "patient|user|system/Patient.r"},
		{"patient scope with a patient", Principal{Patient: "p1", Scopes: []string{"patient/*.read"}}, "r", "Observation", PatientContext, ""},
		{"patient scope without a patient", Principal{Scopes: []string{"patient/*.read"}}, "r", "Observation", None, "patient|user|system/Observation.r"},
		{"granular scope grants nothing", Principal{Scopes: []string{"user/Observation.rs?category=laboratory"}}, "r", "Observation", None, "patient|user|system/Observation.r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perm, ok := ParsePerm(tt.perm)
			if !ok {
				t.Fatalf("bad perm %q", tt.perm)
			}
			got := tt.p.Grant(perm, tt.typ)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Grant (-want +got):\n%s", diff)
			}
			if got == None {
				if m := Missing(None, perm, tt.typ); m != tt.missing {
					t.Errorf("Missing = %q, want %q", m, tt.missing)
				}
			}
		})
	}
}

func TestMissingInContext(t *testing.T) {
	if got := Missing(SystemContext, Read, "Endpoint"); got != "system/Endpoint.r" {
		t.Errorf("Missing = %q", got)
	}
}

func TestLacking(t *testing.T) {
	p := Principal{Scopes: []string{"user/Observation.cu"}}
	if got := p.Lacking(Create|Update|Search, "Observation"); got != Search {
		t.Errorf("Lacking = %v, want s", got)
	}
}
