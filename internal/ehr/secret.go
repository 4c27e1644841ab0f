package ehr

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
)

// Redacted is what a Secret shows wherever it is printed or marshalled.
const Redacted = "[redacted]"

// Secret is a credential (a bearer token, a private key) read from the
// environment or a file when the configuration loads. Only Reveal gives
// its value: fmt (every verb), JSON, text and slog output show Redacted.
type Secret struct {
	// v is a pointer so that even fmt's reflection through an unexported
	// field (which skips Format) prints only an address.
	v *string
}

// Reveal is the secret's value, for the one place that sends it.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret was never set.
func (s Secret) IsZero() bool { return s.v == nil }

// String redacts.
func (s Secret) String() string { return Redacted }

// GoString redacts.
func (s Secret) GoString() string { return "ehr.Secret(" + Redacted + ")" }

// Format redacts for every verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(Redacted))
}

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// MarshalText redacts (YAML and other text encoders).
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue redacts in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Sources are where secret references are resolved; the zero value
// panics on use, DefaultSources reads the process environment and files.
type Sources struct {
	LookupEnv func(name string) (string, bool)
	ReadFile  func(path string) ([]byte, error)
}

// errInline is the error for a value that is not a reference; it never
// repeats the value, which may be a pasted secret.
var errInline = errors.New("must be a reference, env:NAME or file:/absolute/path (secrets are not written into the configuration)")

// resolve reads the secret a reference names: `env:NAME` (the variable
// must be set and not empty) or `file:/path` (absolute; surrounding white
// space, such as a final newline, is trimmed).
func (src Sources) resolve(ref string) (Secret, error) {
	kind, name, ok := strings.Cut(ref, ":")
	if !ok || name == "" {
		return Secret{}, errInline
	}
	var v string
	switch kind {
	case "env":
		val, set := src.LookupEnv(name)
		if !set {
			return Secret{}, fmt.Errorf("environment variable %s is not set", name)
		}
		v = val
	case "file":
		if !filepath.IsAbs(name) {
			return Secret{}, fmt.Errorf("file %q: the path must be absolute", name)
		}
		data, err := src.ReadFile(name)
		if err != nil {
			// The os errors name the path and the reason, not content.
			return Secret{}, err
		}
		v = string(data)
	default:
		return Secret{}, errInline
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return Secret{}, fmt.Errorf("%s is empty", ref)
	}
	return Secret{v: &v}, nil
}
