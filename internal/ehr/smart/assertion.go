package smart

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"time"
)

// AssertionLifetime is how far ahead the client assertion expires. SMART
// allows at most five minutes; one minute less leaves room for an EHR
// clock that runs behind ours.
const AssertionLifetime = 4 * time.Minute

// Assertion is the JWT that authenticates the client at the token
// endpoint (SMART App Launch 2.x, "Authenticating to the Token endpoint").
type Assertion struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	Expires  int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
	ID       string `json:"jti"`
}

// NewAssertion is the claims for clientID at tokenURL, issued at now:
// iss = sub = client id, aud = token URL, a random 128-bit jti.
func NewAssertion(clientID, tokenURL string, now time.Time) (Assertion, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Assertion{}, err
	}
	return Assertion{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: tokenURL,
		Expires:  now.Add(AssertionLifetime).Unix(),
		IssuedAt: now.Unix(),
		ID:       hex.EncodeToString(id[:]),
	}, nil
}

type jwsHeader struct {
	Alg Algorithm `json:"alg"`
	Kid string    `json:"kid"`
	Typ string    `json:"typ"`
}

// Sign returns the compact JWS of the claims, signed with key.
func (a Assertion) Sign(key Key) (string, error) {
	header, err := json.Marshal(jwsHeader{Alg: key.Algorithm(), Kid: key.KeyID(), Typ: "JWT"})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sig, err := key.sign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + enc.EncodeToString(sig), nil
}
