package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// benchCase is one measured configuration: a route on a gateway and the bearer token
// every request carries.
type benchCase struct {
	ID     string `json:"id"`
	Label  string `json:"label"`
	Detail string `json:"detail"`
	Kind   string `json:"kind"` // baseline, floor, forwardauth, tokenrevoke, revoked
	URL    string `json:"url"`
	Token  string `json:"token"` // "valid" or "revoked"
	Expect int    `json:"expectStatus"`

	gw    *harness.Traefik
	token string
}

// syncResult is what a fresh gateway needed to replay a preloaded stream.
type syncResult struct {
	Entries int        `json:"entries"`
	Stream  streamSpec `json:"stream"`
	// Join: the gateway started while another one was synced and had written a
	// snapshot, and loaded it (SnapshotSeq) instead of replaying the whole stream.
	Join        bool   `json:"join,omitempty"`
	SnapshotSeq uint64 `json:"snapshotSequence,omitempty"`
	// From spawning the Traefik process until the status document shows every entry
	// and synced; and the part of it after Traefik answered on its routes.
	StartToSyncedSeconds float64 `json:"startToSyncedSeconds"`
	ReadyToSyncedSeconds float64 `json:"readyToSyncedSeconds"`
	StartupSeconds       float64 `json:"startupSeconds"`
	Memory               memInfo `json:"memory"` // 2 s after the sync
	// CPU used by other processes during the replay, in cores (see cpuWindow).
	OtherCores float64 `json:"otherCores"`
	// (value with N entries - value of the empty gateway) / N.
	RSSPerEntryBytes  float64 `json:"rssPerEntryBytes,omitempty"`
	HeapPerEntryBytes float64 `json:"heapPerEntryBytes,omitempty"`
}

// snapshotEvery is the plugin's default nats.snapshotEvery: a synced gateway writes its
// first snapshot once the stream holds that many messages.
const snapshotEvery = 50000

