package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// Fleet view through real Traefik: two Traefik gateways with JetStream and metricsPath;
// `tokenrevoke gateways` lists both with their state, and a real Prometheus scrapes
// both metrics pages.

const fleetMetricsPath = "/tokenrevoke/metrics"

// buildTokenrevoke builds the operator command (its own module) into a temporary
// directory.
func buildTokenrevoke(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "tokenrevoke")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "cmd", "tokenrevoke")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/tokenrevoke: %v\n%s", err, out)
	}
	return bin
}

func startFleet(t *testing.T) (*harness.NATS, *harness.Traefik, *harness.Traefik) {
	t.Helper()
	n := harness.StartNATS(t, harness.NATSOptions{JetStream: true})
	backend := harness.StartBackend(t)
	cfg := func(name string) map[string]any {
		c := pluginConfig(n.URL, name)
		c["nats"].(map[string]any)["stream"] = "REVOCATIONS"
		c["metricsPath"] = fleetMetricsPath
		return c
	}
	a := startGateway(t, "a", backend, cfg("edge-a"))
	b := startGateway(t, "b", backend, cfg("edge-b"))
	return n, a, b
}

// TestFleetTraefik: gateways in real Traefik answer `tokenrevoke gateways` (table and
// JSON: names, version, mode, entries after a revocation, synced, connected, stream
// sequence), and a real Prometheus scrapes both metrics pages without errors: up is 1,
// entries and revocations follow a revocation made through one gateway.
func TestFleetTraefik(t *testing.T) {
	promBin := prometheusBinary(t)
	cli := buildTokenrevoke(t)
	n, a, b := startFleet(t)
	token := newToken(t)

	// Prometheus first, so that it sees the fleet before and after the revocation.
	prom := startPrometheus(t, promBin, []string{hostOf(t, a.WebURL), hostOf(t, b.WebURL)})
	prom.waitTargetsUp(t, 2, 60*time.Second)
	for _, inst := range []string{hostOf(t, a.WebURL), hostOf(t, b.WebURL)} {
		prom.waitValue(t, `up{job="tokenrevoke",instance="`+inst+`"}`, 1, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_info{instance="`+inst+`",mode="jetstream"}`, 1, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_cache_entries{instance="`+inst+`"}`, 0, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_nats_connected{instance="`+inst+`"}`, 1, 30*time.Second)
	}

	if r := revoke(t, a, token, basicAuth); r.status != http.StatusOK {
		t.Fatalf("revoke through a: %s", r)
	}
	waitRevoked(t, b, token, 5*time.Second)

	t.Run("gateways command", func(t *testing.T) {
		run := func(args ...string) string {
			t.Helper()
			cmd := exec.Command(cli, append([]string{"-s", n.URL, "gateways"}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tokenrevoke gateways %v: %v\n%s%s", args, err, out, stderr.Bytes())
			}
			return string(out)
		}
		out := run("--json", "--expect", "2", "--timeout", "10s")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d gateways:\n%s", len(lines), out)
		}
		for i, name := range []string{"edge-a", "edge-b"} {
			var g struct {
				ID       string            `json:"id"`
				Service  string            `json:"service"`
				Version  string            `json:"version"`
				Metadata map[string]string `json:"metadata"`
				Status   struct {
					Gateway   string `json:"gateway"`
					Mode      string `json:"mode"`
					Entries   int    `json:"entries"`
					Capacity  int    `json:"capacity"`
					Synced    bool   `json:"synced"`
					Connected bool   `json:"connected"`
					Stream    string `json:"stream"`
					StreamSeq uint64 `json:"streamSequence"`
					LastError string `json:"lastError"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(lines[i]), &g); err != nil {
				t.Fatal(err)
			}
			st := g.Status
			if g.Service != "tokenrevoke" || g.Version == "" || g.ID == "" || g.Metadata["gateway"] != name ||
				st.Gateway != name || st.Mode != "jetstream" || st.Entries != 1 || st.Capacity != 10000 ||
				!st.Synced || !st.Connected || st.Stream != "REVOCATIONS" || st.StreamSeq != 1 {
				t.Fatalf("gateway %s: %s", name, lines[i])
			}
		}
		table := run("--timeout", "1500ms")
		rows := strings.Split(strings.TrimSpace(table), "\n")
		if len(rows) != 3 || !strings.HasPrefix(rows[1], "edge-a ") || !strings.HasPrefix(rows[2], "edge-b ") {
			t.Fatalf("table:\n%s", table)
		}
		t.Logf("tokenrevoke gateways (two real Traefik gateways):\n%s", table)
	})

	t.Run("prometheus", func(t *testing.T) {
		ia, ib := hostOf(t, a.WebURL), hostOf(t, b.WebURL)
		prom.waitValue(t, `tokenrevoke_revocations_total{instance="`+ia+`",source="endpoint"}`, 1, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_cache_entries{instance="`+ia+`"}`, 1, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_cache_entries{instance="`+ib+`"}`, 1, 30*time.Second)
		prom.waitValue(t, `tokenrevoke_stream_sequence{instance="`+ib+`"}`, 1, 30*time.Second)
		// B learnt it over NATS (JetStream: A counts its own too, see metrics.go).
		prom.waitValue(t, `tokenrevoke_revocations_total{instance="`+ib+`",source="nats"}`, 1, 30*time.Second)
		prom.waitValue(t, `sum(tokenrevoke_nats_published_total)`, 1, 30*time.Second)
		prom.waitValue(t, `count(tokenrevoke_publish_duration_seconds_bucket{instance="`+ia+`",le="+Inf"})`, 1, 30*time.Second)
		prom.checkTargetsHealthy(t)
		prom.checkLog(t)
		t.Logf("prometheus scraped %d tokenrevoke series from 2 gateways", int(prom.query(t, `count({__name__=~"tokenrevoke_.+"})`)))
	})
	checkNoCrash(t, a)
	checkNoCrash(t, b)
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// prometheusBinary is $PROMETHEUS_BIN, /usr/bin/prometheus or prometheus in PATH
// (Debian package prometheus; scripts/test.sh installs it). Missing is a failure.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMETHEUS_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	t.Fatal("prometheus not found: apt-get install prometheus, or set PROMETHEUS_BIN")
	return ""
}

