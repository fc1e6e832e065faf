package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// startWatch runs watch in the background and returns once it listens.
func startWatch(t *testing.T, url string, args ...string) (*syncBuffer, <-chan int) {
	t.Helper()
	var out, errb syncBuffer
	ready := make(chan struct{})
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Ready: func() { close(ready) }}
	go func() { done <- Run(ctx, append([]string{"-s", url, "watch"}, args...), env) }()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("watch exited %d: %s", code, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not start")
	}
	return &out, done
}

func waitExit(t *testing.T, done <-chan int, out *syncBuffer) {
	t.Helper()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch exited %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch did not print its messages; so far:\n%s", out.String())
	}
}

// watch (JetStream) prints what revoke and revoke-session publish, decoded.
func TestWatchPrintsRevocations(t *testing.T) {
	url := startNATS(t)
	mustRun(t, url, "", 0, "revoke", "before-watch") // creates the stream; not shown (new only)
	out, done := startWatch(t, url, "--json", "--count", "2")
	tok := makeJWT(`{"exp":4102444800}`, "sig")
	mustRun(t, url, tok, 0, "revoke", "-", "--origin", "ops")
	mustRun(t, url, "", 0, "revoke-session", "--issuer", "iss", "--sid", "the-sid")
	waitExit(t, done, out)

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("watch printed %d lines:\n%s", len(lines), out.String())
	}
	var a, b watchLine
	if json.Unmarshal([]byte(lines[0]), &a) != nil || json.Unmarshal([]byte(lines[1]), &b) != nil {
		t.Fatalf("not JSON lines:\n%s", out.String())
	}
	jwsKey := sumHex(tok[:strings.LastIndexByte(tok, '.')])
	if a.Kind != "jws" || a.Key != jwsKey || a.Exp != 4102444860 || a.Origin != "ops" || a.Seq != 2 || a.V != 2 || a.Subject != "tokens.revoked."+jwsKey {
		t.Fatalf("first line %+v", a)
	}
	if b.Kind != "sid" || b.Key != sumHex("iss\x00the-sid") || b.Cutoff == 0 || b.Seq != 3 {
		t.Fatalf("second line %+v", b)
	}
	if strings.Contains(out.String(), "the-sid") || strings.Contains(out.String(), "sig\"") {
		t.Fatal("raw values in watch output")
	}

	// --all replays the stored ones; human output.
	out, done = startWatch(t, url, "--all", "--count", "3")
	waitExit(t, done, out)
	text := out.String()
	if !strings.Contains(text, sumHex("before-watch")) || !strings.Contains(text, jwsKey) || !strings.Contains(text, "cutoff") {
		t.Fatalf("watch --all:\n%s", text)
	}
}

// watch on core NATS (no stream) sees core publishes, and flags malformed messages.
func TestWatchCoreNATS(t *testing.T) {
	url := startNATS(t)
	out, done := startWatch(t, url, "--stream", "", "--json", "--count", "2")
	mustRun(t, url, "", 0, "revoke", "core-token", "--stream", "")
	nc, _ := client(t, url)
	if err := nc.Publish("tokens.revoked.bogus", []byte(`{"v":2,"kind":"token","key":"zz","exp":5,"secret":"x"}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	waitExit(t, done, out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var a, b watchLine
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &a) != nil || json.Unmarshal([]byte(lines[1]), &b) != nil {
		t.Fatalf("watch printed:\n%s", out.String())
	}
	if a.Kind != "token" || a.Key != sumHex("core-token") || a.Seq != 0 {
		t.Fatalf("core line %+v", a)
	}
	if b.Error == "" || b.Kind != "" || strings.Contains(lines[1], "secret") {
		t.Fatalf("malformed line %s", lines[1])
	}
}
