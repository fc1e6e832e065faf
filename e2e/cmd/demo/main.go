// Command demo runs the whole setup on this machine: an embedded nats-server with
// JetStream, an echo backend and two Traefik gateways (A and B) with the tokenrevoke
// plugin, then prints curl commands that show a revocation made on A taking effect on
// B. Ctrl-C (or SIGTERM) stops everything.
//
//	cd e2e && go run ./cmd/demo [-ports 8081,8082] [-stream REVOCATIONS]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

const revokePath = "/api/id/v1/auth/token/revoke"

// metricsPath is where each demo gateway answers Prometheus metrics.
const metricsPath = "/metrics"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ports := flag.String("ports", "8081,8082", "web ports of gateways A and B (a busy port is replaced by a free one)")
	stream := flag.String("stream", "REVOCATIONS", `JetStream stream for nats.stream ("" for core NATS only)`)
	subject := flag.String("subject", "tokens.revoked", "NATS subject")
	natsPort := flag.Int("nats-port", 0, "nats-server client port (0: a free one)")
	keep := flag.Bool("keep", false, "keep the Traefik work directories (configs, logs) on exit")
	flag.Parse()

	webPorts, err := pickPorts(*ports)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// When stdout is a pipe whose reader is gone (| tee, after Ctrl-C), a write must
	// fail instead of killing the demo before it has stopped the gateways.
	signal.Ignore(syscall.SIGPIPE)

	fmt.Println("Looking for the Traefik binary (the first build takes 10-15 minutes; progress follows) ...")
	bin, err := harness.TraefikBinaryPath()
	if err != nil {
		return err
	}
	fmt.Println("Traefik:", bin)

	var closers []func()
	defer func() {
		fmt.Println("\nStopping ...")
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		fmt.Println("Stopped.")
	}()

	n, err := harness.NewNATS(harness.NATSOptions{Port: *natsPort, JetStream: true, Monitor: true})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	closers = append(closers, n.Close)
	fmt.Printf("nats-server: %s (JetStream store %s, monitor %s)\n", n.URL, n.StoreDir(), n.MonitorURL)

	backend, err := harness.NewBackend()
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	closers = append(closers, backend.Close)
	fmt.Println("echo backend:", backend.URL)

	gws := make([]*harness.Traefik, 2)
	for i, name := range []string{"a", "b"} {
		natsCfg := map[string]any{
			"servers": []any{n.URL},
			"subject": *subject,
			"name":    "gw-" + name,
		}
		if *stream != "" {
			natsCfg["stream"] = *stream
		}
		plugin := map[string]any{
			"revokePath":  revokePath,
			"clients":     []any{map[string]any{"id": "portal", "secret": "s3cret"}},
			"nats":        natsCfg,
			"metricsPath": metricsPath,
		}
		fmt.Printf("starting gateway %s on 127.0.0.1:%d ...\n", strings.ToUpper(name), webPorts[i])
		gw, err := harness.NewTraefik(harness.TraefikOptions{
			Name:        name,
			Binary:      bin,
			WebPort:     webPorts[i],
			API:         true,
			LogLevel:    "INFO",
			KeepWorkDir: *keep,
			Dynamic:     harness.Dynamic{BackendURL: backend.URL, Plugin: plugin},
		})
		if gw != nil {
			closers = append(closers, gw.Close)
		}
		if err != nil {
			if gw != nil {
				fmt.Fprintf(os.Stderr, "--- gateway %s log (%s) ---\n%s\n", name, gw.LogPath, gw.LogTail(40))
			}
			return fmt.Errorf("gateway %s: %w", name, err)
		}
		gws[i] = gw
		fmt.Printf("gateway %s ready in %v (log %s)\n", strings.ToUpper(name), gw.StartDuration.Round(time.Millisecond), gw.LogPath)
	}

	a, b := gws[0], gws[1]
	token := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	fmt.Printf(`
Ready. Gateway A: %[1]s   Gateway B: %[2]s   (client portal / s3cret)

  # 1. B forwards a request with a bearer token to the backend (200, echoed request):
  curl -i -H 'Authorization: Bearer %[3]s' %[2]s/api/orders

  # 2. Revoke the token through A (200, empty body):
  curl -i -u portal:s3cret -d token=%[3]s %[1]s%[4]s

  # 3. B now rejects it (401, WWW-Authenticate: Bearer error="invalid_token"):
  curl -i -H 'Authorization: Bearer %[3]s' %[2]s/api/orders

  # Same revocation with the client credentials in the form instead of Basic auth:
  curl -i -d token=another-token -d client_id=portal -d client_secret=s3cret %[1]s%[4]s

  # NATS connections (one per gateway): %[5]s/connz
`, a.WebURL, b.WebURL, token, revokePath, n.MonitorURL)
	fmt.Print(fleetHelp(n.URL, a.WebURL, b.WebURL, *stream, *subject, token))
	fmt.Println("\nPress Ctrl-C to stop.")

	// Wait for a signal, or for a gateway to die.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			fmt.Println("\nreceived", s)
			return nil
		case <-tick.C:
			for _, gw := range gws {
				if gw.Exited() {
					fmt.Fprintf(os.Stderr, "--- gateway %s log (%s) ---\n%s\n", gw.Name, gw.LogPath, gw.LogTail(40))
					return fmt.Errorf("gateway %s exited", gw.Name)
				}
			}
		}
	}
}

// pickPorts parses "A,B" and swaps any port that cannot be bound for a free one.
func pickPorts(spec string) ([2]int, error) {
	var out [2]int
	parts := strings.Split(spec, ",")
	if len(parts) != 2 {
		return out, fmt.Errorf("-ports wants two ports, like 8081,8082; got %q", spec)
	}
	for i, p := range parts {
		port, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || port < 0 || port > 65535 {
			return out, fmt.Errorf("-ports: bad port %q", p)
		}
		if port == 0 || !harness.PortFree(port) {
			free, err := harness.FreePort()
			if err != nil {
				return out, err
			}
			if port != 0 {
				fmt.Printf("port %d is busy; using %d instead\n", port, free)
			}
			port = free
		}
		out[i] = port
	}
	if out[0] == out[1] {
		return out, fmt.Errorf("-ports: the two gateways need different ports")
	}
	return out, nil
}
