package smarttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// NewKey generates a private key for alg ("RS384": RSA 2048, "ES384":
// P-384) and returns it as PKCS #8 PEM with its public half.
func NewKey(t testing.TB, alg string) ([]byte, crypto.PublicKey) {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS384":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		t.Fatalf("smarttest.NewKey: unknown alg %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return EncodePEM(t, priv), priv.Public()
}

// EncodePEM is a private key as PKCS #8 PEM.
func EncodePEM(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
