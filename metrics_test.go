package tokenrevoke

import (
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The metrics tests run natively and under yaegi (yaegi test -run Metrics .), so they
// use no os/exec (the promtool check starts it with os.StartProcess).

const testMetricsPath = "/metrics"

// metricsLink is a NATS link with every status field set.
type metricsLink struct {
	isSynced bool
	stream   string
	snap     *snapshotStatus
	sent     int
}

func (l *metricsLink) publish(r revocation) error { l.sent++; return nil }
func (l *metricsLink) synced() bool               { return l.isSynced }
func (l *metricsLink) status() linkStatus {
	return linkStatus{Connected: true, Server: "nats://secret-user:secret-pass@nats:4222", Stream: l.stream,
		StreamSeq: 42, Synced: l.isSynced, LastError: "nats: auth error for user secret-user",
		Received: 17, Dropped: 9, Unsigned: 4, BadSignature: 3, Published: 3, PublishFail: 1, Snapshot: l.snap}
}

// expoFamily is one metric family of a parsed exposition page.
type expoFamily struct {
	name, typ, help string
	samples         []expoSample
}

type expoSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition parses page as the text format 0.0.4 and checks the project's rules:
// HELP then TYPE before each family's samples, samples of a family together, names
// with the tokenrevoke_ prefix, _total on counters only, bounded label names, and
// histograms with ascending, cumulative buckets whose +Inf equals _count.
func parseExposition(t *testing.T, page string) map[string]*expoFamily {
	t.Helper()
	if !strings.HasSuffix(page, "\n") {
		t.Fatalf("page does not end with a newline")
	}
	fams := make(map[string]*expoFamily)
	var cur *expoFamily
	for i, line := range strings.Split(strings.TrimSuffix(page, "\n"), "\n") {
		fail := func(msg string) { t.Fatalf("line %d %q: %s", i+1, line, msg) }
		if strings.HasPrefix(line, "# HELP ") {
			parts := strings.SplitN(line[len("# HELP "):], " ", 2)
			if len(parts) != 2 || parts[1] == "" {
				fail("HELP without text")
			}
			if fams[parts[0]] != nil {
				fail("family declared twice")
			}
			cur = &expoFamily{name: parts[0], help: parts[1]}
			fams[cur.name] = cur
			continue
		}
		if strings.HasPrefix(line, "# TYPE ") {
			parts := strings.Split(line[len("# TYPE "):], " ")
			if len(parts) != 2 || cur == nil || parts[0] != cur.name || cur.typ != "" || len(cur.samples) > 0 {
				fail("TYPE not right after the family's HELP")
			}
			if parts[1] != "counter" && parts[1] != "gauge" && parts[1] != "histogram" {
				fail("unexpected type")
			}
			cur.typ = parts[1]
			continue
		}
		if line == "" || line[0] == '#' {
			fail("unexpected line")
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			fail("no value")
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			fail("value: " + err.Error())
		}
		s := expoSample{name: line[:sp], labels: map[string]string{}, value: v}
		if b := strings.IndexByte(s.name, '{'); b >= 0 {
			if !strings.HasSuffix(s.name, "}") {
				fail("unterminated labels")
			}
			for _, pair := range strings.Split(s.name[b+1:len(s.name)-1], ",") {
				eq := strings.IndexByte(pair, '=')
				if eq < 1 || len(pair) < eq+3 || pair[eq+1] != '"' || pair[len(pair)-1] != '"' {
					fail("bad label pair " + pair)
				}
				k, val := pair[:eq], pair[eq+2:len(pair)-1]
				switch k {
				case "source", "reason", "mode", "le":
				default:
					fail("unexpected label name " + k)
				}
				if strings.ContainsAny(val, "\"\\\n") || val == "" {
					fail("label value needs escaping or is empty")
				}
				s.labels[k] = val
			}
			s.name = s.name[:b]
		}
		if cur == nil || cur.typ == "" {
			fail("sample before HELP and TYPE")
		}
		base := s.name
		if cur.typ == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(s.name, suffix) {
					base = strings.TrimSuffix(s.name, suffix)
				}
			}
		}
		if base != cur.name {
			fail("sample is not of the family declared last (" + cur.name + ")")
		}
		cur.samples = append(cur.samples, s)
	}
	for name, f := range fams {
		if f.typ == "" || len(f.samples) == 0 {
			t.Errorf("%s: no TYPE or no sample", name)
		}
		if !strings.HasPrefix(name, "tokenrevoke_") || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz_") != "" {
			t.Errorf("%s: not a tokenrevoke_ snake_case name", name)
		}
		if (f.typ == "counter") != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %s; counters, and only they, end in _total", name, f.typ)
		}
		if f.typ == "histogram" {
			checkHistogram(t, f)
		}
	}
	return fams
}

