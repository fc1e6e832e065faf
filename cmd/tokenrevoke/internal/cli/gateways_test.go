package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// These tests read instances registered with nats.go's micro package (the protocol's
// reference implementation) carrying the data gateways send. The command against real
// gateways (the plugin under yaegi, and in real Traefik) is tested in the e2e module:
// e2e/propagation/fleet_test.go and e2e/fleet_test.go.

func addMicroInstance(t *testing.T, url, gateway string, st gatewayStatus) micro.Service {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "tokenrevoke",
		Version:     "0.1.0",
		Description: "tokenrevoke gateway " + gateway,
		Metadata:    map[string]string{"gateway": gateway, "mode": st.Mode},
		StatsHandler: func(*micro.Endpoint) any {
			return st
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddEndpoint("status", micro.HandlerFunc(func(r micro.Request) { _ = r.RespondJSON(st) }),
		micro.WithEndpointSubject("_tokenrevoke.status."+gateway)); err != nil {
		t.Fatal(err)
	}
	// The instance's subscriptions are in place at the server before the test asks.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return svc
}

func TestGatewaysNoneAnswered(t *testing.T) {
	url := startNATS(t)
	r := mustRun(t, url, "", ExitError, "gateways", "--timeout", "200ms")
	if !strings.Contains(r.stderr, "no gateway answered $SRV.PING.tokenrevoke within 200ms") || r.stdout != "" {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	mustRun(t, url, "", ExitUsage, "gateways", "--timeout", "0s")
	mustRun(t, url, "", ExitUsage, "gateways", "extra-arg")
}

func TestGatewaysTableJSONAndExpect(t *testing.T) {
	url := startNATS(t)
	b := addMicroInstance(t, url, "edge-b", gatewayStatus{Gateway: "edge-b", Version: "0.1.0", Mode: "jetstream",
		Entries: 7, Capacity: 100, Evictions: 2, Synced: true, Connected: true, Stream: "REVOCATIONS", StreamSeq: 42})
	a := addMicroInstance(t, url, "edge-a", gatewayStatus{Gateway: "edge-a", Version: "0.1.0", Mode: "nats",
		Entries: 3, Capacity: 100, Connected: true, LastError: "nats: something\nwent wrong"})
	// A different service on the same server is not listed.
	other, _ := nats.Connect(url)
	t.Cleanup(other.Close)
	if _, err := micro.AddService(other, micro.Config{Name: "billing", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}

	r := mustRun(t, url, "", ExitOK, "gateways", "--json", "--timeout", "500ms")
	var lines []gatewayLine
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var g gatewayLine
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatalf("%v: %q", err, l)
		}
		lines = append(lines, g)
	}
	if len(lines) != 2 {
		t.Fatalf("%d gateways: %s", len(lines), r.stdout)
	}
	ga, gb := lines[0], lines[1] // sorted by gateway name
	if ga.ID != a.Info().ID || gb.ID != b.Info().ID || ga.Service != "tokenrevoke" || ga.Version != "0.1.0" ||
		ga.Metadata["gateway"] != "edge-a" || ga.Description != "tokenrevoke gateway edge-a" || ga.Started == nil ||
		len(ga.Missing) != 0 || ga.Status == nil || ga.Status.Entries != 3 || ga.Status.LastError == "" ||
		gb.Status == nil || gb.Status.Entries != 7 || gb.Status.StreamSeq != 42 || !gb.Status.Synced || gb.Status.Evictions != 2 {
		t.Fatalf("gateways: %s", r.stdout)
	}

	r = mustRun(t, url, "", ExitOK, "gateways", "--timeout", "500ms")
	out := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(out) != 3 || !strings.HasPrefix(out[0], "GATEWAY") || !strings.Contains(out[0], "LAST ERROR") ||
		!strings.HasPrefix(out[1], "edge-a") || !strings.HasPrefix(out[2], "edge-b") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	for _, want := range []string{"nats: something went wrong", a.Info().ID} {
		if !strings.Contains(out[1], want) {
			t.Fatalf("row %q lacks %q", out[1], want)
		}
	}
	if f := strings.Fields(out[2]); len(f) != 11 || f[1] != "0.1.0" || f[2] != "jetstream" || f[3] != "7" || f[4] != "100" ||
		f[5] != "2" || f[6] != "yes" || f[7] != "yes" || f[8] != "42" || f[9] != "-" {
		t.Fatalf("row %q", out[2])
	}
	if !strings.Contains(r.stderr, "2 gateway(s): 1 synced, 2 connected") {
		t.Fatalf("stderr %q", r.stderr)
	}

	// --expect: stops as soon as that many answered, fails when fewer did.
	start := time.Now()
	mustRun(t, url, "", ExitOK, "gateways", "--expect", "2", "--timeout", "20s")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("--expect 2 waited %v", d)
	}
	r = mustRun(t, url, "", ExitError, "gateways", "--expect", "3", "--timeout", "300ms")
	if !strings.Contains(r.stderr, "2 gateway(s) answered within 300ms, expected 3") {
		t.Fatalf("stderr %q", r.stderr)
	}
}
