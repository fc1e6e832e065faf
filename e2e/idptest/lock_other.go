//go:build !unix

package idptest

import "time"

// lockFile does not lock outside unix: run test packages that start the IdP one at a
// time there (go test -p 1) the first time node_modules is installed.
func lockFile(string, time.Duration) (func(), error) { return func() {}, nil }
