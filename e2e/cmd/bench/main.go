// Command bench measures the tokenrevoke plugin inside real Traefik v3.6.12 processes
// on this machine: throughput and latency next to Traefik without middleware, with a
// pass-through yaegi plugin and with ForwardAuth to a compiled Go service; revocation
// propagation between two gateways; and the time and memory a fresh gateway needs to
// replay 100k and 1M revocations from the JetStream stream.
//
//	cd e2e && go run ./cmd/bench          # full run (6-8 minutes), results in ../bench-results
//	cd e2e && go run ./cmd/bench -quick   # smoke check (about 3 minutes), results in ../bench-results/tmp
//
// The load generator is wrk (Debian package "wrk"). Everything listens on 127.0.0.1;
// Ctrl-C stops every process this command started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// options are the command-line settings of one benchmark run.
type options struct {
	quick       bool
	duration    time.Duration // one measured wrk run
	warmup      time.Duration // one warm-up wrk run per configuration
	rounds      int
	conns       int
	threads     int
	sizes       []int // store sizes for the tokenrevoke gateways, besides 0
	revocations int   // propagation samples
	pollGap     time.Duration
	outDir      string
	docPath     string
	pprof       bool
	wrk         string
	timeout     time.Duration
	waitIdle    time.Duration
	pluginRev   string
	retries     int
	maxLoad     float64
	keep        bool
}

func parseFlags() (*options, error) {
	o := &options{}
	flag.BoolVar(&o.quick, "quick", false, "smoke check: short runs, 100 propagation samples, results under bench-results/tmp")
	dur := flag.Duration("duration", 0, "length of one measured run (default 8s, 2s with -quick)")
	warm := flag.Duration("warmup", 0, "warm-up run per configuration before the rounds (default 2s, 1s with -quick)")
	flag.IntVar(&o.rounds, "rounds", 3, "measured runs per configuration, interleaved round-robin")
	flag.IntVar(&o.retries, "retries", 2, "measure a run again (at most this many times) when other processes took CPU during it")
	flag.IntVar(&o.conns, "c", 32, "wrk connections")
	flag.IntVar(&o.threads, "t", 1, "wrk threads")
	sizes := flag.String("sizes", "100000,1000000", "revoked entries preloaded into the tokenrevoke gateways (besides 0), comma-separated")
	flag.IntVar(&o.revocations, "revocations", 0, "propagation samples (default 1000, 100 with -quick)")
	flag.DurationVar(&o.pollGap, "poll-gap", 250*time.Microsecond, "pause between two polls of gateway B in the propagation measurement")
	flag.StringVar(&o.outDir, "out", "", "results directory (default <repo>/bench-results, or <repo>/bench-results/tmp with -quick)")
	flag.StringVar(&o.docPath, "doc", "", `markdown file whose traefik-bench section is rewritten (default <repo>/BENCHMARKS.md; none with -quick; "-" for none)`)
	flag.BoolVar(&o.pprof, "pprof", true, "take a CPU profile of the largest tokenrevoke gateway during one extra (unmeasured) run")
	flag.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.StringVar(&o.pluginRev, "plugin-rev", "", "benchmark the plugin as committed at this git revision (e.g. HEAD) instead of the work tree")
	flag.DurationVar(&o.waitIdle, "wait-idle", 0, "before starting, wait up to this long for the 1-minute load average to drop below -max-load")
	flag.Float64Var(&o.maxLoad, "max-load", 1.0, "load average above which the run is flagged as noisy")
	flag.BoolVar(&o.keep, "keep", false, "keep the Traefik work directories (configs, logs)")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	o.duration, o.warmup = 8*time.Second, 2*time.Second
	if o.quick {
		o.duration, o.warmup = 2*time.Second, time.Second
	}
	if *dur > 0 {
		o.duration = *dur
	}
	if *warm > 0 {
		o.warmup = *warm
	}
	if o.revocations == 0 {
		o.revocations = 1000
		if o.quick {
			o.revocations = 100
		}
	}
	if o.rounds < 1 || o.conns < 1 || o.threads < 1 || o.threads > o.conns {
		return nil, errors.New("-rounds, -c and -t must be positive, with -t <= -c")
	}
	for _, s := range strings.Split(*sizes, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10_000_000 {
			return nil, fmt.Errorf("-sizes: %q is not a number between 1 and 10000000", s)
		}
		o.sizes = append(o.sizes, n)
	}
	for i := 1; i < len(o.sizes); i++ {
		if o.sizes[i] <= o.sizes[i-1] {
			return nil, errors.New("-sizes must be increasing")
		}
	}

	root, err := harness.RepoRoot()
	if err != nil {
		return nil, err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(root, "bench-results")
		if o.quick {
			o.outDir = filepath.Join(root, "bench-results", "tmp")
		}
	}
	switch {
	case o.docPath == "-":
		o.docPath = ""
	case o.docPath == "" && !o.quick:
		o.docPath = filepath.Join(root, "BENCHMARKS.md")
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// Ctrl-C or SIGTERM cancel the context; every wait and every wrk run watches it,
	// and run's deferred closers then stop the gateways and servers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// A closed stdout pipe (| tee after Ctrl-C) must not kill us before the clean-up.
	signal.Ignore(syscall.SIGPIPE)

	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// logf prints a progress line with the time since start.
var started = time.Now()

func logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}
