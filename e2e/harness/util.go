package harness

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ModulePath is the plugin's Go module path.
const ModulePath = "github.com/tokenrevoke/tokenrevoke"

// FreePort asks the kernel for a free TCP port on 127.0.0.1. The port is released
// before returning, so another process could grab it in between; in practice that
// window is tiny.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortFree reports whether 127.0.0.1:port can be bound right now.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// RepoRoot finds the plugin repository: $TOKENREVOKE_ROOT if set, else the nearest
// directory at or above the working directory whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	if r := os.Getenv("TOKENREVOKE_ROOT"); r != "" {
		return filepath.Abs(r)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePathOf(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod for " + ModulePath + " at or above the working directory (set TOKENREVOKE_ROOT)")
		}
		dir = parent
	}
}

func modulePathOf(goMod string) string {
	f, err := os.Open(goMod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// stopPolling wraps an error that makes poll give up at once.
type stopPolling struct{ err error }

func (s stopPolling) Error() string { return s.err.Error() }

// poll calls f every interval until it returns nil or the timeout passes; it returns
// the last error on timeout, or at once when f returns a stopPolling.
func poll(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop stopPolling
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
