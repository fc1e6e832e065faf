package harness

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestToYAML(t *testing.T) {
	got, err := ToYAML(map[string]any{
		"b":     []any{map[string]any{"id": "portal", "secret": "s3cret"}, "x"},
		"a":     map[string]any{"n": 1000000, "t": true, "rule": "PathPrefix(`/`)"},
		"empty": map[string]any{},
		"list":  []string{},
		"X-Odd": "q\"uote",
		"a b":   nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `X-Odd: "q\"uote"
a:
  n: 1000000
  rule: "PathPrefix(` + "`/`" + `)"
  t: true
"a b": null
b:
  - id: "portal"
    secret: "s3cret"
  - "x"
empty: {}
list: []
`
	if got != want {
		t.Fatalf("ToYAML:\n%s\nwant:\n%s", got, want)
	}
}

func TestBackendEchoesAndRecords(t *testing.T) {
	b := StartBackend(t)
	req, _ := http.NewRequest(http.MethodPut, b.URL+"/x/y?q=1&r=2", strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var echo EchoRequest
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if echo.Method != "PUT" || echo.Path != "/x/y" || echo.Query != "q=1&r=2" || echo.Body != "hello" ||
		echo.Headers.Get("Authorization") != "Bearer abc" {
		t.Fatalf("echo = %+v", echo)
	}
	resp, err = http.Get(b.URL + ProbePath)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if b.Count() != 1 || len(b.Requests()) != 1 {
		t.Fatalf("count %d, records %d; want 1 and 1 (probes are not counted)", b.Count(), len(b.Requests()))
	}
	if !b.SawPath("/x/y") || !b.SawSubstring("Bearer abc") || b.SawSubstring("nope") {
		t.Fatal("Saw* disagree with the recorded request")
	}
}

func TestNATSRestartKeepsPortAndStore(t *testing.T) {
	n := StartNATS(t, NATSOptions{JetStream: true, Monitor: true})
	nc, err := nats.Connect(n.URL, nats.Name("probe-client"), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if c, err := n.ConnectionsNamed("probe-client"); err != nil || c != 1 {
		t.Fatalf("ConnectionsNamed = %d, %v; want 1", c, err)
	}
	names, err := n.MonitorConnz()
	if err != nil || len(names) != 1 || names[0] != "probe-client" {
		t.Fatalf("MonitorConnz = %v, %v", names, err)
	}
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("keep.one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	port, store := n.Port(), n.StoreDir()
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if n.Port() != port || n.StoreDir() != store {
		t.Fatal("restart moved the server")
	}
	if err := poll(10*time.Second, 50*time.Millisecond, func() error {
		info, err := js.StreamInfo("KEEP")
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			t.Fatalf("stream has %d messages after restart, want 1", info.State.Msgs)
		}
		return nil
	}); err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	if c, err := n.ConnectionsNamed("probe-client"); err != nil || c != 1 {
		t.Fatalf("after reconnect ConnectionsNamed = %d, %v; want 1", c, err)
	}
}

// TestTraefikWithPassthrough checks the harness against a real Traefik without the
// tokenrevoke plugin: startup, routing, the pass-through plugin, reloads, pprof.
func TestTraefikWithPassthrough(t *testing.T) {
	b := StartBackend(t)
	dyn := Dynamic{BackendURL: b.URL, PlainRoute: true, PassthroughRoute: true}
	tr := StartTraefik(t, TraefikOptions{Name: "pt", NoTokenrevoke: true, Passthrough: true, API: true, Dynamic: dyn})

	for _, path := range []string{"/", "/plain/x", "/pass/y?z=1"} {
		resp, err := http.Get(tr.WebURL + path)
		if err != nil {
			t.Fatal(err)
		}
		var echo EchoRequest
		err = json.NewDecoder(resp.Body).Decode(&echo)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
		}
	}
	if b.Count() != 3 {
		t.Fatalf("backend count %d, want 3", b.Count())
	}
	for i := 1; i <= 3; i++ {
		dyn.Priority = 100 + i
		tr.Reload(t, dyn)
	}
	if n, err := tr.Goroutines(); err != nil || n < 10 {
		t.Fatalf("Goroutines = %d, %v", n, err)
	}
	if !tr.LogContains("Plugins loaded.") {
		t.Fatal(`log lacks "Plugins loaded."`)
	}
	if errs := tr.ErrorLines(); len(errs) > 0 {
		t.Fatalf("error lines in the log:\n%s", strings.Join(errs, "\n"))
	}
}
