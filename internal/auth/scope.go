package auth

import (
	"strings"
)

// Perm is a set of SMART v2 permissions: create, read, update, delete,
// search.
type Perm uint8

// The SMART v2 permissions, in the order a scope lists them (cruds).
const (
	Create Perm = 1 << iota
	Read
	Update
	Delete
	Search
)

const permLetters = "cruds"

// ParsePerm parses permission letters ("rs", "cud"). They must come in
// cruds order, each once, as SMART v2 asks; ok is false otherwise.
func ParsePerm(s string) (p Perm, ok bool) {
	last := -1
	for _, r := range s {
		i := strings.IndexRune(permLetters, r)
		if i <= last {
			return 0, false
		}
		last = i
		p |= 1 << i
	}
	return p, p != 0
}

// String spells p as SMART v2 letters in cruds order.
func (p Perm) String() string {
	var b strings.Builder
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	return b.String()
}

// Context is the context a scope applies in; the order is that of breadth,
// so the widest of several grants is the greatest.
type Context uint8

// The scope contexts. None grants nothing.
const (
	None Context = iota
	// PatientContext (patient/): only resources in the compartment of the
	// token's patient.
	PatientContext
	// UserContext (user/): whatever the user may see; this server keeps no
	// per-user access rules, so it is as wide as system/.
	UserContext
	// SystemContext (system/): a backend service, no user.
	SystemContext
)

func (c Context) String() string {
	switch c {
	case PatientContext:
		return "patient"
	case UserContext:
		return "user"
	case SystemContext:
		return "system"
	}
	return "none"
}

// Scope is one parsed SMART resource scope.
type Scope struct {
	Context Context
	Type    string // a resource type, or * for every type
	Perm    Perm
}

// ParseScope parses a SMART v2 (patient/Observation.rs) or v1
// (user/*.read, system/Patient.write, patient/*.*) resource scope. ok is
// false for any other scope (openid, launch/patient, ...), and for a v2
// scope with granular query parameters (patient/Observation.rs?category=x):
// this server cannot narrow a grant by a search, so such a scope grants
// nothing rather than more than it says.
func ParseScope(s string) (Scope, bool) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, false
	}
	var sc Scope
	switch ctx {
	case "patient":
		sc.Context = PatientContext
	case "user":
		sc.Context = UserContext
	case "system":
		sc.Context = SystemContext
	default:
		return Scope{}, false
	}
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok || typ == "" || strings.ContainsAny(perm, "?") {
		return Scope{}, false
	}
	sc.Type = typ
	switch perm {
	case "read": // v1: read and search
		sc.Perm = Read | Search
	case "write": // v1: create, update, delete
		sc.Perm = Create | Update | Delete
	case "*":
		sc.Perm = Create | Read | Update | Delete | Search
	default:
		if sc.Perm, ok = ParsePerm(perm); !ok {
			return Scope{}, false
		}
	}
	return sc, true
}

// Grant is the widest context in which the principal may do every
// permission of perm on a type: None (refused), PatientContext (only within
// the compartment of Principal.Patient), UserContext or SystemContext. The
// permissions may come from several scopes (patient/Observation.r and
// patient/Observation.s grant rs); the narrowest of them bounds the grant.
func (p *Principal) Grant(perm Perm, typ string) Context {
	if p.Anonymous {
		return SystemContext
	}
	var scopes []Scope
	for _, s := range p.Scopes {
		sc, ok := ParseScope(s)
		if !ok || (sc.Type != "*" && sc.Type != typ) || (sc.Context == PatientContext && p.Patient == "") {
			continue // a patient/ scope without a patient in context grants nothing
		}
		scopes = append(scopes, sc)
	}
	grant := SystemContext
	for bit := Create; bit <= Search; bit <<= 1 {
		if perm&bit == 0 {
			continue
		}
		best := None
		for _, sc := range scopes {
			if sc.Perm&bit != 0 && sc.Context > best {
				best = sc.Context
			}
		}
		grant = min(grant, best)
	}
	if perm == 0 {
		return None
	}
	return grant
}

// Lacking returns the permissions of perm the principal holds on typ in
// no context, for naming what a refused request needs.
func (p *Principal) Lacking(perm Perm, typ string) Perm {
	var out Perm
	for bit := Create; bit <= Search; bit <<= 1 {
		if perm&bit != 0 && p.Grant(bit, typ) == None {
			out |= bit
		}
	}
	return out
}

// Missing names the scope that would grant perm on typ, for a 403's
// diagnostics: in the context wanted, or as any of them.
func Missing(ctx Context, perm Perm, typ string) string {
	prefix := "patient|user|system"
	if ctx != None {
		prefix = ctx.String()
	}
	return prefix + "/" + typ + "." + perm.String()
}