// measureJoin times a fresh gateway joining a fleet: gw (synced with n entries) writes
// its snapshot, then another gateway on the same stream starts, loads the snapshot and
// replays what follows it. That gateway is stopped again before the load runs.
func measureJoin(ctx context.Context, res *results, start func(harness.TraefikOptions) (*harness.Traefik, error),
	gw *harness.Traefik, backend *harness.Backend, natsURL string, spec streamSpec, label string, n, cacheSize int) error {
	if err := waitSnapshotWritten(ctx, gw, uint64(n), 2*time.Minute); err != nil {
		return err
	}
	if err := sleepCtx(ctx, time.Second); err != nil { // let the writer's purge settle
		return err
	}
	logf("starting gateway join-%s (loads tr-%s's snapshot of %d revocations)", label, label, n)
	begin := time.Now()
	win := startCPUWindow(os.Getpid())
	jg, err := start(harness.TraefikOptions{
		Name: "join-" + label,
		Dynamic: harness.Dynamic{
			BackendURL: backend.URL,
			Plugin:     pluginConfig(natsURL, spec, "bench-join-"+label, cacheSize),
		},
	})
	if err != nil {
		return err
	}
	defer jg.Close()
	if err := waitSynced(ctx, jg, n, 5*time.Minute); err != nil {
		return err
	}
	took := time.Since(begin)
	win.track(jg.Pid())
	other := win.otherCores(0)
	st, err := readStatus(jg)
	if err != nil {
		return fmt.Errorf("gateway %s status: %w", jg.Name, err)
	}
	loaded, _ := st.snapshotSeqs()
	if loaded == 0 {
		res.warn("gateway join-%s did not use a snapshot (status %+v): its time is a full replay", label, st)
	}
	sr := syncResult{
		Entries:              n,
		Stream:               spec,
		Join:                 true,
		SnapshotSeq:          loaded,
		StartToSyncedSeconds: took.Seconds(),
		ReadyToSyncedSeconds: (took - jg.StartDuration).Seconds(),
		StartupSeconds:       jg.StartDuration.Seconds(),
		OtherCores:           other,
	}
	if other > otherCoresLimit {
		res.warn("other processes used %.2f cores while join-%s loaded its snapshot: its sync time is inflated", other, label)
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	if sr.Memory, err = readMemory(jg); err != nil {
		return fmt.Errorf("gateway %s memory: %w", jg.Name, err)
	}
	if len(res.Sync) > 0 {
		empty := res.Sync[0].Memory
		sr.RSSPerEntryBytes = float64(sr.Memory.RSSBytes-empty.RSSBytes) / float64(n)
		sr.HeapPerEntryBytes = float64(sr.Memory.HeapAllocGC-empty.HeapAllocGC) / float64(n)
	}
	res.Sync = append(res.Sync, sr)
	logf("  join-%s synced %d entries %.2fs after spawn (snapshot at sequence %d); RSS %.1f MB, live heap %.1f MB",
		label, n, sr.StartToSyncedSeconds, loaded, mb(sr.Memory.RSSBytes), mb(sr.Memory.HeapAllocGC))
	return nil
}

// runResult is one measured wrk run.
type runResult struct {
	Case      string    `json:"case"`
	Round     int       `json:"round"`
	Order     int       `json:"order"` // position inside the round
	StartedAt time.Time `json:"startedAt"`
	RPS       float64   `json:"rps"`
	P50Ms     float64   `json:"p50Ms"`
	P90Ms     float64   `json:"p90Ms"`
	P99Ms     float64   `json:"p99Ms"`
	MaxMs     float64   `json:"maxMs"`
	Requests  int64     `json:"requests"`
	Non2xx    int64     `json:"non2xx3xx"`
	SockErrs  int64     `json:"socketErrors"`
	// CPU time of the gateway process, and of this process (echo backend, ForwardAuth
	// service, NATS), per request.
	GatewayCPUUsPerReq float64 `json:"gatewayCpuUsPerReq"`
	BenchCPUUsPerReq   float64 `json:"benchProcessCpuUsPerReq"`
	// Go heap allocation of the gateway per request and its GC cycles during the run.
	GatewayAllocPerReq float64 `json:"gatewayAllocBytesPerReq"`
	GatewayGCs         int64   `json:"gatewayGcCycles"`
	BackendRequests    int64   `json:"backendRequests"`
	LoadAvg1           float64 `json:"loadAvg1Before"` // includes this benchmark's own work
	Attempt            int     `json:"attempt"`        // 1, or more when disturbed runs were repeated
	// CPU used on the machine by everything but this run's gateway, this process and
	// wrk, in cores (averaged over the run): other work that competed with the run.
	OtherCores float64   `json:"otherCores"`
	StealCores float64   `json:"stealCores"`
	OK         bool      `json:"ok"`
	Problem    string    `json:"problem,omitempty"`
	Wrk        wrkResult `json:"wrk"`
}

func sizeLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprint(n)
	}
}

