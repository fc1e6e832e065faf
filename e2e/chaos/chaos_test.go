package chaos

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// Scenario 1: gateway B does not run while 1,000 tokens are revoked through A. B (a real
// Traefik process, failClosed) then starts from the snapshot A wrote; once it reports
// synced it rejects all 1,000. (The full replay through Traefik is TestJetStreamReplay.)
func TestLateGatewayRejectsEverythingRevokedWhileDown(t *testing.T) {
	began := time.Now()
	var c tally
	t.Cleanup(func() { c.logCounts(t) })

	n := harness.StartNATS(t, harness.NATSOptions{JetStream: true, StoreDir: t.TempDir()})
	a := newInterp(t, gatewayConfig([]string{n.URL}, "gw-a", false, 1))
	waitSynced(t, &c, a, nil, 30*time.Second)

	const total = 1000
	tokens := make([]string, total)
	for i := range tokens {
		tokens[i] = newToken(fmt.Sprintf("s1-%04d", i))
	}
	// Eight clients at once, as Traefik serves requests concurrently.
	t0 := time.Now()
	revokeAll(t, &c, a, tokens, 8, 3*time.Minute)
	t.Logf("%d revocations acknowledged by A in %v", total, time.Since(t0).Round(time.Millisecond))
	checkStreamHolds(t, []string{n.URL}, tokens)
	if _, msgs := streamState(t, n.URL); msgs < total {
		t.Errorf("stream holds %d messages, want at least %d", msgs, total)
	}

	// A (synced, the fleet's running gateway) writes a snapshot; B will start from it.
	var written uint64
	for deadline := time.Now().Add(30 * time.Second); written == 0; {
		if st, err := a.status(); err == nil && st.NATS != nil && st.NATS.Snapshot != nil {
			written = st.NATS.Snapshot.WrittenSequence
		}
		if time.Now().After(deadline) {
			t.Fatalf("A wrote no snapshot: %s", a.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// B starts only now.
	backend := harness.StartBackend(t)
	tr := harness.StartTraefik(t, harness.TraefikOptions{
		Name:    "b",
		Dynamic: harness.Dynamic{BackendURL: backend.URL, Plugin: gatewayConfig([]string{n.URL}, "gw-b", true, 1)},
	})
	b := newTraefikGW(tr)
	took := waitSynced(t, &c, b, tokens, 60*time.Second)
	t.Logf("B synced %v after Traefik was ready (%v after its start); %d probes before that were held with 503",
		took.Round(time.Millisecond), (tr.StartDuration + took).Round(time.Millisecond), c.held.Load())

	c.probeAll(t, b, tokens, "on late gateway B once synced")
	// B learned them from A's snapshot plus the stream after it.
	if st, err := b.status(); err != nil || st.Entries < total || st.NATS == nil || st.NATS.Snapshot == nil ||
		st.NATS.Snapshot.LoadedSequence != written || int(st.NATS.Received)+st.NATS.Snapshot.LoadedEntries < total {
		t.Errorf("B status after sync: %v %v (want at least %d entries, from A's snapshot at sequence %d and the stream after it)", st, err, total, written)
	} else {
		t.Logf("B loaded A's snapshot at sequence %d (%d entries) and received %d revocations after it",
			written, st.NATS.Snapshot.LoadedEntries, st.NATS.Received)
	}
	// B must not reject everything either.
	if code := b.call(newToken("s1-never-revoked")); code != http.StatusOK {
		t.Errorf("B answered %d to a token nobody revoked", code)
	}
	if tr.LogContains("panic") {
		t.Errorf("Traefik B logged a panic:\n%s", tr.LogTail(40))
	}
	c.checkNoAcceptance(t)
	t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
}

// Scenario 2: the NATS server restarts (same store directory, three times) while a client keeps
// revoking through A. No acknowledged revocation may be missing afterwards on A, on B,
// or on a gateway C started after the restart.
func TestNATSRestartDuringRevocations(t *testing.T) {
	began := time.Now()
	var c tally
	t.Cleanup(func() { c.logCounts(t) })

	n := harness.StartNATS(t, harness.NATSOptions{JetStream: true, StoreDir: t.TempDir()})
	a := newInterp(t, gatewayConfig([]string{n.URL}, "gw-a", false, 1))
	b := newInterp(t, gatewayConfig([]string{n.URL}, "gw-b", false, 1))
	waitSynced(t, &c, a, nil, 30*time.Second)
	waitSynced(t, &c, b, nil, 30*time.Second)

	r := newRevoker(t, a, "s2", &c)
	stop := startRevokers(t, time.Now().Add(3*time.Minute), r)
	r.waitAcked(t, 100, 60*time.Second)

	// Three restarts: a real outage, an immediate bounce, a longer outage. After each,
	// the client must get acknowledgements again.
	for i, outage := range []time.Duration{1500 * time.Millisecond, 0, 3 * time.Second} {
		before := r.ackedCount()
		n.Shutdown()
		time.Sleep(outage)
		if err := n.Restart(); err != nil {
			t.Fatalf("restart nats-server: %v", err)
		}
		up := time.Now()
		r.waitAcked(t, before+50, 90*time.Second)
		t.Logf("restart %d: server down for %v after %d acknowledgements; first acknowledgement %v after it was back",
			i+1, outage, before, r.firstAckAfter(up).Round(time.Millisecond))
	}
	r.waitAcked(t, r.ackedCount()+50, 60*time.Second)
	stop()
	t.Logf("%d revocations acknowledged in all", r.ackedCount())

	acked := r.ackedTokens()
	checkStreamHolds(t, []string{n.URL}, acked)
	lastSeq, _ := streamState(t, n.URL)
	for _, g := range []target{a, b} {
		c.probeLagging(t, g, acked, lastSeq)
	}
	for _, g := range []target{a, b} {
		took := waitCaughtUp(t, g, lastSeq, 60*time.Second)
		t.Logf("%s synced at stream sequence >= %d (waited %v)", g.name(), lastSeq, took.Round(time.Millisecond))
		c.probeAll(t, g, acked, "after the restarts, synced")
	}

	gc := newInterp(t, gatewayConfig([]string{n.URL}, "gw-c", true, 1))
	took := waitSynced(t, &c, gc, acked, 60*time.Second)
	t.Logf("fresh gateway C synced %v after New", took.Round(time.Millisecond))
	c.probeAll(t, gc, acked, "on fresh gateway C once synced")
	for _, g := range []*interp{a, b, gc} {
		logLinkEvents(t, g)
	}

	c.checkNoAcceptance(t)
	t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
}

// Scenario 3: NATS is down when a revocation arrives: 500 (A keeps it locally). The
// client's retry once NATS is back gets a 200, and every gateway rejects the token.
func TestRevokeWhileNATSDown(t *testing.T) {
	began := time.Now()
	var c tally
	t.Cleanup(func() { c.logCounts(t) })

	n := harness.StartNATS(t, harness.NATSOptions{JetStream: true, StoreDir: t.TempDir()})
	a := newInterp(t, gatewayConfig([]string{n.URL}, "gw-a", false, 1))
	b := newInterp(t, gatewayConfig([]string{n.URL}, "gw-b", true, 1))
	waitSynced(t, &c, a, nil, 30*time.Second)
	waitSynced(t, &c, b, nil, 30*time.Second)

	// One revocation while everything is up, so the stream is not empty.
	early := newToken("s3-early")
	if code, body := a.revoke(early); code != http.StatusOK {
		t.Fatalf("revoke while NATS is up: %d %s", code, body)
	}
	c.acked.Add(1)

	n.Shutdown()
	if _, err := waitStatus(a, 15*time.Second, func(connected bool) bool { return !connected }); err != nil {
		t.Fatalf("A still reports a NATS connection: %v", err)
	}

	tok := newToken("s3")
	t0 := time.Now()
	code, body := a.revoke(tok)
	t.Logf("revoke with NATS down: %d after %v: %s", code, time.Since(t0).Round(time.Millisecond), strings.TrimSpace(body))
	if code != http.StatusInternalServerError || !strings.Contains(body, `"server_error"`) {
		t.Fatalf("revoke with NATS down answered %d %s, want 500 server_error", code, body)
	}
	c.retried.Add(1)
	c.probes.Add(1)
	if got := a.call(tok); got != http.StatusUnauthorized {
		t.Errorf("A answered %d to the token whose revocation it answered 500 (it must keep it)", got)
	}
	// B knows the earlier revocation; failClosed and cut off, it holds bearer requests
	// (503) or rejects them, never lets this one through.
	if got := c.probe(t, b, early, "on B while NATS is down"); got != http.StatusServiceUnavailable && got != http.StatusUnauthorized {
		t.Errorf("B (failClosed, NATS down) answered %d to an acknowledged revocation", got)
	}

	time.Sleep(time.Second)
	if err := n.Restart(); err != nil {
		t.Fatalf("restart nats-server: %v", err)
	}
	up := time.Now()
	// The client retries until it gets a 200.
	retries := 0
	for {
		code, body = a.revoke(tok)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusInternalServerError {
			t.Fatalf("retry answered %d %s", code, body)
		}
		c.retried.Add(1)
		retries++
		if time.Since(up) > 60*time.Second {
			t.Fatalf("revocation still answered 500 60s after NATS came back: %s\nA status: %s", body, statusOf(a))
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.acked.Add(1)
	t.Logf("retry acknowledged %v after NATS came back (%d more 500s before that)", time.Since(up).Round(time.Millisecond), retries)

	acked := []string{early, tok}
	checkStreamHolds(t, []string{n.URL}, acked)
	lastSeq, _ := streamState(t, n.URL)
	for _, g := range []target{a, b} {
		took := waitCaughtUp(t, g, lastSeq, 60*time.Second)
		t.Logf("%s synced at stream sequence >= %d (waited %v)", g.name(), lastSeq, took.Round(time.Millisecond))
		c.probeAll(t, g, acked, "after NATS came back, synced")
	}
	gc := newInterp(t, gatewayConfig([]string{n.URL}, "gw-c", true, 1))
	waitSynced(t, &c, gc, acked, 60*time.Second)
	c.probeAll(t, gc, acked, "on fresh gateway C once synced")
	for _, g := range []*interp{a, b, gc} {
		logLinkEvents(t, g)
	}

	c.checkNoAcceptance(t)
	t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
}

// waitStatus waits until the gateway's NATS connection state satisfies ok.
func waitStatus(g target, timeout time.Duration, ok func(connected bool) bool) (time.Duration, error) {
	start := time.Now()
	for {
		st, err := g.status()
		if err == nil && st.NATS != nil && ok(st.NATS.Connected) {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("after %v: %v %v", timeout, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Scenario 4: a three-node JetStream cluster holds an R3 stream; the stream leader is
// shut down while two clients keep revoking (through A and B). Revocations are still
// acknowledged after the leader election and enforced on every gateway.
func TestClusterLosesStreamLeader(t *testing.T) {
	began := time.Now()
	var c tally
	t.Cleanup(func() { c.logCounts(t) })

	cl := startCluster(t, "chaos", 3)
	urls := cl.urls()
	// Each gateway gets all three URLs, starting with a different one.
	rotate := func(k int) []string { return append(append([]string(nil), urls[k:]...), urls[:k]...) }
	a := newInterp(t, gatewayConfig(rotate(0), "gw-a", false, 3))
	b := newInterp(t, gatewayConfig(rotate(1), "gw-b", false, 3))
	waitSynced(t, &c, a, nil, 90*time.Second)
	waitSynced(t, &c, b, nil, 90*time.Second)

	ra := newRevoker(t, a, "s4a", &c)
	rb := newRevoker(t, b, "s4b", &c)
	stop := startRevokers(t, time.Now().Add(4*time.Minute), ra, rb)
	ra.waitAcked(t, 50, 60*time.Second)
	rb.waitAcked(t, 50, 60*time.Second)

	// The node to lose is the stream leader, and A's server too: move the stream's
	// leadership to the node A is connected to, so that A has to reconnect while the
	// stream elects a new leader.
	leader := cl.nodeByURL(serverOf(a))
	if leader == nil {
		t.Fatalf("A's server %q is not a cluster node", serverOf(a))
	}
	moveStreamLeader(t, cl, leader)
	t.Logf("stream leader %s; A on %s, B on %s", leader.name, cl.nodeName(serverOf(a)), cl.nodeName(serverOf(b)))
	beforeA, beforeB := ra.ackedCount(), rb.ackedCount()
	killed := time.Now()
	leader.shutdown()
	t.Logf("%s shut down in %v", leader.name, time.Since(killed).Round(time.Millisecond))

	ra.waitAcked(t, beforeA+100, 120*time.Second)
	rb.waitAcked(t, beforeB+100, 120*time.Second)
	stop()
	newLeader := cl.streamLeader(streamName)
	newName := "none"
	if newLeader != nil {
		newName = newLeader.name
	}
	t.Logf("after losing %s: first acknowledgement through A %v later, through B %v later; new stream leader %s; A on %s, B on %s",
		leader.name, ra.firstAckAfter(killed).Round(time.Millisecond), rb.firstAckAfter(killed).Round(time.Millisecond),
		newName, cl.nodeName(serverOf(a)), cl.nodeName(serverOf(b)))

	acked := append(ra.ackedTokens(), rb.ackedTokens()...)
	live := cl.liveURLs()
	checkStreamHolds(t, live, acked)
	lastSeq, _ := streamState(t, live...)
	for _, g := range []target{a, b} {
		c.probeLagging(t, g, acked, lastSeq)
	}
	for _, g := range []target{a, b} {
		took := waitCaughtUp(t, g, lastSeq, 90*time.Second)
		t.Logf("%s synced at stream sequence >= %d (waited %v)", g.name(), lastSeq, took.Round(time.Millisecond))
		c.probeAll(t, g, acked, "after losing the stream leader, synced")
	}
	gc := newInterp(t, gatewayConfig(urls, "gw-c", true, 3))
	took := waitSynced(t, &c, gc, acked, 90*time.Second)
	t.Logf("fresh gateway C (given all three URLs, one dead) synced %v after New", took.Round(time.Millisecond))
	c.probeAll(t, gc, acked, "on fresh gateway C once synced")
	for _, g := range []*interp{a, b, gc} {
		logLinkEvents(t, g)
	}

	c.checkNoAcceptance(t)
	t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
}

func serverOf(g target) string {
	st, err := g.status()
	if err != nil || st.NATS == nil {
		return "?"
	}
	return st.NATS.Server
}
