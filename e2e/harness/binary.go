package harness

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// BuildOutput receives the progress lines of build-traefik.sh (stderr). Defaults to
// os.Stderr; set it before the first TraefikBinaryPath call to redirect.
var BuildOutput io.Writer = os.Stderr

// TraefikBinaryPath returns the Traefik binary to run: $TRAEFIK_BIN when set, otherwise
// whatever e2e/build-traefik.sh prints on its last line (it builds on first use and is
// instant once cached). The result is computed once per process. Concurrent builds from
// several processes are serialised with a lock file next to the cache.
func TraefikBinaryPath() (string, error) {
	binOnce.Do(func() { binPath, binErr = findTraefik() })
	return binPath, binErr
}

// TraefikBinary is TraefikBinaryPath for tests: it fails the test (never skips) when no
// binary can be had.
func TraefikBinary(t testing.TB) string {
	t.Helper()
	p, err := TraefikBinaryPath()
	if err != nil {
		t.Fatalf("traefik binary: %v", err)
	}
	return p
}

func findTraefik() (string, error) {
	if p := os.Getenv("TRAEFIK_BIN"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("TRAEFIK_BIN=%s is not a file", p)
		}
		return filepath.Abs(p)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "e2e", "build-traefik.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("build script: %w", err)
	}

	cache := os.Getenv("TOKENREVOKE_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, "traefik-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	var stdout bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = BuildOutput
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	p := strings.TrimSpace(lines[len(lines)-1])
	if p == "" {
		return "", fmt.Errorf("%s printed no binary path", script)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("%s printed %q, which is not a file", script, p)
	}
	return p, nil
}
