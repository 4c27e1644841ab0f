package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/kapfhir/kapfhir/internal/auth"
	"github.com/kapfhir/kapfhir/internal/fault"
)

// smartConfigRoute is SMART App Launch discovery, relative to the FHIR
// base; public, like the CapabilityStatement.
const smartConfigRoute = "/fhir/.well-known/smart-configuration"

// smartConfiguration serves the SMART discovery document. Without
// authentication there is no authorization server to describe: 404.
func (a *api) smartConfiguration(c *gin.Context) error {
	if a.SMART == nil {
		return fault.New(fault.NotFound, "", "authentication is off on this server (no KAPFHIR_AUTH_ISSUERS): there is no authorization server to describe")
	}
	b, err := json.Marshal(a.SMART.Configuration())
	if err != nil {
		return fault.Wrap(err, "smart-configuration")
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", pretty(c, b))
	return nil
}

// The CapabilityStatement's rest.security (FHIR element order: extension,
// service, description), as SMART App Launch 2.x asks: the SMART-on-FHIR
// service and the oauth-uris extension.
type capSecurity struct {
	Extension   []capExtension       `json:"extension"`
	Service     []capCodeableConcept `json:"service"`
	Description string               `json:"description"`
}

type capExtension struct {
	URL       string         `json:"url"`
	Extension []capExtension `json:"extension,omitempty"`
	ValueURI  string         `json:"valueUri,omitempty"`
}

type capCodeableConcept struct {
	Coding []capCoding `json:"coding"`
	Text   string      `json:"text,omitempty"`
}

type capCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

func restSecurity(s auth.SMART) capSecurity {
	uris := []capExtension{{URL: "token", ValueURI: s.TokenURL}}
	if s.AuthorizeURL != "" {
		uris = append([]capExtension{{URL: "authorize", ValueURI: s.AuthorizeURL}}, uris...)
	}
	return capSecurity{
		Extension: []capExtension{{URL: "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", Extension: uris}},
		Service: []capCodeableConcept{{
			Coding: []capCoding{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR"}},
			Text:   "OAuth2 bearer tokens (SMART App Launch)",
		}},
		Description: "Every interaction but metadata and .well-known/smart-configuration needs an OAuth2 bearer token (a JWT) from the issuer " +
			s.Issuer + "; see .well-known/smart-configuration.",
	}
}