// sleepCtx sleeps unless the context ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func run(ctx context.Context, o *options) (err error) {
	if o.waitIdle > 0 {
		if err := waitForIdle(ctx, o.maxLoad, o.waitIdle); err != nil {
			return err
		}
	}
	res := newResults(o)
	logf("load average %.2f %.2f %.2f on %d CPUs", res.LoadAvgStart[0], res.LoadAvgStart[1], res.LoadAvgStart[2], res.Machine.CPUs)
	if res.LoadAvgStart[0] > o.maxLoad {
		res.warn("load average %.2f at start (above %.1f): other work shares the CPUs, numbers are noisy", res.LoadAvgStart[0], o.maxLoad)
	}

	tmp, err := os.MkdirTemp("", "tokenrevoke-bench-*")
	if err != nil {
		return err
	}
	var closers []func()
	defer func() {
		logf("stopping gateways and servers")
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		os.RemoveAll(tmp)
	}()

	lg, err := newLoadGen(o.wrk, tmp, o.threads, o.conns)
	if err != nil {
		return err
	}
	res.Versions.Wrk = lg.version()
	logf("looking for the Traefik binary (the first build takes 10-15 minutes)")
	bin, err := harness.TraefikBinaryPath()
	if err != nil {
		return err
	}
	res.fillVersions(bin)
	// The plugin source the gateways load: the work tree, or one exported commit.
	pluginRoot := ""
	if o.pluginRev != "" {
		root, err := harness.RepoRoot()
		if err != nil {
			return err
		}
		dir, commit, err := exportRevision(ctx, root, o.pluginRev, tmp)
		if err != nil {
			return err
		}
		pluginRoot = dir
		res.Versions.PluginCommit, res.Versions.PluginDirty = commit[:12], false
		logf("plugin source: commit %s (%s), exported to %s", commit[:12], o.pluginRev, dir)
	} else if res.Versions.PluginDirty {
		logf("plugin source: the work tree, which has uncommitted changes (use -plugin-rev HEAD to measure the last commit)")
	}
	logf("Traefik %s (%s), yaegi %s, nats-server %s, %s", res.Versions.Traefik, bin, res.Versions.Yaegi, res.Versions.NATSServer, res.Versions.Wrk)

	// Shared services: NATS with JetStream, the echo backend, the ForwardAuth service.
	ns, err := harness.NewNATS(harness.NATSOptions{JetStream: true})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	closers = append(closers, ns.Close)
	backend, err := harness.NewBackend()
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	closers = append(closers, backend.Close)
	backend.SetKeep(0)
	nc, err := nats.Connect(ns.URL, nats.Name("bench-publisher"))
	if err != nil {
		return err
	}
	closers = append(closers, nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		return err
	}

	// One stream per store size, filled before any gateway runs.
	sizes := append([]int{0}, o.sizes...)
	largest := sizes[len(sizes)-1]
	largestLabel := sizeLabel(largest)
	revoked := make(map[[32]byte]int64, largest)
	for _, n := range sizes {
		spec := streamFor(sizeLabel(n))
		if err := createStream(js, spec); err != nil {
			return fmt.Errorf("create stream %s: %w", spec.Name, err)
		}
		if n == 0 {
			continue
		}
		var keep map[[32]byte]int64
		if n == largest {
			keep = revoked
		}
		logf("publishing %d revocations into stream %s", n, spec.Name)
		pr, err := fillStream(ctx, nc, spec, sizeLabel(n), n, keep)
		if err != nil {
			return err
		}
		res.Publish = append(res.Publish, pr)
		logf("  %d messages in %.1fs (%.0f/s)", n, pr.Seconds, pr.PerSecond)
	}
	propStream := streamFor("prop")
	if err := createStream(js, propStream); err != nil {
		return fmt.Errorf("create stream %s: %w", propStream.Name, err)
	}

	auth, err := newAuthService(revoked)
	if err != nil {
		return fmt.Errorf("forwardauth service: %w", err)
	}
	closers = append(closers, auth.Close)

	start := func(opts harness.TraefikOptions) (*harness.Traefik, error) {
		opts.Binary = bin
		opts.PluginRoot = pluginRoot
		opts.API = true
		opts.LogLevel = "INFO"
		opts.KeepWorkDir = o.keep
		opts.ReadyTimeout = 60 * time.Second
		gw, err := harness.NewTraefik(opts)
		if gw != nil {
			closers = append(closers, gw.Close)
		}
		if err != nil {
			if gw != nil {
				err = fmt.Errorf("%w\n%s", err, gatewayTrouble(gw))
			}
			return nil, fmt.Errorf("gateway %s: %w", opts.Name, err)
		}
		return gw, nil
	}

	// Baseline gateway: no middleware on "/", the pass-through plugin on /pass, and
	// ForwardAuth on /fa. The tokenrevoke plugin is not even loaded in it.
	logf("starting the baseline gateway (no middleware, pass-through plugin, ForwardAuth)")
	base, err := start(harness.TraefikOptions{
		Name:          "base",
		NoTokenrevoke: true,
		Passthrough:   true,
		Dynamic: harness.Dynamic{
			BackendURL:       backend.URL,
			PassthroughRoute: true,
			Extra:            forwardAuthRoute(auth.URL),
		},
	})
	if err != nil {
		return err
	}

	// tokenrevoke gateways, one per size, started one at a time so that each replay has
	// the machine to itself; each is timed from spawning the process to synced.
	cacheSize := largest + largest/10
	if cacheSize < 10000 {
		cacheSize = 10000
	}
	gws := make(map[int]*harness.Traefik)
	for _, n := range sizes {
		label := sizeLabel(n)
		spec := streamFor(label)
		logf("starting gateway tr-%s (replays %d revocations from %s)", label, n, spec.Name)
		begin := time.Now()
		win := startCPUWindow(os.Getpid())
		gw, err := start(harness.TraefikOptions{
			Name:        "tr-" + label,
			Passthrough: true,
			Dynamic: harness.Dynamic{
				BackendURL: backend.URL,
				Plugin:     pluginConfig(ns.URL, spec, "bench-"+label, cacheSize),
				// /plain and /pass on the same process: comparisons free of process effects.
				PlainRoute:       true,
				PassthroughRoute: true,
			},
		})
		if err != nil {
			return err
		}
		// Profile the first seconds of the largest replay: where a slow sync goes.
		var profDone chan error
		profPath := filepath.Join(o.outDir, res.filePrefix()+"sync-"+label+"-cpu.pprof")
		if o.pprof && n == largest {
			profDone = make(chan error, 1)
			go func() { profDone <- fetchProfile(ctx, gw, syncProfileTime(o), profPath) }()
		}
		if err := waitSynced(ctx, gw, n, 5*time.Minute); err != nil {
			return err
		}
		took := time.Since(begin)
		win.track(gw.Pid())
		otherDuringSync := win.otherCores(0)
		if profDone != nil {
			if err := <-profDone; err != nil {
				res.warn("profile of the %s replay: %v", label, err)
			} else {
				res.Profiles = append(res.Profiles, profileInfo{Case: "sync-" + label, Seconds: syncProfileTime(o).Seconds(),
					Profile: profPath, Top: writeTop(ctx, profPath)})
			}
		}
		sr := syncResult{
			Entries:              n,
			Stream:               spec,
			StartToSyncedSeconds: took.Seconds(),
			ReadyToSyncedSeconds: (took - gw.StartDuration).Seconds(),
			StartupSeconds:       gw.StartDuration.Seconds(),
			OtherCores:           otherDuringSync,
		}
		if n > 0 && otherDuringSync > otherCoresLimit {
			res.warn("other processes used %.2f cores while tr-%s replayed its stream: its sync time is inflated", otherDuringSync, label)
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
		if sr.Memory, err = readMemory(gw); err != nil {
			return fmt.Errorf("gateway %s memory: %w", gw.Name, err)
		}
		if n > 0 && len(res.Sync) > 0 {
			empty := res.Sync[0].Memory
			sr.RSSPerEntryBytes = float64(sr.Memory.RSSBytes-empty.RSSBytes) / float64(n)
			sr.HeapPerEntryBytes = float64(sr.Memory.HeapAllocGC-empty.HeapAllocGC) / float64(n)
		}
		res.Sync = append(res.Sync, sr)
		logf("  synced %d entries %.2fs after spawn (%.2fs after ready); RSS %.1f MB, live heap %.1f MB",
			n, sr.StartToSyncedSeconds, sr.ReadyToSyncedSeconds, mb(sr.Memory.RSSBytes), mb(sr.Memory.HeapAllocGC))
		gws[n] = gw
		if n >= snapshotEvery {
			if err := measureJoin(ctx, res, start, gw, backend, ns.URL, spec, label, n, cacheSize); err != nil {
				return err
			}
		}
	}

	// The measured configurations.
	revokedTok := revokedToken(largestLabel, largest/2)
	cases := []*benchCase{
		{ID: "plain", Label: "no middleware", Kind: "baseline", gw: base, URL: base.WebURL + resourcePath},
		{ID: "passthrough", Label: "pass-through", Detail: "yaegi plugin", Kind: "floor", gw: base, URL: base.WebURL + harness.PassPrefix + resourcePath},
		{ID: "forwardauth", Label: "ForwardAuth", Detail: fmt.Sprintf("Go service, %s", largestLabel), Kind: "forwardauth", gw: base, URL: base.WebURL + "/fa" + resourcePath},
	}
	for _, n := range sizes {
		l := sizeLabel(n)
		cases = append(cases, &benchCase{ID: "tokenrevoke-" + l, Label: "tokenrevoke", Detail: l + " entries", Kind: "tokenrevoke", gw: gws[n], URL: gws[n].WebURL + resourcePath})
	}
	cases = append(cases, &benchCase{
		ID: "tokenrevoke-" + largestLabel + "-revoked", Label: "tokenrevoke", Detail: largestLabel + ", revoked token", Kind: "revoked",
		gw: gws[largest], URL: gws[largest].WebURL + resourcePath, Expect: http.StatusUnauthorized, token: revokedTok,
	})
	big := gws[largest]
	cases = append(cases,
		&benchCase{ID: "plain-tr-" + largestLabel, Label: "no middleware", Detail: "tr-" + largestLabel + " gateway", Kind: "baseline-same",
			gw: big, URL: big.WebURL + harness.PlainPrefix + resourcePath},
		&benchCase{ID: "passthrough-tr-" + largestLabel, Label: "pass-through", Detail: "tr-" + largestLabel + " gateway", Kind: "floor-same",
			gw: big, URL: big.WebURL + harness.PassPrefix + resourcePath},
	)
	for _, c := range cases {
		if c.token == "" {
			c.token, c.Token, c.Expect = goodToken, "valid", http.StatusOK
		} else {
			c.Token = "revoked"
		}
		if err := expectStatus(c.URL, c.token, c.Expect); err != nil {
			return fmt.Errorf("sanity check %s: %w", c.ID, err)
		}
	}
	// ForwardAuth must reject the revoked token too, or it is not doing the same job.
	if err := expectStatus(base.WebURL+"/fa"+resourcePath, revokedTok, http.StatusUnauthorized); err != nil {
		return fmt.Errorf("sanity check forwardauth with a revoked token: %w", err)
	}
	res.Cases = cases
	res.Commands.WrkExample = lg.commandLine("http://127.0.0.1:<port>"+resourcePath, "", o.duration)

	// Warm every route (connection pools, the interpreter's first calls), then measure
	// round-robin, each round starting one configuration later than the previous one.
	logf("warming up %d configurations (%v each)", len(cases), o.warmup)
	for _, c := range cases {
		if _, err := lg.run(ctx, c.URL, c.token, o.warmup); err != nil {
			return err
		}
	}
	total := time.Duration(o.rounds*len(cases)) * (o.duration + 500*time.Millisecond)
	logf("measuring: %d rounds x %d configurations x %v (about %v)", o.rounds, len(cases), o.duration, total.Round(time.Second))
	for r := 0; r < o.rounds; r++ {
		for k := range cases {
			c := cases[(k+r)%len(cases)]
			var rr runResult
			for attempt := 1; ; attempt++ {
				if rr, err = measure(ctx, lg, c, backend, r, k, o.duration); err != nil {
					return err
				}
				rr.Attempt = attempt
				if rr.OtherCores <= otherCoresLimit || attempt > o.retries {
					break
				}
				// Something else took CPU during the run: keep it on record, measure again.
				res.Discarded = append(res.Discarded, rr)
				logf("  round %d %-24s %7.0f req/s, disturbed (other processes %.2f cores): measuring again", r+1, c.ID, rr.RPS, rr.OtherCores)
				if err := sleepCtx(ctx, 2*time.Second); err != nil {
					return err
				}
			}
			if !rr.OK {
				res.warn("round %d, %s: %s", r+1, c.ID, rr.Problem)
			}
			res.Runs = append(res.Runs, rr)
			logf("  round %d %-24s %7.0f req/s  p50 %5.2f ms  p99 %6.2f ms  gateway %4.0f µs CPU, %5.0f B alloc per req, %3d GCs; other processes %.2f cores%s",
				r+1, c.ID, rr.RPS, rr.P50Ms, rr.P99Ms, rr.GatewayCPUUsPerReq, rr.GatewayAllocPerReq, rr.GatewayGCs, rr.OtherCores, okMark(rr))
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return err
			}
		}
	}

	if o.pprof {
		pd := 5 * time.Second
		if o.quick {
			pd = 3 * time.Second
		}
		for _, c := range []*benchCase{res.caseByKind("tokenrevoke"), cases[1]} {
			logf("CPU profile of %s (%v, extra unmeasured run)", c.ID, pd)
			p, err := profileCase(ctx, lg, c, pd, o.outDir, res.filePrefix())
			if err != nil {
				res.warn("profile of %s: %v", c.ID, err)
				continue
			}
			res.Profiles = append(res.Profiles, p)
		}
	}

	// The throughput gateways are done: check them and stop them, so that the
	// propagation pair has the machine to itself.
	if err := checkGateways(res, append([]*harness.Traefik{base}, mapValues(gws)...)...); err != nil {
		return err
	}
	base.Close()
	for _, gw := range gws {
		gw.Close()
	}

	// Propagation between two more gateways on their own (empty) stream.
	logf("starting gateways prop-a and prop-b for the propagation measurement")
	var pair [2]*harness.Traefik
	for i, name := range []string{"prop-a", "prop-b"} {
		gw, err := start(harness.TraefikOptions{
			Name:    name,
			Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: pluginConfig(ns.URL, propStream, "bench-"+name, cacheSize)},
		})
		if err != nil {
			return err
		}
		if err := waitSynced(ctx, gw, 0, time.Minute); err != nil {
			return err
		}
		pair[i] = gw
	}
	logf("propagation: %d revocations on prop-a, polling prop-b", o.revocations)
	win := startCPUWindow(os.Getpid(), pair[0].Pid(), pair[1].Pid())
	if res.Propagation, err = measurePropagation(ctx, pair[0], pair[1], o.revocations, o.pollGap); err != nil {
		return fmt.Errorf("propagation: %w", err)
	}
	res.Propagation.OtherCores = win.otherCores(0)
	if res.Propagation.OtherCores > otherCoresLimit {
		res.warn("other processes used %.2f cores during the propagation measurement", res.Propagation.OtherCores)
	}
	p := res.Propagation
	logf("  A's 200 → B's 401: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, missed %d; from sending the revoke: p50 %.2f ms, p99 %.2f ms; revoke round trip on A p50 %.2f ms; detection interval p50 %.2f ms, p99 %.2f ms",
		p.AfterAckP50Us/1000, p.AfterAckP90Us/1000, p.AfterAckP99Us/1000, p.AfterAckMaxUs/1000, p.Missed,
		p.P50Us/1000, p.P99Us/1000, p.AckP50Us/1000, p.DetectP50Us/1000, p.DetectP99Us/1000)
	if p.Missed > 0 {
		res.warn("propagation: %d of %d revocations not seen on B within %v", p.Missed, p.Samples, propLimit)
	}

	if err := checkGateways(res, pair[0], pair[1]); err != nil {
		return err
	}

	res.finish()
	files, err := res.write(o)
	if err != nil {
		return err
	}
	for _, f := range files {
		logf("wrote %s", f)
	}
	fmt.Println()
	fmt.Println(res.consoleSummary())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// waitForIdle waits until the 1-minute load average is below max, or limit passed.
