package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Module paths and plugin names as mounted in Traefik's static configuration.
const (
	PassthroughModule = "github.com/tokenrevoke/passthrough"
	PluginName        = "tokenrevoke" // experimental.localPlugins key of the plugin
	PassthroughName   = "passthrough" // experimental.localPlugins key of the floor plugin
	GenerationHeader  = "X-Harness-Generation"
)

// Route prefixes of the optional routers (see Dynamic).
const (
	PlainPrefix = "/plain"
	PassPrefix  = "/pass"
	ProbePath   = ProbePrefix + "probe"
)

// Dynamic is the dynamic (file provider) configuration the harness writes.
//
// Routers, all on the "web" entry point and all forwarding to BackendURL:
//   - "main": PathPrefix(`/`), with the tokenrevoke middleware "revoke" when Plugin is
//     not nil;
//   - "probe": PathPrefix(`/__harness/`), with "revoke" too plus a headers middleware
//     that stamps X-Harness-Generation, so the harness can tell when a rewrite is live;
//   - "plain" (PlainRoute): PathPrefix(`/plain`) without any middleware;
//   - "pass" (PassthroughRoute): PathPrefix(`/pass`) with only the pass-through plugin.
type Dynamic struct {
	BackendURL string
	// Plugin is the tokenrevoke configuration map; nil leaves the middleware out.
	Plugin map[string]any
	// Priority of the main router (0: Traefik's default). Keep it below 9000. Changing
	// it is a harmless way to force a reload.
	Priority int
	// Tag, when set, adds a headers middleware after "revoke" on the main router that
	// sets X-Harness-Tag to this value: another harmless change.
	Tag string
	// PlainRoute adds the "plain" router (no middleware), for benchmarks.
	PlainRoute bool
	// PassthroughRoute adds the "pass" router with the pass-through plugin; needs
	// TraefikOptions.Passthrough.
	PassthroughRoute bool
	// PassthroughConfig is the pass-through plugin's configuration map.
	PassthroughConfig map[string]any
	// Extra is deep-merged into the generated configuration last.
	Extra map[string]any
}

// TraefikOptions configures one Traefik process.
type TraefikOptions struct {
	// Name labels the instance in messages and its work directory (e.g. "a", "b").
	Name string
	// Dynamic is the initial dynamic configuration.
	Dynamic Dynamic
	// WebPort and AdminPort fix the ports of the "web" and "traefik" entry points;
	// 0 picks free ones.
	WebPort, AdminPort int
	// API enables api.insecure and api.debug on the "traefik" entry point (rawdata,
	// /debug/pprof, /debug/vars).
	API bool
	// Passthrough also mounts e2e/testdata/passthrough as local plugin "passthrough".
	Passthrough bool
	// NoTokenrevoke leaves the tokenrevoke plugin out of the static configuration
	// entirely (Dynamic.Plugin must then be nil): Traefik without the plugin loaded.
	NoTokenrevoke bool
	// PluginRoot is the plugin's source tree; default RepoRoot().
	PluginRoot string
	// Binary is the Traefik binary; default TraefikBinaryPath().
	Binary string
	// LogLevel defaults to DEBUG.
	LogLevel string
	// ReadyTimeout bounds the wait for readiness (default 30s).
	ReadyTimeout time.Duration
	// SkipRouteCheck waits only for /ping, not for the routers (for broken configs).
	SkipRouteCheck bool
	// ThrottleDuration is providers.providersThrottleDuration (default "100ms";
	// Traefik's own default of 2s makes reload tests slow).
	ThrottleDuration string
	// ExtraStatic is deep-merged into the static configuration last.
	ExtraStatic map[string]any
	// Env is added to the process environment.
	Env []string
	// KeepWorkDir keeps the work directory after Close (also when E2E_KEEP is set).
	KeepWorkDir bool
	// Sample, when set, runs Traefik from sample configuration files of testdata/
	// instead of the generated configuration (Dynamic, API, Passthrough, ExtraStatic
	// and the admin entry point are then unused); see SampleConfig.
	Sample *SampleConfig
}

