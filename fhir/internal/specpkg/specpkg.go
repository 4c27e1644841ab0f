// Package specpkg reads files of the npm package hl7.fhir.r4.examples@4.0.1
// (HL7 International, CC0-1.0), the published R4 (4.0.1) definitions, for
// the generators under fhir/internal. It runs `npm pack` into a temporary
// directory and checks the tarball against its pinned sha512 integrity, so
// generated output is reproducible. Generators only: the server never
// reads the package.
package specpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

const (
	// Name is the package and version read.
	Name      = "hl7.fhir.r4.examples@4.0.1"
	tarball   = "hl7.fhir.r4.examples-4.0.1.tgz"
	integrity = "sha512-DXBdIZOeQaSKIgCU7w6HOC7sw/6BzylmipLkBW4f//pT+Bc94x+8LImwTdvaNThPJoOzpBzvxAzNqjeu3X/zLw=="
)

// Read returns the contents of the package files that keep reports true
// for (tar names such as "package/Bundle-searchParams.json"), by name.
func Read(keep func(name string) bool) (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "specpkg")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("npm", "pack", "--silent", Name, "--pack-destination", dir)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("npm pack %s: %w", Name, err)
	}
	tgz, err := os.ReadFile(filepath.Join(dir, tarball))
	if err != nil {
		return nil, err
	}
	sum := sha512.Sum512(tgz)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != integrity {
		return nil, fmt.Errorf("%s: integrity %s, want %s", tarball, got, integrity)
	}
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if keep(h.Name) {
			if out[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		}
	}
}