func checkHistogram(t *testing.T, f *expoFamily) {
	t.Helper()
	if !strings.HasSuffix(f.name, "_seconds") {
		t.Errorf("%s: histogram not in seconds", f.name)
	}
	prevLe, prev := -1.0, -1.0
	inf, count, sum := -1.0, -1.0, -1.0
	for _, s := range f.samples {
		switch s.name {
		case f.name + "_bucket":
			if inf >= 0 {
				t.Errorf("%s: bucket after +Inf", f.name)
			}
			le := s.labels["le"]
			if le == "+Inf" {
				inf = s.value
			} else {
				b, err := strconv.ParseFloat(le, 64)
				if err != nil || b <= prevLe {
					t.Errorf("%s: le %q not ascending", f.name, le)
				}
				prevLe = b
			}
			if s.value < prev {
				t.Errorf("%s: buckets not cumulative at le=%s", f.name, le)
			}
			prev = s.value
		case f.name + "_count":
			count = s.value
		case f.name + "_sum":
			sum = s.value
		}
	}
	if inf < 0 || count < 0 || sum < 0 || inf != count {
		t.Errorf("%s: +Inf %v, _count %v, _sum %v", f.name, inf, count, sum)
	}
}

// metricValue returns the sample of family name whose labels are exactly want.
func metricValue(t *testing.T, fams map[string]*expoFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f == nil && strings.HasSuffix(name, suffix) {
			f = fams[strings.TrimSuffix(name, suffix)]
		}
	}
	if f == nil {
		t.Fatalf("no family %s", name)
	}
	for _, s := range f.samples {
		if s.name != name || len(s.labels) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			return s.value
		}
	}
	t.Fatalf("no sample %s%v", name, want)
	return 0
}

func getMetrics(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, testMetricsPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", testMetricsPath, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
		t.Fatalf("Content-Length %q for %d bytes", cl, rec.Body.Len())
	}
	return rec.Body.String()
}

