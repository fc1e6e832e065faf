package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// results is everything one benchmark run produced; it is written as JSON verbatim.
type results struct {
	Date        string      `json:"date"`
	Mode        string      `json:"mode"` // "full" or "quick"
	StartedAt   time.Time   `json:"startedAt"`
	FinishedAt  time.Time   `json:"finishedAt"`
	WallSeconds float64     `json:"wallSeconds"`
	Machine     machineInfo `json:"machine"`
	Versions    versionInfo `json:"versions"`
	Settings    struct {
		DurationSeconds float64 `json:"durationSeconds"`
		WarmupSeconds   float64 `json:"warmupSeconds"`
		Rounds          int     `json:"rounds"`
		Connections     int     `json:"connections"`
		Threads         int     `json:"threads"`
		Sizes           []int   `json:"sizes"`
		Revocations     int     `json:"revocations"`
	} `json:"settings"`
	Commands struct {
		Make       string `json:"make"`
		GoRun      string `json:"goRun"`
		WrkExample string `json:"wrkExample"`
	} `json:"commands"`
	LoadAvgStart [3]float64      `json:"loadAvgStart"`
	LoadAvgEnd   [3]float64      `json:"loadAvgEnd"`
	Publish      []publishResult `json:"publish"`
	Sync         []syncResult    `json:"sync"`
	Cases        []*benchCase    `json:"cases"`
	Runs         []runResult     `json:"runs"`
	Discarded    []runResult     `json:"discardedRuns"` // disturbed runs that were measured again
	Summary      []caseSummary   `json:"summary"`
	Ratios       []ratioSummary  `json:"ratios"`
	Targets      []targetCheck   `json:"targets"`
	Propagation  propResult      `json:"propagation"`
	Profiles     []profileInfo   `json:"profiles,omitempty"`
	Warnings     []string        `json:"warnings"`
	Notes        []string        `json:"notes"`

	quick   bool
	maxLoad float64
	retries int
}

// caseSummary condenses the runs of one configuration.
type caseSummary struct {
	Case      string  `json:"case"`
	Runs      int     `json:"runs"`
	RPSMedian float64 `json:"rpsMedian"`
	RPSMin    float64 `json:"rpsMin"`
	RPSMax    float64 `json:"rpsMax"`
	SpreadPct float64 `json:"spreadPct"` // (max - min) / median
	P50Ms     float64 `json:"p50MsMedian"`
	P99Ms     float64 `json:"p99MsMedian"`
	P99MsMax  float64 `json:"p99MsMax"`
	GwCPUUs   float64 `json:"gatewayCpuUsPerReqMedian"`
	GwAlloc   float64 `json:"gatewayAllocBytesPerReqMedian"`
	BenchCPU  float64 `json:"benchProcessCpuUsPerReqMedian"`
	AllOK     bool    `json:"allOk"`
}

