package auth

// SMART is what this server advertises of the authorization server that
// issues its tokens: in /.well-known/smart-configuration and in the
// CapabilityStatement's rest.security.
type SMART struct {
	Issuer string // the first configured issuer
	// JWKSURI is the issuer's key set when configured; empty: left out
	// (clients find it in the issuer's own metadata).
	JWKSURI string
	// AuthorizeURL is the authorization endpoint; empty: only the
	// client credentials grant (SMART Backend Services) is advertised.
	AuthorizeURL string
	TokenURL     string
}

// SMARTConfiguration is the SMART App Launch 2.x discovery document
// (fields in the order of the specification's table).
type SMARTConfiguration struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri,omitempty"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	Capabilities                      []string `json:"capabilities"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

// Configuration is the discovery document of s. The scopes are the
// forms this server understands: SMART v2 (cruds) and v1 (read/write) at
// patient, user and system level, and the launch context ones.
func (s SMART) Configuration() SMARTConfiguration {
	c := SMARTConfiguration{
		Issuer:                            s.Issuer,
		JWKSURI:                           s.JWKSURI,
		GrantTypesSupported:               []string{"client_credentials"},
		TokenEndpoint:                     s.TokenURL,
		TokenEndpointAuthMethodsSupported: []string{"private_key_jwt"},
		ScopesSupported: []string{
			"system/*.cruds", "system/*.read", "system/*.write",
			"user/*.cruds", "user/*.read", "user/*.write",
			"patient/*.cruds", "patient/*.read", "patient/*.write",
		},
		ResponseTypesSupported:        []string{}, // no authorization endpoint: no response type
		Capabilities:                  []string{"client-confidential-asymmetric", "permission-v1", "permission-v2", "permission-patient", "permission-user"},
		CodeChallengeMethodsSupported: []string{"S256"},
	}
	if s.AuthorizeURL != "" {
		c.AuthorizationEndpoint = s.AuthorizeURL
		c.GrantTypesSupported = []string{"authorization_code", "client_credentials"}
		c.ScopesSupported = append([]string{"openid", "fhirUser", "launch/patient", "offline_access"}, c.ScopesSupported...)
		c.ResponseTypesSupported = []string{"code"}
		c.Capabilities = append([]string{"launch-standalone", "context-standalone-patient"}, c.Capabilities...)
	}
	return c
}
