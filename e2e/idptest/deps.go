package idptest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// NPMTimeout bounds `npm ci`.
var NPMTimeout = 5 * time.Minute

var (
	depsOnce sync.Once
	depsErr  error
)

// Dir is the Node project holding server.mjs and client.mjs: $IDP_DIR, else e2e/idp next
// to this package's source, else an idp/ folder beside a parent of the working directory.
func Dir() (string, error) {
	if d := os.Getenv("IDP_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		d := filepath.Join(filepath.Dir(file), "..", "idp")
		if fileExists(filepath.Join(d, "server.mjs")) {
			return filepath.Clean(d), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		for _, c := range []string{filepath.Join(d, "idp"), filepath.Join(d, "e2e", "idp")} {
			if fileExists(filepath.Join(c, "server.mjs")) {
				return c, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", errors.New("idptest: cannot find the e2e/idp Node project (set IDP_DIR)")
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// stampName, inside node_modules, records the hash of package.json and package-lock.json
// that the last successful `npm ci` installed.
const stampName = ".idptest-installed"

func depsHash(dir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func depsFresh(dir, want string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", stampName))
	return err == nil && strings.TrimSpace(string(b)) == want
}

// EnsureDeps runs `npm ci` in Dir() unless node_modules already holds what
// package-lock.json pins; once per test binary, and under a file lock so that test
// binaries running in parallel (go test ./...) do not install over each other.
func EnsureDeps(t testing.TB) string {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	depsOnce.Do(func() { depsErr = ensureDeps(t, dir) })
	if depsErr != nil {
		t.Fatalf("idptest: %v", depsErr)
	}
	return dir
}

func ensureDeps(t testing.TB, dir string) error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH: the test identity provider is a Node.js program (Node >= 20.19)", tool)
		}
	}
	want, err := depsHash(dir)
	if err != nil {
		return err
	}
	if depsFresh(dir, want) {
		return nil
	}
	unlock, err := lockFile(filepath.Join(dir, ".npm-ci.lock"), NPMTimeout)
	if err != nil {
		return err
	}
	defer unlock()
	if depsFresh(dir, want) { // another test binary installed them while we waited
		return nil
	}
	t.Logf("idptest: npm ci in %s (node_modules missing or stale) ...", dir)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), NPMTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s: %v (after %s)\n%s", dir, err, time.Since(start).Round(time.Millisecond), out)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", stampName), []byte(want+"\n"), 0o644); err != nil {
		return err
	}
	t.Logf("idptest: npm ci done in %s", time.Since(start).Round(time.Millisecond))
	return nil
}
