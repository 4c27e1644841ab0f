//go:build !unix

package embedded

import "os"

// lockDir does not lock where flock is missing (Windows): running two
// processes on one data directory there is the operator's to avoid.
func lockDir(string) (*os.File, error) { return nil, nil }