func waitForIdle(ctx context.Context, max float64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		la := loadAvg()[0]
		if la < max {
			return nil
		}
		if time.Now().After(deadline) {
			logf("load average still %.2f after waiting %v; starting anyway", la, limit)
			return nil
		}
		logf("load average %.2f (want < %.1f): waiting", la, max)
		if err := sleepCtx(ctx, 15*time.Second); err != nil {
			return err
		}
	}
}

// measure runs wrk once against a case and checks that every answer had the expected
// status: 2xx for valid tokens, 401 (and nothing reaching the backend) for revoked ones.
func measure(ctx context.Context, lg *loadGen, c *benchCase, backend *harness.Backend, round, order int, d time.Duration) (runResult, error) {
	rr := runResult{Case: c.ID, Round: round + 1, Order: order + 1, StartedAt: time.Now().UTC(), LoadAvg1: loadAvg()[0]}
	pid := c.gw.Pid()
	g0, err := cpuTicks(pid)
	if err != nil {
		return rr, err
	}
	s0, err := cpuTicks(os.Getpid())
	if err != nil {
		return rr, err
	}
	m0, err := readMemStats(c.gw)
	if err != nil {
		return rr, err
	}
	b0 := backend.Count()
	busy0, steal0, err := machineTicks()
	if err != nil {
		return rr, err
	}
	t0 := time.Now()
	w, err := lg.run(ctx, c.URL, c.token, d)
	if err != nil {
		return rr, err
	}
	busy1, steal1, _ := machineTicks()
	wall := time.Since(t0).Seconds()
	g1, _ := cpuTicks(pid)
	s1, _ := cpuTicks(os.Getpid())
	mine := float64(g1-g0+s1-s0)/clockTicks + w.CPUSeconds
	rr.OtherCores = max(0, float64(busy1-busy0)/clockTicks-mine) / wall
	rr.StealCores = float64(steal1-steal0) / clockTicks / wall
	m1, err := readMemStats(c.gw)
	if err != nil {
		return rr, err
	}
	rr.GatewayGCs = m1.NumGC - m0.NumGC
	rr.BackendRequests = backend.Count() - b0
	rr.Wrk = w
	rr.RPS = w.RPS()
	rr.P50Ms, rr.P90Ms, rr.P99Ms, rr.MaxMs = float64(w.P50Us)/1000, float64(w.P90Us)/1000, float64(w.P99Us)/1000, float64(w.LatMaxUs)/1000
	rr.Requests, rr.Non2xx, rr.SockErrs = w.Requests, w.ErrStatus, w.SocketErrors()
	if w.Requests > 0 {
		rr.GatewayCPUUsPerReq = float64(g1-g0) / clockTicks * 1e6 / float64(w.Requests)
		rr.BenchCPUUsPerReq = float64(s1-s0) / clockTicks * 1e6 / float64(w.Requests)
		rr.GatewayAllocPerReq = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(w.Requests)
	}
	var problems []string
	if w.Requests == 0 {
		problems = append(problems, "no request completed")
	}
	if rr.SockErrs > 0 {
		problems = append(problems, fmt.Sprintf("%d socket errors", rr.SockErrs))
	}
	if c.Expect == http.StatusOK && rr.Non2xx > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d answers were not 2xx", rr.Non2xx, rr.Requests))
	}
	if c.Expect == http.StatusUnauthorized {
		if rr.Non2xx != rr.Requests {
			problems = append(problems, fmt.Sprintf("%d of %d answers were 2xx/3xx, want all 401", rr.Requests-rr.Non2xx, rr.Requests))
		}
		if rr.BackendRequests != 0 {
			problems = append(problems, fmt.Sprintf("the backend received %d requests with the revoked token", rr.BackendRequests))
		}
	}
	rr.OK = len(problems) == 0
	rr.Problem = strings.Join(problems, "; ")
	return rr, nil
}

