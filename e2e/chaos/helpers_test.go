// Package chaos breaks the JetStream set-up on purpose (a gateway that starts late, a
// NATS restart in the middle of a stream of revocations, NATS down when a revocation
// arrives, the loss of a node of a three-node cluster) and checks the promise of the
// revoke endpoint: a 200 means every gateway enforces the revocation, at the latest
// once it reports itself synced.
//
// Every test keeps three counts and logs them: revocations acknowledged (200 from the
// revoke endpoint), probes (bearer requests on gateways) and revoked tokens accepted
// (a probe of an acknowledged revocation that got through to the backend). The last
// one must be 0.
package chaos

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/gatewaytest"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

const streamName = "REVOCATIONS"

// snapshotEvery is small in these tests, so that snapshots are written (and loaded by
// the gateways that start later) in every scenario, through restarts and node losses.
const snapshotEvery = 100

// gatewayConfig is the configuration map of one gateway of the fleet.
func gatewayConfig(servers []string, name string, failClosed bool, replicas int) map[string]interface{} {
	cfg := gatewaytest.NATSConfig(servers, name, map[string]interface{}{
		"stream":        streamName,
		"replicas":      replicas,
		"snapshotEvery": snapshotEvery,
	})
	cfg["failClosed"] = failClosed
	return cfg
}

// target is a gateway as the tests see it: a plugin interpreter or a Traefik process.
type target interface {
	name() string
	revoke(tok string) (int, string)
	call(tok string) int
	status() (gatewaytest.Status, error)
	logTail() string
}

// interp is a gateway running in a yaegi interpreter inside the test process.
type interp struct{ g *gatewaytest.Gateway }

func newInterp(t *testing.T, cfg map[string]interface{}) *interp {
	t.Helper()
	g := &interp{g: gatewaytest.New(t, cfg)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway %s: last plugin log lines:\n%s", g.name(), g.g.LogTail(40))
		}
	})
	return g
}

func (g *interp) name() string { return g.g.Name }

// codeHung stands for a revoke request that got no answer within hangAfter. The plugin
// waits at most 2 s for NATS, so such a request is stuck, not slow; a real client would
// give up and retry, and so do the clients here (after the test records an error).
const codeHung = -1

const hangAfter = 30 * time.Second

// revoke calls the revoke endpoint with a watchdog, so that a request stuck in the
// interpreter fails the test with a message instead of hanging it.
func (g *interp) revoke(tok string) (int, string) {
	type answer struct {
		code int
		body string
	}
	ch := make(chan answer, 1)
	go func() {
		code, body := g.g.RevokeBody(tok)
		ch <- answer{code, body}
	}()
	select {
	case a := <-ch:
		return a.code, a.body
	case <-time.After(hangAfter):
		return codeHung, fmt.Sprintf("no answer within %v", hangAfter)
	}
}

func (g *interp) call(tok string) int                 { return g.g.Call(tok) }
func (g *interp) status() (gatewaytest.Status, error) { return g.g.StatusDoc() }
func (g *interp) logTail() string                     { return g.g.LogTail(20) }

// traefikGW is a gateway in a real Traefik process, reached over HTTP.
type traefikGW struct {
	tr     *harness.Traefik
	client *http.Client
}

func newTraefikGW(tr *harness.Traefik) *traefikGW {
	return &traefikGW{tr: tr, client: &http.Client{Timeout: 10 * time.Second}}
}

func (g *traefikGW) name() string { return "traefik-" + g.tr.Name }