// ratioSummary is num/den req/s, computed inside each round, then summarised.
type ratioSummary struct {
	Name     string    `json:"name"`
	Num      string    `json:"num"`
	Den      string    `json:"den"`
	PerRound []float64 `json:"perRound"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Target   float64   `json:"target,omitempty"` // at least; 0: none
}

type targetCheck struct {
	What   string `json:"what"`
	Target string `json:"target"`
	Value  string `json:"value"`
	Met    bool   `json:"met"`
}

func newResults(o *options) *results {
	r := &results{
		Date:         time.Now().Format("2006-01-02"),
		Mode:         "full",
		StartedAt:    time.Now().UTC(),
		Machine:      readMachine(),
		LoadAvgStart: loadAvg(),
		Warnings:     []string{},
		Notes:        []string{},
		quick:        o.quick,
		maxLoad:      o.maxLoad,
		retries:      o.retries,
	}
	if o.quick {
		r.Mode = "quick"
	}
	s := &r.Settings
	s.DurationSeconds, s.WarmupSeconds = o.duration.Seconds(), o.warmup.Seconds()
	s.Rounds, s.Connections, s.Threads = o.rounds, o.conns, o.threads
	s.Sizes, s.Revocations = o.sizes, o.revocations
	r.Commands.Make = "make bench"
	r.Commands.GoRun = strings.TrimSpace("cd e2e && go run ./cmd/bench " + strings.Join(os.Args[1:], " "))
	if o.quick {
		r.Commands.Make = "make bench BENCH_FLAGS=-quick"
	}
	return r
}

func (r *results) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Warnings = append(r.Warnings, msg)
	logf("WARNING: %s", msg)
}

func (r *results) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, msg)
	logf("note: %s", msg)
}

// otherCoresLimit is how much CPU other processes may use during a run (in cores,
// averaged) before the run is reported as disturbed.
const otherCoresLimit = 0.15

// filePrefix starts the name of every file this run writes.
func (r *results) filePrefix() string {
	if r.quick {
		return r.Date + "-quick-"
	}
	return r.Date + "-"
}

// percentile is the nearest-rank percentile (p in 0..100) of v; v is not modified.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if p <= 0 {
		return s[0]
	}
	rank := int(p/100*float64(len(s)) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		rank = len(s)
	}
	return s[rank-1]
}

// median of v (mean of the two middle values for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (lo, hi float64) {
	for i, x := range v {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

func (r *results) runsOf(id string) []runResult {
	var out []runResult
	for _, rr := range r.Runs {
		if rr.Case == id {
			out = append(out, rr)
		}
	}
	return out
}

func (r *results) summaryOf(id string) *caseSummary {
	for i := range r.Summary {
		if r.Summary[i].Case == id {
			return &r.Summary[i]
		}
	}
	return nil
}

func (r *results) caseByKind(kind string) *benchCase {
	var last *benchCase
	for _, c := range r.Cases {
		if c.Kind == kind {
			last = c // for "tokenrevoke": the largest store
		}
	}
	return last
}

// finish computes the summaries, the ratios and the target checks.
func (r *results) finish() {
	r.FinishedAt = time.Now().UTC()
	r.WallSeconds = r.FinishedAt.Sub(r.StartedAt).Seconds()
	r.LoadAvgEnd = loadAvg()
	disturbed, peak := 0, 0.0
	for _, rr := range r.Runs {
		if rr.OtherCores > otherCoresLimit {
			disturbed++
		}
		peak = max(peak, rr.OtherCores)
	}
	if disturbed > 0 {
		r.warn("%d of %d measured runs shared the machine with other work even after %d attempts (more than %.2f cores used by other processes; up to %.2f): their req/s and latencies are low and noisy",
			disturbed, len(r.Runs), r.retries+1, otherCoresLimit, peak)
	}
	r.Summary = nil
	for _, c := range r.Cases {
		runs := r.runsOf(c.ID)
		var rps, p50, p99, gw, bench, alloc []float64
		ok := true
		for _, rr := range runs {
			rps = append(rps, rr.RPS)
			p50 = append(p50, rr.P50Ms)
			p99 = append(p99, rr.P99Ms)
			gw = append(gw, rr.GatewayCPUUsPerReq)
			bench = append(bench, rr.BenchCPUUsPerReq)
			alloc = append(alloc, rr.GatewayAllocPerReq)
			ok = ok && rr.OK
		}
		s := caseSummary{Case: c.ID, Runs: len(runs), RPSMedian: median(rps), P50Ms: median(p50), P99Ms: median(p99),
			GwCPUUs: median(gw), GwAlloc: median(alloc), BenchCPU: median(bench), AllOK: ok && len(runs) > 0}
		s.RPSMin, s.RPSMax = minMax(rps)
		_, s.P99MsMax = minMax(p99)
		if s.RPSMedian > 0 {
			s.SpreadPct = (s.RPSMax - s.RPSMin) / s.RPSMedian * 100
		}
		r.Summary = append(r.Summary, s)
	}

	tr := r.caseByKind("tokenrevoke")
	plain, pass, fa := r.caseByKind("baseline"), r.caseByKind("floor"), r.caseByKind("forwardauth")
	r.Ratios = nil
	if tr != nil && plain != nil && pass != nil && fa != nil {
		first := r.caseByID("tokenrevoke-0")
		revoked := r.caseByKind("revoked")
		add := func(num, den *benchCase, target float64) {
			if num == nil || den == nil {
				return
			}
			rs := r.ratio(num, den)
			rs.Target = target
			r.Ratios = append(r.Ratios, rs)
		}
		add(tr, plain, 0.93)
		add(tr, pass, 0.98)
		add(tr, fa, 2.5)
		// The same two targets against routes of the tokenrevoke gateway itself, which
		// leaves out any difference between processes (heap size, GC rhythm).
		add(tr, r.caseByKind("baseline-same"), 0.93)
		add(tr, r.caseByKind("floor-same"), 0.98)
		add(pass, plain, 0)
		add(first, plain, 0)
		add(tr, first, 0)
		add(fa, plain, 0)
		add(revoked, plain, 0)
	}

	r.Targets = nil
	for _, rs := range r.Ratios {
		if rs.Target > 0 {
			r.Targets = append(r.Targets, targetCheck{
				What:   rs.Name,
				Target: fmt.Sprintf("≥ %.2fx", rs.Target),
				Value:  fmt.Sprintf("%.3fx (rounds %s)", rs.Median, joinRatios(rs.PerRound)),
				Met:    rs.Median >= rs.Target,
			})
		}
	}
	p := r.Propagation
	if p.Samples > 0 {
		// Issue #3 defines the quantity as the time from A's 200 to B's first 401; the
		// time from sending the revoke request (which adds A's round trip) is in the
		// propagation table.
		r.Targets = append(r.Targets, targetCheck{
			What:   "propagation p99 (A's 200 → first 401 on B)",
			Target: "≤ 5 ms",
			Value: fmt.Sprintf("%.2f ms (p50 %.2f, max %.2f, %d missed of %d; from sending the revoke request: p99 %.2f ms)",
				p.AfterAckP99Us/1000, p.AfterAckP50Us/1000, p.AfterAckMaxUs/1000, p.Missed, p.Samples, p.P99Us/1000),
			Met: p.Missed == 0 && p.AfterAckP99Us <= 5000,
		})
	}
	// The largest size: a gateway joining a synced fleet (snapshot + tail) carries the
	// target; the first gateway ever on the stream (full replay) is shown beside it.
	var full, join *syncResult
	for i := range r.Sync {
		s := &r.Sync[i]
		if s.Entries == 0 {
			continue
		}
		if s.Join && (join == nil || s.Entries >= join.Entries) {
			join = s
		}
		if !s.Join && (full == nil || s.Entries >= full.Entries) {
			full = s
		}
	}
	if join != nil {
		other := ""
		if full != nil && full.Entries == join.Entries {
			other = fmt.Sprintf("; the first gateway on the stream, with no snapshot yet, replayed it in full in %.2f s", full.StartToSyncedSeconds)
		}
		r.Targets = append(r.Targets, targetCheck{
			What:   fmt.Sprintf("fresh gateway joining a synced one syncs %s revocations (process spawn → synced)", sizeLabel(join.Entries)),
			Target: "≤ 10 s",
			Value:  fmt.Sprintf("%.2f s (%.2f s after Traefik was ready; snapshot + tail%s)", join.StartToSyncedSeconds, join.ReadyToSyncedSeconds, other),
			Met:    join.StartToSyncedSeconds <= 10 && join.SnapshotSeq > 0,
		})
	} else if full != nil {
		r.Targets = append(r.Targets, targetCheck{
			What:   fmt.Sprintf("fresh gateway syncs %s revocations (process spawn → synced, full replay)", sizeLabel(full.Entries)),
			Target: "≤ 10 s",
			Value:  fmt.Sprintf("%.2f s (%.2f s after Traefik was ready)", full.StartToSyncedSeconds, full.ReadyToSyncedSeconds),
			Met:    full.StartToSyncedSeconds <= 10,
		})
	}
}

func (r *results) caseByID(id string) *benchCase {
	for _, c := range r.Cases {
		if c.ID == id {
			return c
		}
	}
	return nil
}

func (r *results) ratio(num, den *benchCase) ratioSummary {
	rs := ratioSummary{Name: caseName(num) + " / " + caseName(den), Num: num.ID, Den: den.ID}
	byRound := func(id string) map[int]float64 {
		m := make(map[int]float64)
		for _, rr := range r.runsOf(id) {
			m[rr.Round] = rr.RPS
		}
		return m
	}
	a, b := byRound(num.ID), byRound(den.ID)
	for round := 1; round <= r.Settings.Rounds; round++ {
		if b[round] > 0 && a[round] > 0 {
			rs.PerRound = append(rs.PerRound, a[round]/b[round])
		}
	}
	rs.Median = median(rs.PerRound)
	rs.Min, rs.Max = minMax(rs.PerRound)
	return rs
}

// caseName is how tables name a case: label and detail.
func caseName(c *benchCase) string {
	if c.Detail == "" {
		return c.Label
	}
	return c.Label + " (" + c.Detail + ")"
}

func joinRatios(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(parts, ", ")
}

// write stores the JSON, the CSV and the chart, and the markdown section (into the
// document when one is configured, else next to the results).
func (r *results) write(o *options) ([]string, error) {
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(o.outDir, r.filePrefix())
	var files []string

	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(base+"results.json", append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	files = append(files, base+"results.json")

	if err := r.writeCSV(base + "runs.csv"); err != nil {
		return nil, err
	}
	files = append(files, base+"runs.csv")

	chart := base + "throughput.png"
	if err := r.drawChart(chart); err != nil {
		return nil, err
	}
	files = append(files, chart)

	if o.docPath != "" {
		rel, err := filepath.Rel(filepath.Dir(o.docPath), o.outDir)
		if err != nil {
			rel = o.outDir
		}
		if err := updateDoc(o.docPath, r.markdown(filepath.ToSlash(rel))); err != nil {
			return nil, err
		}
		files = append(files, o.docPath)
	} else {
		md := base + "section.md"
		if err := os.WriteFile(md, []byte(r.markdown(".")), 0o644); err != nil {
			return nil, err
		}
		files = append(files, md)
	}
	return files, nil
}

func (r *results) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"case", "round", "order", "started_at", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", //nolint:errcheck
		"requests", "non_2xx_3xx", "socket_errors", "backend_requests", "gateway_cpu_us_per_req", "gateway_alloc_bytes_per_req", "gateway_gc_cycles", "bench_cpu_us_per_req", "wrk_cpu_s", "other_cores", "steal_cores", "loadavg1_before", "ok"})
	ff := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	for _, rr := range r.Runs {
		w.Write([]string{rr.Case, strconv.Itoa(rr.Round), strconv.Itoa(rr.Order), rr.StartedAt.Format(time.RFC3339), //nolint:errcheck
			ff(rr.RPS, 1), ff(rr.P50Ms, 3), ff(rr.P90Ms, 3), ff(rr.P99Ms, 3), ff(rr.MaxMs, 3),
			strconv.FormatInt(rr.Requests, 10), strconv.FormatInt(rr.Non2xx, 10), strconv.FormatInt(rr.SockErrs, 10),
			strconv.FormatInt(rr.BackendRequests, 10), ff(rr.GatewayCPUUsPerReq, 1), ff(rr.GatewayAllocPerReq, 0), strconv.FormatInt(rr.GatewayGCs, 10), ff(rr.BenchCPUUsPerReq, 1),
			ff(rr.Wrk.CPUSeconds, 2), ff(rr.OtherCores, 3), ff(rr.StealCores, 3), ff(rr.LoadAvg1, 2), strconv.FormatBool(rr.OK)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Markers around the section this command owns in BENCHMARKS.md.
const (
	markStart = "<!-- traefik-bench:start -->"
	markEnd   = "<!-- traefik-bench:end -->"
)

// updateDoc replaces the marked section of the document (or appends it; or creates
// the document with a title) and leaves everything else as it was.
func updateDoc(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(spliceSection(string(old), section)), 0o644)
}

func spliceSection(doc, section string) string {
	section = strings.TrimRight(section, "\n")
	if strings.TrimSpace(doc) == "" {
		return "# Benchmarks\n\n" + section + "\n"
	}
	i := strings.Index(doc, markStart)
	j := strings.Index(doc, markEnd)
	if i >= 0 && j > i {
		return doc[:i] + section + doc[j+len(markEnd):]
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
}

func fmtInt(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	// Thousands separators.
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// markdown renders the BENCHMARKS.md section; dir is the results directory relative
// to the document.
func (r *results) markdown(dir string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	link := func(name string) string { return dir + "/" + r.filePrefix() + name }
	v, m := r.Versions, r.Machine

	p("%s\n", markStart)
	p("## End to end: real Traefik %s on this machine\n\n", v.Traefik)
	p("_Written by `%s` (`e2e/cmd/bench`, %s mode) on %s in %s; the next run rewrites everything between the `traefik-bench` markers._\n\n",
		r.Commands.Make, r.Mode, r.Date, time.Duration(r.WallSeconds*float64(time.Second)).Round(time.Second))
	if r.quick {
		p("> **Quick mode**: %g s runs; a smoke check of the tooling, not numbers to quote.\n\n", r.Settings.DurationSeconds)
	}
	dirty := ""
	if v.PluginDirty {
		dirty = " plus uncommitted changes"
	}
	p("- **Machine**: %d × %s, %.1f GiB RAM, Linux %s. Load average (1/5/15 min) %.2f/%.2f/%.2f at the start, %.2f/%.2f/%.2f at the end.\n",
		m.CPUs, m.CPUModel, float64(m.MemTotalBytes)/(1<<30), m.Kernel,
		r.LoadAvgStart[0], r.LoadAvgStart[1], r.LoadAvgStart[2], r.LoadAvgEnd[0], r.LoadAvgEnd[1], r.LoadAvgEnd[2])
	p("- **Versions**: Traefik %s (built with %s, yaegi %s), nats-server %s (embedded), nats.go %s, %s, bench built with %s; plugin at commit `%s`%s.\n",
		v.Traefik, v.TraefikGo, v.Yaegi, v.NATSServer, v.NatsGo, v.Wrk, v.Go, v.PluginCommit, dirty)
	p("- **Commands**: `make bench` (= `bash scripts/bench.sh` = `cd e2e && go run ./cmd/bench`; 6-8 minutes), smoke check `make bench BENCH_FLAGS=-quick` (about 3 minutes). This run: `%s`. One load run: `%s`.\n\n",
		r.Commands.GoRun, r.Commands.WrkExample)
	p("### Set-up\n\n")
	largest := 0
	if n := len(r.Settings.Sizes); n > 0 {
		largest = r.Settings.Sizes[n-1]
	}
	p("Everything shares the machine's %d cores on 127.0.0.1: the Traefik processes, wrk, and this command's own process, which runs the echo backend (`harness.NewBackend`), the ForwardAuth service and nats-server with JetStream.\n\n", m.CPUs)
	p("- Gateway `base` (tokenrevoke not loaded): `/` without middleware, `/pass` through the pass-through yaegi plugin (`e2e/testdata/passthrough`: ServeHTTP only calls next), `/fa` through Traefik's ForwardAuth to a compiled Go service (`e2e/cmd/bench/forwardauth.go`) that holds the same %s revoked hashes in a map and answers 200 or 401.\n", sizeLabel(largest))
	p("- Gateways `tr-0`")
	for _, n := range r.Settings.Sizes {
		p(", `tr-%s`", sizeLabel(n))
	}
	p(": tokenrevoke on every route (cacheSize %s, JetStream mode), each reading its own stream that was filled beforehand with that many revocations (nats.go async publishes of the wire JSON with `Nats-TTL: 3600s`), so the entries arrive the way they do in production. They also serve `/plain` (no middleware) and `/pass` (pass-through plugin); the two rows measured there on `tr-%s` compare routes inside one process, free of differences between processes (heap size, GC rhythm).\n", fmtInt(float64(largest+largest/10)), sizeLabel(largest))
	p("- Every request is `GET /api/orders` with `Authorization: Bearer <~300-byte JWT-shaped token>`, not revoked except in the `revoked token` row, where every answer must be 401 and the backend must see nothing.\n")
	p("- Each configuration gets a %g s warm-up, then %d measured %g s runs, **round-robin** (each round starts one configuration later), 0.5 s apart; %d connections, %d wrk thread. The table gives the median run and the min–max; ratios are taken inside each round, then their median.\n",
		r.Settings.WarmupSeconds, r.Settings.Rounds, r.Settings.DurationSeconds, r.Settings.Connections, r.Settings.Threads)
	p("- *Gateway CPU* is the user+system CPU time of the Traefik process during the run divided by its requests (`/proc/<pid>/stat`): it moves much less than req/s when something else competes for the cores. *Gateway alloc* is the growth of the process's `TotalAlloc` (`/debug/vars`) per request.\n\n")

	p("### Throughput and latency\n\n")
	p("| configuration | req/s median | min – max | spread | vs no middleware | p50 ms | p99 ms | gateway CPU µs/req | CPU vs no middleware | gateway alloc B/req | checks |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var plainMedian, plainCPU float64
	if pc := r.caseByKind("baseline"); pc != nil {
		if s := r.summaryOf(pc.ID); s != nil {
			plainMedian, plainCPU = s.RPSMedian, s.GwCPUUs
		}
	}
	for _, c := range r.Cases {
		s := r.summaryOf(c.ID)
		if s == nil {
			continue
		}
		rel := "–"
		if plainMedian > 0 {
			rel = fmt.Sprintf("%.2fx", s.RPSMedian/plainMedian)
		}
		check := "ok"
		if !s.AllOK {
			check = "**see warnings**"
		} else if c.Expect == 401 {
			check = "all 401, backend saw 0"
		}
		cpu := "–"
		if plainCPU > 0 && c.Kind != "baseline" {
			cpu = fmt.Sprintf("%+.0f µs", s.GwCPUUs-plainCPU)
		}
		p("| %s | %s | %s – %s | %.1f%% | %s | %.2f | %.2f | %.0f | %s | %s | %s |\n",
			caseName(c), fmtInt(s.RPSMedian), fmtInt(s.RPSMin), fmtInt(s.RPSMax), s.SpreadPct, rel, s.P50Ms, s.P99Ms, s.GwCPUUs, cpu, fmtInt(s.GwAlloc), check)
	}
	p("\nThe revoked-token row beats no middleware because the plugin answers 401 itself: no backend round trip.\n")
	p("\n![req/s per configuration: median, whiskers min–max](%s)\n\n", link("throughput.png"))

	p("### Against the targets\n\n")
	p("| what | target | measured | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		p("| %s | %s | %s | %s |\n", t.What, t.Target, t.Value, yesNo(t.Met))
	}
	p("\nOther ratios (same rounds, median, min–max): ")
	var others []string
	for _, rs := range r.Ratios {
		if rs.Target == 0 {
			others = append(others, fmt.Sprintf("%s %.3fx (%.3f–%.3f)", rs.Name, rs.Median, rs.Min, rs.Max))
		}
	}
	p("%s.\n\n", strings.Join(others, "; "))

	pr := r.Propagation
	p("### Propagation\n\n")
	p("Gateways `prop-a` and `prop-b` share an empty stream. For each of %d fresh tokens: POST the revocation to A's endpoint, and from the same instant poll B (`GET` with the token on a kept-alive connection, %d µs pause between polls, waited with nanosleep: `time.Sleep` under 1 ms lasts about 1.1 ms in an otherwise idle process) until it answers 401. The median sample needed %.0f polls; the resolution is the interval from the start of the last poll answered 200 to the start of the poll answered 401: p50 %.2f ms, p99 %.2f ms, max %.2f ms.\n\n",
		pr.Samples, pr.PollGapUs, pr.PollsP50, pr.DetectP50Us/1000, pr.DetectP99Us/1000, pr.DetectMaxUs/1000)
	p("| from | samples | missed | min | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| A's 200 → B's first 401 (target) | %d | %d | – | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n",
		pr.Samples, pr.Missed, pr.AfterAckP50Us/1000, pr.AfterAckP90Us/1000, pr.AfterAckP99Us/1000, pr.AfterAckMaxUs/1000)
	p("| revoke request sent → B's first 401 | %d | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n\n",
		pr.Samples, pr.Missed, pr.MinUs/1000, pr.P50Us/1000, pr.P90Us/1000, pr.P99Us/1000, pr.MaxUs/1000)
	p("A answers 200 only once the stream has acknowledged the publish (A's revoke round trip p50 %.2f ms, p99 %.2f ms); B's first 401 can come before that answer (a negative first row). Other processes used %.2f cores meanwhile.\n\n", pr.AckP50Us/1000, pr.AckP99Us/1000, pr.OtherCores)

	p("### Replay and memory of a fresh gateway\n\n")
	p("Each `tr-N` gateway was started alone (the others idle) after its stream was filled, and timed from spawning the Traefik process until its status document (`statusPath`) showed all N entries and `synced` (polled every 20 ms): the first gateway on a stream no gateway has snapshotted replays it in full. Once synced, `tr-N` writes a snapshot (streams of %s messages or more, the default `snapshotEvery`); then a `join-N` gateway is started on the same stream and timed the same way: it loads that snapshot and replays only what follows it, as any gateway joining a running fleet does. Memory 2 s later: VmRSS and VmHWM of the Traefik process from `/proc/<pid>/status`, and the live Go heap after a forced GC (`/debug/pprof/heap?gc=1`, then `/debug/vars`). Per entry = (value with N − value of `tr-0`) / N.\n\n", fmtInt(snapshotEvery))
	p("| revoked entries | gateway | spawn → synced | ready → synced | rate | RSS | peak RSS | live heap | RSS per entry | heap per entry | other processes |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sync {
		how := "first (full replay)"
		if s.Join {
			how = "joining (snapshot + tail)"
		}
		per, hper, rate := "–", "–", "–"
		if s.Entries > 0 {
			per, hper = fmt.Sprintf("%.0f B", s.RSSPerEntryBytes), fmt.Sprintf("%.0f B", s.HeapPerEntryBytes)
			if s.ReadyToSyncedSeconds > 0 {
				rate = fmtInt(float64(s.Entries)/s.ReadyToSyncedSeconds) + "/s"
			}
		}
		p("| %s | %s | %.2f s | %.2f s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %s | %s | %.2f cores |\n", fmtInt(float64(s.Entries)), how,
			s.StartToSyncedSeconds, s.ReadyToSyncedSeconds, rate, mb(s.Memory.RSSBytes), mb(s.Memory.PeakRSSBytes), mb(s.Memory.HeapAllocGC), per, hper, s.OtherCores)
	}
	if len(r.Publish) > 0 {
		var parts []string
		for _, pb := range r.Publish {
			parts = append(parts, fmt.Sprintf("%s messages in %.1f s", fmtInt(float64(pb.Messages)), pb.Seconds))
		}
		p("\nFilling the streams (nats.go, for reference): %s.\n", strings.Join(parts, ", "))
	}
	p("\n")

	p("### Noise\n\n")
	maxSpread, maxCase := 0.0, ""
	for _, s := range r.Summary {
		if s.SpreadPct > maxSpread {
			maxSpread, maxCase = s.SpreadPct, s.Case
		}
	}
	var other []float64
	for _, rr := range r.Runs {
		other = append(other, rr.OtherCores)
	}
	lo, hi := minMax(other)
	p("- Largest spread between runs of one configuration: %.1f%% (%s).\n", maxSpread, maxCase)
	p("- Other processes on the machine used %.2f cores per measured run in the median (min %.2f, max %.2f): `/proc/stat` busy time minus the CPU of the gateway under load, of this command and of wrk. Above %.2f a run counts as disturbed and is measured again right away (up to %d more times; %d runs were repeated, the discarded ones are in the JSON). (The load average, %.2f at the start, includes this benchmark's own work once it runs, so it says little during the run.)\n",
		median(other), lo, hi, otherCoresLimit, r.retries, len(r.Discarded), r.LoadAvgStart[0])
	p("- Gateway, backend, ForwardAuth service, NATS and wrk all compete for %d cores, so req/s measures the whole loop, not the gateway alone; anything else running on the machine moves every number. Ratios taken within one round cancel slow drifts but not short bursts; the spread column shows how much to trust a difference.\n", m.CPUs)
	p("- ForwardAuth's own CPU is spent in this command's process (with the backend), not in Traefik: its gateway CPU per request is lower than its real cost.\n")
	p("- RSS right after a replay still holds garbage the Go runtime has not returned to the OS; the live heap after GC is the tighter measure of the store itself.\n")
	for _, pf := range r.Profiles {
		if strings.HasPrefix(pf.Case, "sync-") {
			p("- The largest replay ran with Go's CPU profiler on for its first %g s (an overhead of a few per cent at most).\n", pf.Seconds)
		}
	}
	for _, n := range r.Notes {
		p("- %s.\n", n)
	}
	if len(r.Warnings) > 0 {
		p("- Warnings of this run:\n")
		for _, w := range r.Warnings {
			p("  - %s\n", w)
		}
	}
	p("\nRaw numbers: [`%s`](%s) (every run, every propagation sample), [`%s`](%s).",
		r.filePrefix()+"results.json", link("results.json"), r.filePrefix()+"runs.csv", link("runs.csv"))
	if len(r.Profiles) > 0 {
		var parts []string
		for _, pf := range r.Profiles {
			name := filepath.Base(pf.Profile)
			parts = append(parts, fmt.Sprintf("[`%s`](%s/%s)", name, dir, name))
		}
		p(" CPU profiles of Traefik (the first seconds of the largest replay, then the largest tokenrevoke gateway and the pass-through route under load; read with `go tool pprof -top -cum <file>`, a `-top.txt` rendering sits next to each): %s.", strings.Join(parts, ", "))
	}
	p("\n%s\n", markEnd)
	return b.String()
}

// consoleSummary is the short table printed at the end.
func (r *results) consoleSummary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %10s %19s %8s %8s %8s %10s %10s\n", "configuration", "req/s", "min-max", "spread", "p50 ms", "p99 ms", "gw µs/req", "gw B/req")
	for _, c := range r.Cases {
		s := r.summaryOf(c.ID)
		if s == nil {
			continue
		}
		fmt.Fprintf(&b, "%-32s %10.0f %9.0f-%-9.0f %7.1f%% %8.2f %8.2f %10.0f %10.0f\n", c.ID, s.RPSMedian, s.RPSMin, s.RPSMax, s.SpreadPct, s.P50Ms, s.P99Ms, s.GwCPUUs, s.GwAlloc)
	}
	b.WriteString("\n")
	for _, t := range r.Targets {
		mark := "met"
		if !t.Met {
			mark = "NOT met"
		}
		fmt.Fprintf(&b, "%-7s %s: %s (target %s)\n", mark, t.What, t.Value, t.Target)
	}
	for _, s := range r.Sync {
		kind := "full"
		if s.Join {
			kind = "join"
		}
		fmt.Fprintf(&b, "sync %s %9d entries: %.2f s from spawn, RSS %.1f MiB, %.0f B/entry RSS, %.0f B/entry heap\n",
			kind, s.Entries, s.StartToSyncedSeconds, mb(s.Memory.RSSBytes), s.RSSPerEntryBytes, s.HeapPerEntryBytes)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(&b, "%d warning(s), see the results file\n", len(r.Warnings))
	}
	fmt.Fprintf(&b, "load average %.2f at start, %.2f at end; wall time %s\n", r.LoadAvgStart[0], r.LoadAvgEnd[0],
		time.Duration(r.WallSeconds*float64(time.Second)).Round(time.Second))
	return b.String()
}
