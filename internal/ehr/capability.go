package ehr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
)

// Capability is what an EHR accepts for one resource type.
type Capability struct {
	Read              bool `json:"read"`
	Create            bool `json:"create"`
	Update            bool `json:"update"`
	Delete            bool `json:"delete"`
	SearchType        bool `json:"searchType"`
	ConditionalCreate bool `json:"conditionalCreate"`
	ConditionalUpdate bool `json:"conditionalUpdate"`
	// SearchParams are the search parameter names it lists, sorted; the
	// sync engine looks for "identifier" to find what it created before a
	// lost response (mapping spec §15.3).
	SearchParams []string `json:"searchParams,omitempty"`
}

// Searches reports whether the type lists the search parameter name.
func (c Capability) Searches(name string) bool {
	_, ok := slices.BinarySearch(c.SearchParams, name)
	return ok
}

// Profile is the capability of an EHR per resource type; a type it does
// not list has the zero Capability (nothing accepted).
type Profile map[string]Capability

// Merge applies the configured overrides to a discovered profile and
// returns the result; p is not changed. A type only the overrides name
// starts from nothing accepted.
func (p Profile) Merge(overrides map[string]Override) Profile {
	out := make(Profile, len(p)+len(overrides))
	for t, c := range p {
		out[t] = c
	}
	for t, o := range overrides {
		c := out[t]
		for _, f := range []struct {
			set *bool
			dst *bool
		}{
			{o.Create, &c.Create}, {o.Update, &c.Update}, {o.Delete, &c.Delete}, {o.SearchType, &c.SearchType},
			{o.ConditionalCreate, &c.ConditionalCreate}, {o.ConditionalUpdate, &c.ConditionalUpdate},
		} {
			if f.set != nil {
				*f.dst = *f.set
			}
		}
		out[t] = c
	}
	return out
}

// maxCapabilityStatement bounds the CapabilityStatement read (Epic's is
// about 1 MB).
const maxCapabilityStatement = 16 << 20

// capabilityStatement is the part of an R4 CapabilityStatement discovery
// reads.
type capabilityStatement struct {
	ResourceType string `json:"resourceType"`
	Rest         []struct {
		Mode     string `json:"mode"`
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			ConditionalCreate bool `json:"conditionalCreate"`
			ConditionalUpdate bool `json:"conditionalUpdate"`
			SearchParam       []struct {
				Name string `json:"name"`
			} `json:"searchParam"`
		} `json:"resource"`
	} `json:"rest"`
}

// Discover reads [base]/metadata with client (which authenticates, see
// NewClient) and returns the profile of the server's rest entries.
func Discover(ctx context.Context, client *http.Client, baseURL string) (Profile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metadata", nil)
	if err != nil {
		return nil, fmt.Errorf("capability discovery: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("capability discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("capability discovery: GET %s/metadata: %s", baseURL, resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/fhir+json" && mt != "application/json" {
		return nil, fmt.Errorf("capability discovery: GET %s/metadata answered %q, not FHIR JSON", baseURL, mt)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCapabilityStatement+1))
	if err != nil {
		return nil, fmt.Errorf("capability discovery: %w", err)
	}
	if len(data) > maxCapabilityStatement {
		return nil, fmt.Errorf("capability discovery: the CapabilityStatement is over %d bytes", maxCapabilityStatement)
	}
	return ParseCapabilityStatement(data)
}

// ParseCapabilityStatement reads the profile from an R4
// CapabilityStatement's server rest entries (a client entry describes
// what the EHR calls, not what it accepts).
func ParseCapabilityStatement(data []byte) (Profile, error) {
	var cs capabilityStatement
	if err := json.Unmarshal(data, &cs); err != nil {
		return nil, fmt.Errorf("capability discovery: not a CapabilityStatement: %w", err)
	}
	if cs.ResourceType != "CapabilityStatement" {
		return nil, fmt.Errorf("capability discovery: resourceType %q, not CapabilityStatement", cs.ResourceType)
	}
	p := Profile{}
	for _, rest := range cs.Rest {
		if rest.Mode != "server" {
			continue
		}
		for _, r := range rest.Resource {
			c := p[r.Type]
			for _, i := range r.Interaction {
				switch i.Code {
				case "read":
					c.Read = true
				case "create":
					c.Create = true
				case "update":
					c.Update = true
				case "delete":
					c.Delete = true
				case "search-type":
					c.SearchType = true
				}
			}
			c.ConditionalCreate = c.ConditionalCreate || r.ConditionalCreate
			c.ConditionalUpdate = c.ConditionalUpdate || r.ConditionalUpdate
			for _, sp := range r.SearchParam {
				if !slices.Contains(c.SearchParams, sp.Name) {
					c.SearchParams = append(c.SearchParams, sp.Name)
				}
			}
			slices.Sort(c.SearchParams)
			p[r.Type] = c
		}
	}
	return p, nil
}