func (g *traefikGW) do(req *http.Request) (int, string) {
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (g *traefikGW) revoke(tok string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, g.tr.WebURL+gatewaytest.RevokePath,
		strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(gatewaytest.ClientID, gatewaytest.ClientSecret)
	return g.do(req)
}

func (g *traefikGW) call(tok string) int {
	req, _ := http.NewRequest(http.MethodGet, g.tr.WebURL+"/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	code, _ := g.do(req)
	return code
}

func (g *traefikGW) status() (gatewaytest.Status, error) {
	req, _ := http.NewRequest(http.MethodGet, g.tr.WebURL+gatewaytest.StatusPath, nil)
	req.SetBasicAuth(gatewaytest.ClientID, gatewaytest.ClientSecret)
	code, body := g.do(req)
	if code != http.StatusOK {
		return gatewaytest.Status{}, fmt.Errorf("status document: %d %s", code, body)
	}
	return gatewaytest.ParseStatus([]byte(body))
}

func (g *traefikGW) logTail() string { return g.tr.LogTail(20) }

// tally holds the counts every test reports.
type tally struct {
	acked    atomic.Int64 // revocations answered 200
	retried  atomic.Int64 // revoke attempts answered 500 (and retried by the client)
	probes   atomic.Int64 // bearer requests sent to gateways
	accepted atomic.Int64 // probes of an acknowledged revocation answered 200
	held     atomic.Int64 // probes answered 503 (failClosed before sync): not acceptances
	hung     atomic.Int64 // revoke requests that never answered (see codeHung)
	lagging  atomic.Int64 // see probeLagging: logged, not counted as acceptances

	mu       sync.Mutex
	examples []string // first few acceptances, for the failure message
}

func (c *tally) logCounts(t *testing.T) {
	t.Helper()
	t.Logf("COUNTS %s: revocations acknowledged %d, probes %d, revoked tokens accepted %d (revoke 500s retried %d, revoke requests hung %d, probes held with 503 %d, let through by a lagging gateway that reported synced %d)",
		t.Name(), c.acked.Load(), c.probes.Load(), c.accepted.Load(), c.retried.Load(), c.hung.Load(), c.held.Load(), c.lagging.Load())
}

// probe sends one bearer request for an acknowledged-revoked token and classifies the
// answer. It returns the status.
func (c *tally) probe(t *testing.T, g target, tok, when string) int {
	code := g.call(tok)
	c.probes.Add(1)
	switch code {
	case http.StatusUnauthorized:
	case http.StatusServiceUnavailable:
		c.held.Add(1)
	case http.StatusOK:
		c.accepted.Add(1)
		c.mu.Lock()
		if len(c.examples) < 5 {
			c.examples = append(c.examples, fmt.Sprintf("%s accepted %s (%s)", g.name(), tok, when))
		}
		c.mu.Unlock()
	default:
		t.Errorf("%s answered %d to a bearer probe (%s)", g.name(), code, when)
	}
	return code
}

// checkNoAcceptance fails the test when a revoked token was accepted.
func (c *tally) checkNoAcceptance(t *testing.T) {
	t.Helper()
	if n := c.accepted.Load(); n != 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Errorf("%d probe(s) of acknowledged revocations were accepted; first: %s", n, strings.Join(c.examples, "; "))
	}
}

// probeAll probes every token once on g (after g reported synced) and returns how many
// were not answered 401.
func (c *tally) probeAll(t *testing.T, g target, tokens []string, when string) int {
	t.Helper()
	bad := 0
	for _, tok := range tokens {
		if c.probe(t, g, tok, when) != http.StatusUnauthorized {
			bad++
		}
	}
	if bad > 0 {
		st, err := g.status()
		t.Errorf("%s: %d of %d acknowledged revocations not rejected (%s); status %v %v", g.name(), bad, len(tokens), when, st, err)
	}
	return bad
}

// newToken returns a random opaque token with a recognisable prefix.
func newToken(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// revoker plays a client application that revokes tokens through one gateway, one
// after another, and retries each revocation answered 500 until it gets a 200 or the
// run ends. Only tokens answered 200 are acknowledged.
type revoker struct {
	t      *testing.T
	gw     target
	prefix string
	c      *tally
	pause  time.Duration // between revocations, to leave the machine some air

	mu       sync.Mutex
	acked    []string
	ackTimes []time.Time
	lastBody string // last answer other than 200
}

func newRevoker(t *testing.T, gw target, prefix string, c *tally) *revoker {
	return &revoker{t: t, gw: gw, prefix: prefix, c: c, pause: 2 * time.Millisecond}
}

// run revokes until stop is closed or the deadline passes; it closes done at the end.
func (r *revoker) run(stop <-chan struct{}, deadline time.Time, done chan<- struct{}) {
	defer close(done)
	for {
		tok := newToken(r.prefix)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if time.Now().After(deadline) {
				return
			}
			code, body := r.gw.revoke(tok)
			switch code {
			case http.StatusOK:
				// The revoking gateway must reject the token at once.
				r.c.acked.Add(1)
				if got := r.c.probe(r.t, r.gw, tok, "right after its 200, on the revoking gateway"); got != http.StatusUnauthorized {
					r.t.Errorf("%s answered %d to a token it just revoked", r.gw.name(), got)
				}
				r.mu.Lock()
				r.acked = append(r.acked, tok)
				r.ackTimes = append(r.ackTimes, time.Now())
				r.mu.Unlock()
			case codeHung:
				r.c.hung.Add(1)
				r.t.Errorf("revoke through %s never answered (waited %v); the client retries", r.gw.name(), hangAfter)
			case http.StatusInternalServerError:
				// Not shared, but kept on the gateway that took it.
				r.c.retried.Add(1)
				r.c.probes.Add(1)
				if got := r.gw.call(tok); got != http.StatusUnauthorized {
					r.t.Errorf("%s answered %d to a token whose revocation it answered 500 (it must keep it locally)", r.gw.name(), got)
				}
				if !strings.Contains(body, `"server_error"`) {
					r.t.Errorf("revoke 500 without server_error: %s", body)
				}
			default:
				r.t.Errorf("revoke through %s answered %d: %s", r.gw.name(), code, body)
			}
			if code == http.StatusOK {
				break
			}
			if code != codeHung {
				r.mu.Lock()
				r.lastBody = body
				r.mu.Unlock()
			}
			// The client backs off a little before retrying.
			time.Sleep(50 * time.Millisecond)
		}
		if r.pause > 0 {
			time.Sleep(r.pause)
		}
	}
}

// ackedTokens returns a copy of the acknowledged tokens.
func (r *revoker) ackedTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.acked...)
}