func okMark(rr runResult) string {
	if rr.OK {
		return ""
	}
	return "  !! " + rr.Problem
}

// profileInfo names the files of one CPU profile.
type profileInfo struct {
	Case    string  `json:"case"`
	Seconds float64 `json:"seconds"`
	Profile string  `json:"profile"`
	Top     string  `json:"top,omitempty"`
}

// profileCase loads a case with wrk while Traefik's /debug/pprof/profile records.
func profileCase(ctx context.Context, lg *loadGen, c *benchCase, d time.Duration, outDir, prefix string) (profileInfo, error) {
	pi := profileInfo{Case: c.ID, Seconds: d.Seconds()}
	done := make(chan error, 1)
	go func() {
		_, err := lg.run(ctx, c.URL, c.token, d+2*time.Second)
		done <- err
	}()
	if err := sleepCtx(ctx, time.Second); err != nil {
		<-done
		return pi, err
	}
	path := filepath.Join(outDir, prefix+c.ID+"-cpu.pprof")
	err := fetchProfile(ctx, c.gw, d, path)
	if werr := <-done; err == nil {
		err = werr
	}
	if err != nil {
		return pi, err
	}
	pi.Profile, pi.Top = path, writeTop(ctx, path)
	return pi, nil
}

// fetchProfile records a CPU profile of a gateway for d and stores it at path.
func fetchProfile(ctx context.Context, gw *harness.Traefik, d time.Duration, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", gw.AdminURL, int(d/time.Second)), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeTop stores "go tool pprof -top -cum" next to the profile; "" when that fails.
func writeTop(ctx context.Context, path string) string {
	top, err := pprofTop(ctx, path)
	if err != nil {
		return ""
	}
	txt := strings.TrimSuffix(path, ".pprof") + "-top.txt"
	if os.WriteFile(txt, []byte(top), 0o644) != nil {
		return ""
	}
	return txt
}

// checkGateways requires every gateway to be alive and free of errors, except the "context
// canceled" ones Traefik logs for requests in flight when wrk stops.
func checkGateways(res *results, gateways ...*harness.Traefik) error {
	for _, gw := range gateways {
		if gw.Exited() {
			return fmt.Errorf("gateway %s exited during the benchmark:\n%s", gw.Name, gatewayTrouble(gw))
		}
		canceled, shown := 0, 0
		for _, line := range gw.ErrorLines() {
			if strings.Contains(line, "context canceled") {
				canceled++
				continue
			}
			if shown++; shown <= 10 {
				res.warn("gateway %s logged: %s", gw.Name, truncate(line, 300))
			}
		}
		if shown > 10 {
			res.warn("gateway %s logged %d more error lines", gw.Name, shown-10)
		}
		if canceled > 0 {
			res.note("gateway %s logged %d \"context canceled\" errors: requests cut off when a wrk run ends", gw.Name, canceled)
		}
	}
	return nil
}

// gatewayTrouble describes a failed gateway: its error and panic lines, the end of its
// log, and where the log is kept (the work directory is no longer removed).
func gatewayTrouble(gw *harness.Traefik) string {
	gw.KeepWorkDir()
	var b strings.Builder
	lines := gw.ErrorLines()
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	for _, l := range lines {
		b.WriteString("  " + truncate(l, 400) + "\n")
	}
	b.WriteString("--- last log lines ---\n" + gw.LogTail(25) + "\n--- full log: " + gw.LogPath + " (kept)")
	return b.String()
}

func mapValues(m map[int]*harness.Traefik) []*harness.Traefik {
	out := make([]*harness.Traefik, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func syncProfileTime(o *options) time.Duration {
	if o.quick {
		return 5 * time.Second
	}
	return 10 * time.Second
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