// Traefik is a running Traefik process.
type Traefik struct {
	Name     string
	WorkDir  string
	LogPath  string
	WebURL   string // http://127.0.0.1:<web port>
	AdminURL string // http://127.0.0.1:<traefik entry point port>; "" with a Sample
	PingURL  string // AdminURL + /ping
	// StartDuration is how long the process took to become ready.
	StartDuration time.Duration

	opts        TraefikOptions
	staticPath  string
	dynamicPath string
	cmd         *exec.Cmd
	logFile     *os.File
	exited      chan struct{}
	exitErr     error
	client      *http.Client

	mu         sync.Mutex
	generation int
	dynamic    Dynamic
	closed     bool
}

// StartTraefik starts Traefik for a test. The process is stopped in t.Cleanup; when the
// test failed, the last 60 log lines are printed and the work directory is kept.
func StartTraefik(t testing.TB, opts TraefikOptions) *Traefik {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = TraefikBinary(t)
	}
	tr, err := NewTraefik(opts)
	if tr != nil {
		t.Cleanup(func() {
			failed := t.Failed()
			if failed {
				tr.KeepWorkDir()
			}
			tr.Close()
			if failed {
				t.Logf("traefik %s: last log lines (%s):\n%s", tr.Name, tr.LogPath, tr.LogTail(60))
			}
		})
	}
	if err != nil {
		t.Fatalf("start traefik %s: %v", opts.Name, err)
	}
	if tr.AdminURL == "" {
		t.Logf("traefik %s ready in %v: web %s", tr.Name, tr.StartDuration.Round(time.Millisecond), tr.WebURL)
	} else {
		t.Logf("traefik %s ready in %v: web %s, admin %s", tr.Name, tr.StartDuration.Round(time.Millisecond), tr.WebURL, tr.AdminURL)
	}
	return tr
}