// checkNoSecrets fails if any of the strings, or the SHA-256 (hex, full or short) of
// any of them, appears in page.
func checkNoSecrets(t *testing.T, page string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		sum := hashToken(s)
		key, _ := tokenKey(s)
		for _, bad := range []string{s, hex.EncodeToString(sum[:]), shortHash(sum), hex.EncodeToString(key[:]), shortHash(key)} {
			if strings.Contains(page, bad) {
				t.Errorf("metrics page contains %.40q (of %.20q)", bad, s)
			}
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) {
		c.MetricsPath = testMetricsPath
		c.Clients[0].RatePerMinute = 3
	})
	auth := basic("portal", "s3cret")
	tokens := []string{"tok-metrics-one", "tok-metrics-two", "tok-metrics-three"}
	for _, tok := range tokens {
		if rec := serve(m, revokeReq("token="+tok, auth)); rec.Code != http.StatusOK {
			t.Fatalf("revoke: %d %s", rec.Code, rec.Body.String())
		}
	}
	// 429: the fourth revocation within the minute.
	checkError(t, serve(m, revokeReq("token=tok-metrics-four", auth)), http.StatusTooManyRequests, errTooManyRequests)
	// 401 twice: through the fast path's lookup and through a query string.
	fast := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	fast.Header.Set("Authorization", "Bearer "+tokens[0])
	checkError(t, serve(m, fast), http.StatusUnauthorized, errInvalidToken)
	checkError(t, serve(m, bearerReq(tokens[1])), http.StatusUnauthorized, errInvalidToken)
	// 400: a token longer than any the gateway accepts.
	long := "tok-metrics-long-" + strings.Repeat("x", maxTokenLength)
	checkError(t, serve(m, bearerReq(long)), http.StatusBadRequest, errInvalidRequest)
	// 413: a form body larger than maxBodyCheck.
	big := httptest.NewRequest(http.MethodPost, "/api/upload", strings.NewReader("access_token=tok-metrics-big&x="+strings.Repeat("y", defaultMaxBodyCheck)))
	big.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	checkError(t, serve(m, big), http.StatusRequestEntityTooLarge, errInvalidRequest)
	// Passed requests are not counted.
	serve(m, httptest.NewRequest(http.MethodGet, "/api/orders?x=1", nil))
	if b.count() != 1 {
		t.Fatalf("backend saw %d requests, want 1", b.count())
	}

	page := getMetrics(t, m)
	fams := parseExposition(t, page)
	if b.count() != 1 {
		t.Fatal("the metrics request reached the backend")
	}
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"tokenrevoke_info", map[string]string{"mode": "local"}, 1},
		{"tokenrevoke_revocations_total", map[string]string{"source": "endpoint"}, 3},
		{"tokenrevoke_revocations_total", map[string]string{"source": "nats"}, 0},
		{"tokenrevoke_revocations_total", map[string]string{"source": "logout"}, 0},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "revoked"}, 2},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "refused"}, 1},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "too_large"}, 1},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "rate_limited"}, 1},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "unavailable"}, 0},
		{"tokenrevoke_cache_entries", nil, 3},
		{"tokenrevoke_cache_capacity", nil, defaultCacheSize},
		{"tokenrevoke_cache_evictions_total", nil, 0},
		{"tokenrevoke_cache_expired_total", nil, 0},
		{"tokenrevoke_synced", nil, 1},
	}
	for _, w := range want {
		if got := metricValue(t, fams, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "tokenrevoke_nats_") || strings.HasPrefix(name, "tokenrevoke_stream_") ||
			strings.HasPrefix(name, "tokenrevoke_publish_") || strings.HasPrefix(name, "tokenrevoke_snapshot_") {
			t.Errorf("%s shown without NATS", name)
		}
	}
	checkNoSecrets(t, page, append(tokens, "tok-metrics-four", long, "tok-metrics-big", "portal", "s3cret", "hashed", "other-secret"))
}