// firstAckAfter returns how long after t0 the first revocation was acknowledged (-1 if
// none was).
func (r *revoker) firstAckAfter(t0 time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.ackTimes {
		if at.After(t0) {
			return at.Sub(t0)
		}
	}
	return -1
}

func (r *revoker) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// waitAcked waits until the revoker has at least n acknowledged revocations.
func (r *revoker) waitAcked(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.ackedCount() < n {
		if time.Now().After(deadline) {
			r.mu.Lock()
			body := r.lastBody
			r.mu.Unlock()
			t.Fatalf("revoker on %s: only %d of %d revocations acknowledged after %v; last error answer: %s\nstatus: %v\nlog:\n%s",
				r.gw.name(), r.ackedCount(), n, timeout, body, statusOf(r.gw), r.gw.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(g target) string {
	s, err := g.status()
	if err != nil {
		return err.Error()
	}
	return s.String()
}

// waitSynced waits until g reports synced. While it waits, it probes sample tokens (all
// acknowledged earlier): a failClosed gateway must answer them 503 (or 401), never 200.
// It returns how long it took.
func waitSynced(t *testing.T, c *tally, g target, sample []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	i := 0
	for {
		st, err := g.status()
		if err == nil && st.Synced {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s not synced after %v: %v %v\nlog:\n%s", g.name(), timeout, st, err, g.logTail())
		}
		if len(sample) > 0 {
			c.probe(t, g, sample[i%len(sample)], "before sync")
			i++
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probeLagging probes every acknowledged token once on a gateway that lived through the
// chaos, right after the last acknowledgement and before waiting for it to catch up,
// and logs how many got through and whether the gateway reported itself synced. These
// are not counted as acceptances (a gateway following the stream live is always a
// little behind), but a large number while "synced" is true means the gateway did not
// notice that it had stopped following the stream.
func (c *tally) probeLagging(t *testing.T, g target, tokens []string, lastSeq uint64) {
	t.Helper()
	st, err := g.status()
	through := 0
	for _, tok := range tokens {
		code := g.call(tok)
		c.probes.Add(1)
		if code == http.StatusOK {
			through++
		}
	}
	if err != nil || st.NATS == nil {
		t.Logf("%s right after the chaos: status unreadable (%v); %d of %d acknowledged revocations let through", g.name(), err, through, len(tokens))
		return
	}
	if st.Synced {
		c.lagging.Add(int64(through))
	}
	t.Logf("%s right after the chaos: synced=%v at stream sequence %d of %d; %d of %d acknowledged revocations let through",
		g.name(), st.Synced, st.NATS.StreamSequence, lastSeq, through, len(tokens))
}

// waitCaughtUp waits until a gateway that lived through the chaos reports synced and has
// applied the stream up to lastSeq (a gateway that was following live may be a few
// milliseconds behind the last acknowledgement, which is not a lost revocation).
func waitCaughtUp(t *testing.T, g target, lastSeq uint64, timeout time.Duration) time.Duration {
	t.Helper()
	took, err := gatewaytest.WaitStatus(g.status, timeout, func(s gatewaytest.Status) bool {
		return s.Synced && s.NATS != nil && s.NATS.StreamSequence >= lastSeq
	})
	if err != nil {
		t.Fatalf("%s has not caught up with stream sequence %d: %v\nlog:\n%s", g.name(), lastSeq, err, g.logTail())
	}
	return took
}

// streamState asks a server (nats.go, as an operator would) for the stream's state.
func streamState(t *testing.T, urls ...string) (lastSeq, msgs uint64) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS for stream info: %v", err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var info *nats.StreamInfo
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err = js.StreamInfo(streamName)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream info: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return info.State.LastSeq, info.State.Msgs
}

// startRevokers runs the revokers until the returned stop function is called (or the
// deadline passes). stop waits for them and may be called more than once; it also runs
// in t.Cleanup, so that no revoker outlives its test.
func startRevokers(t *testing.T, deadline time.Time, rs ...*revoker) (stop func()) {
	stopCh := make(chan struct{})
	var dones []chan struct{}
	for _, r := range rs {
		d := make(chan struct{})
		dones = append(dones, d)
		go r.run(stopCh, deadline, d)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(stopCh)
			for _, d := range dones {
				select {
				case <-d:
				case <-time.After(30 * time.Second):
					t.Error("a revoker did not stop within 30s")
				}
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// revokeAll revokes every token through g with a few concurrent clients, each retrying
// a 500 until it gets a 200; it fails the test when the timeout passes first.
func revokeAll(t *testing.T, c *tally, g target, tokens []string, clients int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(tokens) {
					return
				}
				for {
					if time.Now().After(deadline) {
						failed.Add(1)
						return
					}
					code, body := g.revoke(tokens[i])
					if code == http.StatusOK {
						c.acked.Add(1)
						break
					}
					if code == codeHung {
						c.hung.Add(1)
						t.Errorf("revoke through %s never answered (waited %v); the client retries", g.name(), hangAfter)
						continue
					}
					if code != http.StatusInternalServerError {
						t.Errorf("revoke through %s: %d %s", g.name(), code, body)
						failed.Add(1)
						return
					}
					c.retried.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("revoking %d tokens through %s: not all acknowledged within %v (%d acknowledged)\nstatus: %s",
			len(tokens), g.name(), timeout, c.acked.Load(), statusOf(g))
	}
}

// checkStreamHolds checks, as an operator would with nats.go, that the stream holds a
// message for every acknowledged token (on its <subject>.<sha256> subject).
func checkStreamHolds(t *testing.T, urls []string, tokens []string) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, tok := range tokens {
		sum := sha256.Sum256([]byte(tok))
		if _, err := js.GetLastMsg(streamName, gatewaytest.Subject+"."+hex.EncodeToString(sum[:])); err != nil {
			if missing < 3 {
				t.Errorf("stream %s has no message for acknowledged token %s: %v", streamName, tok, err)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("stream %s lacks %d of %d acknowledged revocations", streamName, missing, len(tokens))
	}
}

// logLinkEvents logs how often a gateway's NATS link went through the events chaos
// causes: connections, consumer stalls (each followed by a replay) and syncs.
func logLinkEvents(t *testing.T, g *interp) {
	t.Helper()
	var conns, stalls, syncs, warns int
	for _, line := range strings.Split(g.g.Logged(), "\n") {
		switch {
		case strings.Contains(line, "nats: connected to") && strings.Contains(line, "(server "):
			conns++
		case strings.Contains(line, "consumer stalled"):
			stalls++
		case strings.Contains(line, "synced at sequence"):
			syncs++
		}
		if strings.HasPrefix(line, "WARN") || strings.HasPrefix(line, "ERROR") {
			warns++
		}
	}
	t.Logf("%s: %d connections, %d consumer stalls, %d syncs, %d WARN/ERROR lines; status %s",
		g.name(), conns, stalls, syncs, warns, statusOf(g))
}