// NewTraefik starts Traefik and waits until it is ready. On a readiness error it still
// returns the (running or exited) instance so that its log can be read; the caller
// must Close it either way.
func NewTraefik(opts TraefikOptions) (*Traefik, error) {
	if opts.Name == "" {
		opts.Name = "gw"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "DEBUG"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	if opts.ThrottleDuration == "" {
		opts.ThrottleDuration = "100ms"
	}
	if os.Getenv("E2E_KEEP") != "" {
		opts.KeepWorkDir = true
	}
	if opts.Binary == "" {
		p, err := TraefikBinaryPath()
		if err != nil {
			return nil, err
		}
		opts.Binary = p
	}
	if opts.PluginRoot == "" {
		r, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		opts.PluginRoot = r
	}
	var err error
	for _, p := range []*int{&opts.WebPort, &opts.AdminPort} {
		if *p == 0 {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}

	work, err := os.MkdirTemp("", "tokenrevoke-traefik-"+opts.Name+"-*")
	if err != nil {
		return nil, err
	}
	tr := &Traefik{
		Name:        opts.Name,
		WorkDir:     work,
		LogPath:     filepath.Join(work, "traefik.log"),
		WebURL:      fmt.Sprintf("http://127.0.0.1:%d", opts.WebPort),
		AdminURL:    fmt.Sprintf("http://127.0.0.1:%d", opts.AdminPort),
		opts:        opts,
		staticPath:  filepath.Join(work, "traefik.yml"),
		dynamicPath: filepath.Join(work, "dynamic", "dynamic.yml"),
		exited:      make(chan struct{}),
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	tr.PingURL = tr.AdminURL + "/ping"
	if opts.Sample != nil {
		// The sample configurations have no admin entry point.
		tr.AdminURL = ""
		tr.PingURL = ""
	}
	if err := tr.prepare(); err != nil {
		tr.cleanupDir()
		return nil, err
	}
	if err := tr.start(); err != nil {
		if tr.cmd == nil {
			tr.Close()
			return nil, err
		}
		return tr, err
	}
	return tr, nil
}

// prepare lays out the work directory: plugin sources, static and dynamic config.
func (tr *Traefik) prepare() error {
	src := filepath.Join(tr.WorkDir, "plugins-local", "src")
	if !tr.opts.NoTokenrevoke {
		if err := CopyPluginSource(tr.opts.PluginRoot, filepath.Join(src, filepath.FromSlash(ModulePath))); err != nil {
			return fmt.Errorf("copy plugin: %w", err)
		}
	}
	if tr.opts.Sample != nil {
		return tr.prepareSample()
	}
	if tr.opts.Passthrough {
		pt := filepath.Join(tr.opts.PluginRoot, "e2e", "testdata", "passthrough")
		if err := copyTree(pt, filepath.Join(src, filepath.FromSlash(PassthroughModule)), nil); err != nil {
			return fmt.Errorf("copy passthrough plugin: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(tr.dynamicPath), 0o755); err != nil {
		return err
	}
	static, err := ToYAML(tr.staticConfig())
	if err != nil {
		return err
	}
	if err := os.WriteFile(tr.staticPath, []byte(static), 0o644); err != nil {
		return err
	}
	return tr.writeDynamic(tr.opts.Dynamic)
}

func (tr *Traefik) staticConfig() map[string]any {
	plugins := map[string]any{}
	if !tr.opts.NoTokenrevoke {
		plugins[PluginName] = map[string]any{"moduleName": ModulePath}
	}
	if tr.opts.Passthrough {
		plugins[PassthroughName] = map[string]any{"moduleName": PassthroughModule}
	}
	cfg := map[string]any{
		"global": map[string]any{"checkNewVersion": false, "sendAnonymousUsage": false},
		"log":    map[string]any{"level": tr.opts.LogLevel, "noColor": true},
		"entryPoints": map[string]any{
			"web": map[string]any{
				"address": fmt.Sprintf("127.0.0.1:%d", tr.opts.WebPort),
				// Short grace period so SIGTERM ends the process quickly.
				"transport": map[string]any{"lifeCycle": map[string]any{"graceTimeOut": "1s"}},
			},
			"traefik": map[string]any{
				"address":   fmt.Sprintf("127.0.0.1:%d", tr.opts.AdminPort),
				"transport": map[string]any{"lifeCycle": map[string]any{"graceTimeOut": "1s"}},
			},
		},
		"ping": map[string]any{"entryPoint": "traefik"},
		"providers": map[string]any{
			"providersThrottleDuration": tr.opts.ThrottleDuration,
			"file":                      map[string]any{"filename": tr.dynamicPath, "watch": true},
		},
	}
	if len(plugins) > 0 {
		cfg["experimental"] = map[string]any{"localPlugins": plugins}
	}
	if tr.opts.API {
		cfg["api"] = map[string]any{"insecure": true, "debug": true, "dashboard": false}
	}
	if tr.opts.ExtraStatic != nil {
		mergeInto(cfg, tr.opts.ExtraStatic)
	}
	return cfg
}

// dynamicConfig builds the file provider document for d at the given generation.
func dynamicConfig(d Dynamic, generation int) map[string]any {
	middlewares := map[string]any{
		"harness-gen": map[string]any{"headers": map[string]any{
			"customRequestHeaders": map[string]any{GenerationHeader: strconv.Itoa(generation)},
		}},
	}
	var mainChain, probeChain []any
	if d.Plugin != nil {
		middlewares["revoke"] = map[string]any{"plugin": map[string]any{PluginName: d.Plugin}}
		mainChain = append(mainChain, "revoke")
		probeChain = append(probeChain, "revoke")
	}
	probeChain = append(probeChain, "harness-gen")
	if d.Tag != "" {
		middlewares["harness-tag"] = map[string]any{"headers": map[string]any{
			"customRequestHeaders": map[string]any{"X-Harness-Tag": d.Tag},
		}}
		mainChain = append(mainChain, "harness-tag")
	}
	web := []any{"web"}
	mainRouter := map[string]any{"entryPoints": web, "rule": "PathPrefix(`/`)", "service": "backend"}
	if len(mainChain) > 0 {
		mainRouter["middlewares"] = mainChain
	}
	if d.Priority != 0 {
		mainRouter["priority"] = d.Priority
	}
	routers := map[string]any{
		"main": mainRouter,
		"probe": map[string]any{
			"entryPoints": web, "rule": "PathPrefix(`" + ProbePrefix + "`)", "service": "backend",
			"priority": 10000, "middlewares": probeChain,
		},
	}
	if d.PlainRoute {
		routers["plain"] = map[string]any{
			"entryPoints": web, "rule": "PathPrefix(`" + PlainPrefix + "`)", "service": "backend", "priority": 9000,
		}
	}
	if d.PassthroughRoute {
		pc := d.PassthroughConfig
		if pc == nil {
			pc = map[string]any{}
		}
		middlewares["pass"] = map[string]any{"plugin": map[string]any{PassthroughName: pc}}
		routers["pass"] = map[string]any{
			"entryPoints": web, "rule": "PathPrefix(`" + PassPrefix + "`)", "service": "backend", "priority": 9000,
			"middlewares": []any{"pass"},
		}
	}
	cfg := map[string]any{"http": map[string]any{
		"routers":     routers,
		"middlewares": middlewares,
		"services": map[string]any{"backend": map[string]any{"loadBalancer": map[string]any{
			"servers": []any{map[string]any{"url": d.BackendURL}},
		}}},
	}}
	if d.Extra != nil {
		mergeInto(cfg, d.Extra)
	}
	return cfg
}

// writeDynamic bumps the generation and replaces the dynamic file atomically (write
// to a temporary name, then rename) so Traefik never reads half a file.
func (tr *Traefik) writeDynamic(d Dynamic) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	gen := tr.generation + 1
	text, err := ToYAML(dynamicConfig(d, gen))
	if err != nil {
		return err
	}
	tmp := tr.dynamicPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, tr.dynamicPath); err != nil {
		return err
	}
	tr.generation = gen
	tr.dynamic = d
	return nil
}

// WriteDynamic rewrites the dynamic configuration; Traefik's file provider picks it
// up. Use WaitReload (or Reload) to wait until it serves the new configuration.
func (tr *Traefik) WriteDynamic(d Dynamic) error { return tr.writeDynamic(d) }

// Dynamic returns the configuration last written.
func (tr *Traefik) Dynamic() Dynamic {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.dynamic
}

// Generation is the number of dynamic configurations written so far.
func (tr *Traefik) Generation() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.generation
}

// WaitReload waits until the probe router answers with the current generation, i.e.
// Traefik has rebuilt its handlers (and called the plugin's New) for the last write.
func (tr *Traefik) WaitReload(timeout time.Duration) error {
	want := strconv.Itoa(tr.Generation())
	return poll(timeout, 25*time.Millisecond, func() error {
		if err := tr.exitedErr(); err != nil {
			return err
		}
		got, err := tr.probe()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("probe sees generation %q, want %q", got, want)
		}
		return nil
	})
}

// Reload writes d and waits (up to 30s) until it is live.
func (tr *Traefik) Reload(t testing.TB, d Dynamic) {
	t.Helper()
	if err := tr.WriteDynamic(d); err != nil {
		t.Fatalf("traefik %s: write dynamic config: %v", tr.Name, err)
	}
	if err := tr.WaitReload(30 * time.Second); err != nil {
		t.Fatalf("traefik %s: reload to generation %d: %v", tr.Name, tr.Generation(), err)
	}
}

// probe returns the generation the probe router stamps on requests.
func (tr *Traefik) probe() (string, error) {
	resp, err := tr.client.Get(tr.WebURL + ProbePath)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("probe: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var echo EchoRequest
	if err := json.Unmarshal(body, &echo); err != nil {
		return "", fmt.Errorf("probe: not an echo answer: %w", err)
	}
	return echo.Headers.Get(GenerationHeader), nil
}

func (tr *Traefik) start() error {
	logFile, err := os.Create(tr.LogPath)
	if err != nil {
		return err
	}
	tr.logFile = logFile
	cmd := exec.Command(tr.opts.Binary, "--configFile="+tr.staticPath)
	cmd.Dir = tr.WorkDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), tr.opts.Env...)
	// Own process group, so a Ctrl-C in a terminal reaches only the harness, which
	// then stops Traefik in order. Pdeathsig kills Traefik if the harness process dies
	// without cleaning up (a crash, SIGKILL), so no gateway outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", tr.opts.Binary, err)
	}
	tr.cmd = cmd
	go func() {
		tr.exitErr = cmd.Wait()
		close(tr.exited)
	}()
	if err := tr.waitReady(); err != nil {
		return err
	}
	tr.StartDuration = time.Since(begin)
	return nil
}