func TestMetricsNATS(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) { c.MetricsPath = testMetricsPath })
	l := &metricsLink{stream: "REVOCATIONS", snap: &snapshotStatus{LoadedSeq: 10, LoadedEntries: 5, WrittenSeq: 40, LastError: "x"}}
	m.domain.link = l
	fc := &failClosedMiddleware{m: m, next: m}
	// Not synced: a bearer request waits (503); the metrics endpoint still answers.
	if rec := serve(m, revokeReq("token=tok-metrics-nats", basic("portal", "s3cret"))); rec.Code != http.StatusOK || l.sent != 1 {
		t.Fatalf("revoke: %d %s, %d published", rec.Code, rec.Body.String(), l.sent)
	}
	rec := httptest.NewRecorder()
	fc.ServeHTTP(rec, bearerReq("tok-metrics-unsynced"))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("unsynced bearer request: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	fc.ServeHTTP(rec, bearerReq("tok-metrics-nats"))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token while unsynced: %d", rec.Code)
	}
	atomic.AddInt64(&m.metrics.revokedLogout, 1)
	for _, d := range []time.Duration{100 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, time.Second, 3 * time.Second} {
		m.metrics.observePublish(d)
	}
	m.metrics.setSyncDuration(1500 * time.Millisecond)

	page := getMetrics(t, fc)
	fams := parseExposition(t, page)
	if b.count() != 0 {
		t.Fatal("a request reached the backend")
	}
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"tokenrevoke_info", map[string]string{"mode": "jetstream"}, 1},
		{"tokenrevoke_revocations_total", map[string]string{"source": "endpoint"}, 1},
		{"tokenrevoke_revocations_total", map[string]string{"source": "nats"}, 17},
		{"tokenrevoke_revocations_total", map[string]string{"source": "logout"}, 1},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "revoked"}, 1},
		{"tokenrevoke_rejections_total", map[string]string{"reason": "unavailable"}, 1},
		{"tokenrevoke_synced", nil, 0},
		{"tokenrevoke_nats_connected", nil, 1},
		{"tokenrevoke_nats_published_total", nil, 3},
		{"tokenrevoke_nats_publish_failures_total", nil, 1},
		{"tokenrevoke_nats_dropped_total", map[string]string{"reason": "malformed"}, 2},
		{"tokenrevoke_nats_dropped_total", map[string]string{"reason": "unsigned"}, 4},
		{"tokenrevoke_nats_dropped_total", map[string]string{"reason": "bad_signature"}, 3},
		{"tokenrevoke_stream_sequence", nil, 42},
		{"tokenrevoke_sync_duration_seconds", nil, 1.5},
		{"tokenrevoke_snapshot_loaded_sequence", nil, 10},
		{"tokenrevoke_snapshot_written_sequence", nil, 40},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "0.0005"}, 1},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "0.0025"}, 1},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "0.005"}, 3},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "1"}, 4},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "2"}, 4},
		{"tokenrevoke_publish_duration_seconds_bucket", map[string]string{"le": "+Inf"}, 5},
		{"tokenrevoke_publish_duration_seconds_count", nil, 5},
	}
	for _, w := range want {
		if got := metricValue(t, fams, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	if sum := metricValue(t, fams, "tokenrevoke_publish_duration_seconds_sum", nil); sum < 4.0060 || sum > 4.0062 {
		t.Errorf("publish _sum = %v, want 4.0061", sum)
	}
	var les []string
	for _, s := range fams["tokenrevoke_publish_duration_seconds"].samples {
		if s.name == "tokenrevoke_publish_duration_seconds_bucket" {
			les = append(les, s.labels["le"])
		}
	}
	if got := strings.Join(les, " "); got != "0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2 +Inf" {
		t.Errorf("buckets %s", got)
	}
	// The link's status holds a server URL with credentials and an error naming a user:
	// neither belongs on the page.
	for _, bad := range []string{"secret", "nats://", "REVOCATIONS", "tok-metrics"} {
		if strings.Contains(page, bad) {
			t.Errorf("metrics page contains %q", bad)
		}
	}

	// Core NATS: no stream families; a stream without snapshots: no snapshot families.
	l.stream = "" // one field a statement: a tuple assignment of nil panics under yaegi
	l.snap = nil
	fams = parseExposition(t, getMetrics(t, m))
	if metricValue(t, fams, "tokenrevoke_info", map[string]string{"mode": "nats"}) != 1 {
		t.Error("mode")
	}
	var names []string
	for name := range fams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, "tokenrevoke_stream_") || strings.HasPrefix(name, "tokenrevoke_snapshot_") || name == "tokenrevoke_sync_duration_seconds" {
			t.Errorf("%s shown on core NATS", name)
		}
	}
}

