// Package smart is the client side of SMART Backend Services (SMART App
// Launch 2.x): it signs the client assertion JWT (private_key_jwt, RS384 or
// ES384), exchanges it for an access token with the client_credentials
// grant and caches the token until shortly before it expires.
//
// Nothing here knows about configuration files; package ehr builds the
// inputs. Private keys live in Key, which never prints or marshals its
// material.
package smart

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
)

// Algorithm is a JWS algorithm SMART Backend Services clients must
// support.
type Algorithm string

// The two algorithms of SMART App Launch 2.x backend services.
const (
	RS384 Algorithm = "RS384"
	ES384 Algorithm = "ES384"
)

// minRSABits: RSA keys below 2048 bits are refused (NIST SP 800-131A).
const minRSABits = 2048

// Key is a private signing key with its algorithm and key id (the JWS
// `kid`, which the EHR looks up in the registered JWKS). Its formatting and
// marshalling redact the key: only the algorithm and key id show.
type Key struct {
	// m is a pointer so that even fmt's reflection through an unexported
	// field (which skips Format) prints only an address.
	m *keyMaterial
}

type keyMaterial struct {
	alg    Algorithm
	kid    string
	rsa    *rsa.PrivateKey
	ecdsa  *ecdsa.PrivateKey
	public crypto.PublicKey
}

// ParseKey reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC) for
// alg: RS384 needs an RSA key of at least 2048 bits, ES384 a P-384 key.
// Errors describe the problem, never the key.
func ParseKey(pemData []byte, alg Algorithm, kid string) (Key, error) {
	if kid == "" {
		return Key{}, errors.New("key id is empty")
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		return Key{}, errors.New("no PEM block found")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return Key{}, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		// The x509 errors name the structure that failed, not its bytes.
		return Key{}, fmt.Errorf("cannot parse the %s: %w", block.Type, err)
	}
	m := &keyMaterial{alg: alg, kid: kid}
	switch alg {
	case RS384:
		k, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return Key{}, fmt.Errorf("RS384 needs an RSA key, got %s", keyKind(parsed))
		}
		if k.N.BitLen() < minRSABits {
			return Key{}, fmt.Errorf("RSA key has %d bits, at least %d are needed", k.N.BitLen(), minRSABits)
		}
		m.rsa, m.public = k, &k.PublicKey
	case ES384:
		k, ok := parsed.(*ecdsa.PrivateKey)
		if !ok {
			return Key{}, fmt.Errorf("ES384 needs an EC P-384 key, got %s", keyKind(parsed))
		}
		if k.Curve != elliptic.P384() {
			return Key{}, fmt.Errorf("ES384 needs an EC P-384 key, got curve %s", k.Curve.Params().Name)
		}
		m.ecdsa, m.public = k, &k.PublicKey
	default:
		return Key{}, fmt.Errorf("algorithm %q is not RS384 or ES384", alg)
	}
	return Key{m: m}, nil
}

func keyKind(k any) string {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return "an RSA key"
	case *ecdsa.PrivateKey:
		return "an EC key on " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("a %T", k)
	}
}

// Algorithm is the JWS alg the key signs with.
func (k Key) Algorithm() Algorithm {
	if k.m == nil {
		return ""
	}
	return k.m.alg
}

// KeyID is the JWS kid.
func (k Key) KeyID() string {
	if k.m == nil {
		return ""
	}
	return k.m.kid
}

// Public is the public half (for JWKS publication and tests).
func (k Key) Public() crypto.PublicKey {
	if k.m == nil {
		return nil
	}
	return k.m.public
}

// sign returns the JWS signature of signingInput: PKCS #1 v1.5 for RS384,
// the fixed-width r||s form of RFC 7518 §3.4 for ES384 (not ASN.1).
func (k Key) sign(signingInput []byte) ([]byte, error) {
	if k.m == nil {
		return nil, errors.New("no signing key")
	}
	digest := sha512.Sum384(signingInput)
	switch k.m.alg {
	case RS384:
		return rsa.SignPKCS1v15(rand.Reader, k.m.rsa, crypto.SHA384, digest[:])
	case ES384:
		r, s, err := ecdsa.Sign(rand.Reader, k.m.ecdsa, digest[:])
		if err != nil {
			return nil, err
		}
		const size = 48 // P-384 order bytes
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig, nil
	}
	return nil, fmt.Errorf("algorithm %q is not RS384 or ES384", k.m.alg)
}

func (k Key) redacted() string {
	return fmt.Sprintf("smart.Key{alg: %q, kid: %q, key: [redacted]}", k.Algorithm(), k.KeyID())
}

// String redacts the key material.
func (k Key) String() string { return k.redacted() }

// GoString redacts the key material.
func (k Key) GoString() string { return k.redacted() }

// Format redacts the key material for every verb (%v, %+v, %#v, %s, %x…).
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.redacted())) }

// MarshalJSON redacts the key material.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Alg Algorithm `json:"alg"`
		Kid string    `json:"kid"`
		Key string    `json:"key"`
	}{k.Algorithm(), k.KeyID(), "[redacted]"})
}

// LogValue redacts the key material in slog output.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.redacted()) }
