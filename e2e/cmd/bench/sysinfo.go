package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

type machineInfo struct {
	CPUs          int    `json:"cpus"`
	CPUModel      string `json:"cpuModel"`
	MemTotalBytes int64  `json:"memTotalBytes"`
	Kernel        string `json:"kernel"`
}

type versionInfo struct {
	Traefik       string `json:"traefik"`
	TraefikGo     string `json:"traefikGo"`
	Yaegi         string `json:"yaegi"`
	NATSServer    string `json:"natsServer"`
	NatsGo        string `json:"natsGo"`
	Go            string `json:"go"`
	Wrk           string `json:"wrk"`
	PluginCommit  string `json:"pluginCommit"`
	PluginDirty   bool   `json:"pluginWorkTreeDirty"`
	TraefikBinary string `json:"traefikBinary"`
}

func readMachine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if kb, err := procStatusKBFile("/proc/meminfo", "MemTotal"); err == nil {
		m.MemTotalBytes = kb["MemTotal"] * 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procStatusKBFile reads "Name: 123 kB" lines of a /proc file.
func procStatusKBFile(path string, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64)
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if name == f {
				if v := strings.Fields(rest); len(v) > 0 {
					if n, err := strconv.ParseInt(v[0], 10, 64); err == nil {
						out[name] = n
					}
				}
			}
		}
	}
	return out, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// exportRevision writes the repository's tree at rev into a new directory under
// parent (git archive), so that a benchmark measures exactly that commit whatever the
// work tree holds. It returns the directory and the full commit hash.
func exportRevision(ctx context.Context, root, rev, parent string) (string, string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("git rev-parse %s: %w", rev, err)
	}
	commit := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp(parent, "plugin-")
	if err != nil {
		return "", "", err
	}
	tarPath := dir + ".tar"
	defer os.Remove(tarPath)
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", "-o", tarPath, commit).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("git archive %s: %v: %s", rev, err, out)
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", tarPath, "-C", dir).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("tar: %v: %s", err, out)
	}
	return dir, commit, nil
}

func (r *results) fillVersions(traefikBin string) {
	v := &r.Versions
	v.TraefikBinary = traefikBin
	v.Go = runtime.Version()
	v.NATSServer = server.VERSION
	if bi, err := buildinfo.ReadFile(traefikBin); err == nil {
		v.TraefikGo = bi.GoVersion
		mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
		for _, m := range mods {
			switch m.Path {
			case "github.com/traefik/traefik/v3":
				v.Traefik = m.Version
			case "github.com/traefik/yaegi":
				v.Yaegi = m.Version
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/nats-io/nats.go" {
				v.NatsGo = m.Version
			}
		}
	}
	if root, err := harness.RepoRoot(); err == nil {
		if out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
			v.PluginCommit = strings.TrimSpace(string(out))
		}
		// Only the plugin's own sources matter for what Traefik runs.
		out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", ".", ":!e2e", ":!bench-results", ":!BENCHMARKS.md", ":!scripts", ":!Makefile").Output()
		if err == nil {
			v.PluginDirty = len(strings.TrimSpace(string(out))) > 0
		}
	}
}

// pprofTop renders a CPU profile as text, by cumulative time (go tool pprof -top -cum).
func pprofTop(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=60", path).Output()
	return string(out), err
}