type prometheus struct {
	url     string
	logPath string
	client  *http.Client
}

// startPrometheus runs a real Prometheus on a free loopback port, scraping
// fleetMetricsPath of targets every second; stopped in t.Cleanup.
func startPrometheus(t *testing.T, bin string, targets []string) *prometheus {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: tokenrevoke
    metrics_path: %s
    static_configs:
      - targets: [%s]
`, fleetMetricsPath, strings.Join(quoted, ", "))
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin,
		"--config.file="+confPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p := &prometheus{url: "http://" + addr, logPath: logPath, client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", tailString(string(b), 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited:\n%s", tailString(string(b), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *prometheus) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := p.client.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

type promTarget struct {
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Labels     map[string]string `json:"labels"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	LastScrape time.Time         `json:"lastScrape"`
}

func (p *prometheus) targets(t *testing.T) []promTarget {
	t.Helper()
	var doc struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/targets", &doc)
	return doc.Data.ActiveTargets
}

// waitTargetsUp waits until n targets have been scraped and are up.
func (p *prometheus) waitTargetsUp(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ts := p.targets(t)
		up := 0
		for _, tg := range ts {
			if tg.LastError != "" {
				t.Fatalf("scrape of %s failed: %s", tg.ScrapeURL, tg.LastError)
			}
			if tg.Health == "up" && !tg.LastScrape.IsZero() {
				up++
			}
		}
		if len(ts) == n && up == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d targets up after %v: %+v", up, n, timeout, ts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *prometheus) checkTargetsHealthy(t *testing.T) {
	t.Helper()
	for _, tg := range p.targets(t) {
		if tg.Health != "up" || tg.LastError != "" {
			t.Fatalf("target %s: health %s, last error %q", tg.ScrapeURL, tg.Health, tg.LastError)
		}
	}
}

// checkLog fails on errors and scrape warnings in Prometheus's log (samples it refused).
func (p *prometheus) checkLog(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "level=error") ||
			(strings.Contains(line, "level=warn") && strings.Contains(line, "scrape")) {
			t.Errorf("prometheus: %s", line)
		}
	}
}

// query evaluates an instant query that must return exactly one sample; NaN-free.
func (p *prometheus) query(t *testing.T, q string) float64 {
	t.Helper()
	v, n := p.tryQuery(t, q)
	if n != 1 {
		t.Fatalf("query %s: %d samples", q, n)
	}
	return v
}

func (p *prometheus) tryQuery(t *testing.T, q string) (float64, int) {
	t.Helper()
	var doc struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &doc)
	if doc.Status != "success" {
		t.Fatalf("query %s: %s", q, doc.Error)
	}
	if len(doc.Data.Result) != 1 {
		return 0, len(doc.Data.Result)
	}
	s, _ := doc.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q", q, s)
	}
	return v, 1
}

// waitValue waits until q has one sample equal to want.
func (p *prometheus) waitValue(t *testing.T, q string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, n := p.tryQuery(t, q)
		if n == 1 && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s: %d sample(s), value %v; want one sample %v", q, n, v, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
