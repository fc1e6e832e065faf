package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk print its summary as one JSON line (latencies in microseconds),
// which is more precise than its rounded text output. Errors.status counts responses
// outside 2xx/3xx: the 401s of the revoked case end up there.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"durationUs":%d,"bytes":%d,' ..
    '"errConnect":%d,"errRead":%d,"errWrite":%d,"errStatus":%d,"errTimeout":%d,' ..
    '"latMinUs":%d,"latMeanUs":%.2f,"latMaxUs":%d,"latStdevUs":%.2f,' ..
    '"p50Us":%d,"p90Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
`

// wrkResult is the summary of one wrk run.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUs int64   `json:"durationUs"`
	Bytes      int64   `json:"bytes"`
	ErrConnect int64   `json:"errConnect"`
	ErrRead    int64   `json:"errRead"`
	ErrWrite   int64   `json:"errWrite"`
	ErrStatus  int64   `json:"errStatus"`
	ErrTimeout int64   `json:"errTimeout"`
	LatMinUs   int64   `json:"latMinUs"`
	LatMeanUs  float64 `json:"latMeanUs"`
	LatMaxUs   int64   `json:"latMaxUs"`
	LatStdevUs float64 `json:"latStdevUs"`
	P50Us      int64   `json:"p50Us"`
	P90Us      int64   `json:"p90Us"`
	P99Us      int64   `json:"p99Us"`
	P999Us     int64   `json:"p999Us"`
	// CPU time wrk itself used (user + system), seconds.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// RPS is requests per second over the run.
func (r wrkResult) RPS() float64 {
	if r.DurationUs <= 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUs) / 1e6)
}

// SocketErrors counts connect, read, write and timeout errors.
func (r wrkResult) SocketErrors() int64 {
	return r.ErrConnect + r.ErrRead + r.ErrWrite + r.ErrTimeout
}

// parseWrkOutput finds the WRKJSON line the script prints.
func parseWrkOutput(out []byte) (wrkResult, error) {
	var r wrkResult
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "WRKJSON "); ok {
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return r, fmt.Errorf("wrk summary %q: %w", rest, err)
			}
			return r, nil
		}
	}
	return r, errors.New("wrk printed no summary line")
}

// loadGen runs wrk with fixed threads and connections.
type loadGen struct {
	bin     string
	script  string
	threads int
	conns   int
}

func newLoadGen(bin, dir string, threads, conns int) (*loadGen, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("wrk not found (%v); install it with: apt-get install -y wrk", err)
	}
	script := filepath.Join(dir, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	return &loadGen{bin: path, script: script, threads: threads, conns: conns}, nil
}

// version is the first line wrk prints for -v.
func (g *loadGen) version() string {
	out, _ := exec.Command(g.bin, "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// commandLine is the wrk invocation for url, as it would be typed in a shell.
func (g *loadGen) commandLine(url, token string, d time.Duration) string {
	return fmt.Sprintf("wrk -t%d -c%d -d%s --timeout 2s -s summary.lua -H 'Authorization: Bearer <token>' %s",
		g.threads, g.conns, durationArg(d), url)
}

func durationArg(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}

// run executes one wrk run; it is killed if it overruns its duration by 30 s or the
// context ends.
func (g *loadGen) run(ctx context.Context, url, token string, d time.Duration) (wrkResult, error) {
	if d < time.Second {
		d = time.Second // wrk's smallest useful duration
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := []string{
		"-t" + strconv.Itoa(g.threads), "-c" + strconv.Itoa(g.conns), "-d" + durationArg(d),
		"--timeout", "2s", "-s", g.script,
	}
	if token != "" {
		args = append(args, "-H", "Authorization: Bearer "+token)
	}
	args = append(args, url)
	cmd := exec.CommandContext(ctx, g.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v: %s", url, err, strings.TrimSpace(stderr.String()))
	}
	r, err := parseWrkOutput(stdout.Bytes())
	if ps := cmd.ProcessState; ps != nil {
		r.CPUSeconds = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	return r, err
}