func (tr *Traefik) exitedErr() error {
	select {
	case <-tr.exited:
		return fmt.Errorf("traefik exited: %v", tr.exitErr)
	default:
		return nil
	}
}

func (tr *Traefik) waitReady() error {
	timeout := tr.opts.ReadyTimeout
	deadline := time.Now().Add(timeout)
	if tr.opts.Sample != nil {
		path := tr.opts.Sample.ReadyPath
		err := poll(timeout, 50*time.Millisecond, func() error {
			if err := tr.exitedErr(); err != nil {
				return err
			}
			return tr.checkRoute(path)
		})
		if err != nil {
			return fmt.Errorf("%s not served after %v: %w", path, timeout, err)
		}
		return nil
	}
	err := poll(timeout, 50*time.Millisecond, func() error {
		if err := tr.exitedErr(); err != nil {
			return err
		}
		return tr.Ping()
	})
	if err != nil {
		return fmt.Errorf("ping not answering after %v: %w", timeout, err)
	}
	if tr.opts.SkipRouteCheck {
		return nil
	}
	rest := time.Until(deadline)
	if rest < time.Second {
		rest = time.Second
	}
	err = poll(rest, 50*time.Millisecond, func() error {
		if err := tr.exitedErr(); err != nil {
			return err
		}
		if err := tr.checkRoute("/"); err != nil {
			// A router that failed to build will not come back by waiting: stop early.
			for _, line := range tr.ErrorLines() {
				if strings.Contains(line, "routerName=main@") || strings.Contains(line, "routerName=probe@") {
					return stopPolling{fmt.Errorf("%w; Traefik: %s", err, line)}
				}
			}
			return err
		}
		if _, err := tr.probe(); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("router not serving: %w", err)
	}
	return nil
}

// checkRoute requires an answer other than 404 (no router) and 502 (no backend).
func (tr *Traefik) checkRoute(path string) error {
	req, err := http.NewRequest(http.MethodGet, tr.WebURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set(ProbeHeader, "ready")
	resp, err := tr.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadGateway {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// Ping checks Traefik's /ping.
func (tr *Traefik) Ping() error {
	resp, err := tr.client.Get(tr.PingURL)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// Log returns the whole log so far.
func (tr *Traefik) Log() string {
	b, _ := os.ReadFile(tr.LogPath)
	return string(b)
}

// LogContains reports whether the log contains substr.
func (tr *Traefik) LogContains(substr string) bool {
	return strings.Contains(tr.Log(), substr)
}

// LogLines returns the log lines that contain every one of the substrings.
func (tr *Traefik) LogLines(substrs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(tr.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
next:
	for sc.Scan() {
		line := sc.Text()
		for _, s := range substrs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// ErrorLines returns the log lines at level ERR, FTL or PNC (Traefik's console format),
// plus Go panic and fatal-error lines.
func (tr *Traefik) ErrorLines() []string {
	var out []string
	for _, line := range tr.LogLines() {
		if strings.Contains(line, " ERR ") || strings.Contains(line, " FTL ") || strings.Contains(line, " PNC ") ||
			strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
			out = append(out, line)
		}
	}
	return out
}

// WaitLog waits until the log contains substr.
func (tr *Traefik) WaitLog(substr string, timeout time.Duration) error {
	return poll(timeout, 50*time.Millisecond, func() error {
		if tr.LogContains(substr) {
			return nil
		}
		return fmt.Errorf("traefik %s: log has no %q after %v", tr.Name, substr, timeout)
	})
}

// LogTail returns the last n lines of the log, debug lines left out.
func (tr *Traefik) LogTail(n int) string {
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(tr.Log(), "\n"), "\n") {
		if !strings.Contains(line, " DBG ") {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Goroutines reads the number of goroutines in the Traefik process from
// /debug/pprof/goroutine (needs TraefikOptions.API).
func (tr *Traefik) Goroutines() (int, error) {
	resp, err := tr.client.Get(tr.AdminURL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("pprof: %s (is API enabled?)", resp.Status)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && line == "" {
		return 0, err
	}
	const prefix = "goroutine profile: total "
	if !strings.HasPrefix(line, prefix) {
		return 0, fmt.Errorf("pprof: unexpected first line %q", line)
	}
	return strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, prefix)))
}

// GoroutinesMatching reads the goroutine profile and returns the total and the number
// of goroutines whose stack has a frame containing substr (e.g. "yaegi" for those
// running interpreted plugin code). Needs TraefikOptions.API.
func (tr *Traefik) GoroutinesMatching(substr string) (total, matching int, err error) {
	resp, err := tr.client.Get(tr.AdminURL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("pprof: %s (is API enabled?)", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	// Format: a header line, then blocks separated by blank lines, each starting with
	// "<count> @ <pcs>" followed by "#\t<pc>\t<func>\t<file:line>" frames.
	blocks := strings.Split(string(body), "\n\n")
	head, _, _ := strings.Cut(blocks[0], "\n")
	const prefix = "goroutine profile: total "
	if !strings.HasPrefix(head, prefix) {
		return 0, 0, fmt.Errorf("pprof: unexpected first line %q", head)
	}
	if total, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, prefix))); err != nil {
		return 0, 0, err
	}
	blocks[0] = strings.TrimPrefix(blocks[0], head)
	for _, b := range blocks {
		b = strings.TrimSpace(b)
		countStr, _, ok := strings.Cut(b, " @ ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(countStr)
		if err != nil {
			continue
		}
		if strings.Contains(b, substr) {
			matching += n
		}
	}
	return total, matching, nil
}

// RawData returns Traefik's /api/rawdata document (needs TraefikOptions.API).
func (tr *Traefik) RawData() (map[string]any, error) {
	resp, err := tr.client.Get(tr.AdminURL + "/api/rawdata")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rawdata: %s (is API enabled?)", resp.Status)
	}
	var out map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Pid is the Traefik process id.
func (tr *Traefik) Pid() int {
	if tr.cmd == nil || tr.cmd.Process == nil {
		return 0
	}
	return tr.cmd.Process.Pid
}

// Exited reports whether the process has ended.
func (tr *Traefik) Exited() bool { return tr.exitedErr() != nil }

// KeepWorkDir keeps the work directory (config, plugin copy, log) after Close.
func (tr *Traefik) KeepWorkDir() { tr.opts.KeepWorkDir = true }

// Stop ends the process: SIGTERM, then SIGKILL after 5 seconds.
func (tr *Traefik) Stop() {
	if tr.cmd == nil || tr.cmd.Process == nil {
		return
	}
	select {
	case <-tr.exited:
		return
	default:
	}
	_ = tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.exited:
	case <-time.After(5 * time.Second):
		_ = tr.cmd.Process.Kill()
		<-tr.exited
	}
}

// Close stops the process and removes the work directory unless it is kept.
func (tr *Traefik) Close() {
	tr.mu.Lock()
	if tr.closed {
		tr.mu.Unlock()
		return
	}
	tr.closed = true
	tr.mu.Unlock()
	tr.Stop()
	if tr.logFile != nil {
		tr.logFile.Close()
	}
	tr.cleanupDir()
}

func (tr *Traefik) cleanupDir() {
	if tr.opts.KeepWorkDir {
		fmt.Fprintf(os.Stderr, "traefik %s: work directory kept: %s\n", tr.Name, tr.WorkDir)
		return
	}
	os.RemoveAll(tr.WorkDir)
}

// CopyPluginSource copies what Traefik needs of the plugin at root into dst: the
// manifest, go.mod/go.sum, every non-test .go file, vendor/ as is, and the Go files of
// subpackages (natsclient/ and the like). It leaves out e2e/, testdata/, hidden
// directories and tests.
func CopyPluginSource(root, dst string) error {
	if _, err := os.Stat(filepath.Join(root, ".traefik.yml")); err != nil {
		return fmt.Errorf("plugin manifest: %w", err)
	}
	return copyTree(root, dst, func(rel string, d fs.DirEntry) bool {
		name := d.Name()
		if d.IsDir() {
			if rel == "e2e" || name == "testdata" || name == "node_modules" ||
				(strings.HasPrefix(name, ".") && rel != ".") {
				return false
			}
			return true
		}
		if strings.HasPrefix(rel, "vendor/") {
			return true
		}
		if strings.HasSuffix(name, "_test.go") {
			return false
		}
		if strings.HasSuffix(name, ".go") {
			return true
		}
		return rel == ".traefik.yml" || rel == "go.mod" || rel == "go.sum" || rel == "LICENSE"
	})
}

// copyTree copies src to dst; keep (nil: everything) decides per entry, given its
// slash-separated path relative to src.
func copyTree(src, dst string, keep func(rel string, d fs.DirEntry) bool) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if keep != nil && rel != "." && !keep(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