func TestMetricsMethodsAndConfig(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) { c.MetricsPath = testMetricsPath })
	checkError(t, serve(m, httptest.NewRequest(http.MethodPost, testMetricsPath, strings.NewReader("x=1"))), http.StatusMethodNotAllowed, errInvalidRequest)
	rec := serve(m, httptest.NewRequest(http.MethodHead, testMetricsPath, nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "0" {
		t.Fatalf("HEAD: %d, %d bytes, Content-Length %s", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
	// A query string does not change the answer.
	if rec := serve(m, httptest.NewRequest(http.MethodGet, testMetricsPath+"?x=1", nil)); rec.Code != http.StatusOK {
		t.Fatalf("GET with a query: %d", rec.Code)
	}
	if b.count() != 0 {
		t.Fatal("a metrics request reached the backend")
	}

	// Off by default: the path is the backend's.
	off, ob := newTestMiddleware(t, nil)
	serve(off, httptest.NewRequest(http.MethodGet, testMetricsPath, nil))
	if ob.count() != 1 {
		t.Fatal("metrics served without metricsPath")
	}

	for _, bad := range []func(c *Config){
		func(c *Config) { c.MetricsPath = "metrics" },
		func(c *Config) { c.MetricsPath = c.RevokePath },
		func(c *Config) { c.StatusPath = "/status"; c.MetricsPath = " /status " },
	} {
		c := CreateConfig()
		c.Clients = []ClientConfig{{ID: "portal", Secret: "s3cret"}}
		bad(c)
		if _, err := parseConfig(c); err == nil || !strings.Contains(err.Error(), "metricsPath") {
			t.Errorf("metricsPath %q: %v", c.MetricsPath, err)
		}
	}
}

// TestMetricsHistogramConcurrent: +Inf equals _count even while observations land.
func TestMetricsHistogramConcurrent(t *testing.T) {
	d := newDomain(10, newLogger("t"))
	d.link = &metricsLink{isSynced: true}
	done := make(chan bool)
	go func() {
		for i := 0; i < 2000; i++ {
			d.metrics.observePublish(time.Duration(i) * time.Millisecond)
		}
		done <- true
	}()
	for i := 0; i < 20; i++ {
		parseExposition(t, string(d.metricsText()))
	}
	<-done
	fams := parseExposition(t, string(d.metricsText()))
	if got := metricValue(t, fams, "tokenrevoke_publish_duration_seconds_count", nil); got != 2000 {
		t.Fatalf("_count %v", got)
	}
}

// TestMetricsPromtool runs "promtool check metrics" (its linter: naming, units, HELP,
// _total) on the pages of a local and of a JetStream gateway, each family present. It
// is skipped when promtool is not in PATH, unless TOKENREVOKE_REQUIRE_PROMTOOL=1 (set by
// scripts/test.sh), which makes a missing promtool a failure.
func TestMetricsPromtool(t *testing.T) {
	bin := findPromtool()
	if bin == "" {
		if os.Getenv("TOKENREVOKE_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not found in PATH and TOKENREVOKE_REQUIRE_PROMTOOL=1; install it with: apt-get install -y prometheus")
		}
		t.Skip("promtool not found in PATH")
	}
	local := newDomain(10, newLogger("t"))
	js := newDomain(10, newLogger("t"))
	js.link = &metricsLink{stream: "REVOCATIONS", snap: &snapshotStatus{LoadedSeq: 3, WrittenSeq: 9}}
	js.metrics.observePublish(3 * time.Millisecond)
	js.metrics.setSyncDuration(1234567 * time.Microsecond)
	for _, d := range []*domain{local, js} {
		page := string(d.metricsText())
		parseExposition(t, page)
		out, err := runWithStdin(t, bin, []string{"promtool", "check", "metrics"}, page)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("promtool check metrics: %v\n%s\npage:\n%s", err, out, page)
		}
	}
}

func findPromtool() string {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "promtool")
		if st, err := os.Stat(p); dir != "" && err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// runWithStdin runs bin with input on its standard input and returns what it wrote to
// stdout and stderr, and an error if it did not exit with status 0.
func runWithStdin(t *testing.T, bin string, argv []string, input string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p, err := os.StartProcess(bin, argv, &os.ProcAttr{Env: os.Environ(), Files: []*os.File{stdin, out, out}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(out)
	if !st.Success() {
		return string(text), errors.New(st.String())
	}
	return string(text), nil
}
