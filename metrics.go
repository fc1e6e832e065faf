package tokenrevoke

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Prometheus metrics (config key metricsPath; empty: off).
//
// GET metricsPath answers the text exposition format 0.0.4, written by hand: Traefik
// runs the plugin in yaegi, which cannot load prometheus/client_golang (it uses unsafe).
//
// Access: the endpoint asks for no credentials, like the /metrics of most exporters,
// so that Prometheus needs no client secret. The page holds counts and gauges only:
// never a token, token hash, sid, sub, client id or secret, and no label value taken
// from a request or the configuration (every label value is a constant of this file).
// Operators who do not want it public restrict it in Traefik: a router for
// Path(`<metricsPath>`) with an ipAllowList middleware in front of this one and a
// priority above the backends' router, or a separate entry point.
//
// Scope: the counters belong to a domain (domain.go), the state that all middlewares
// of one Traefik process with the same NATS configuration share. The page shows the
// domain of the middleware that answers it; there is no domain label (its key is a
// hash of the NATS configuration and would mean nothing, or too much). With several
// domains in one process, scrape one path per domain.
//
// Cost: counters on the request path are single atomic.AddInt64 calls on a field of
// m.metrics, only in the slow path (serveSlow, failClosedMiddleware, serveRevoke);
// nothing is counted in the fast path of ServeHTTP. Requests that pass are not
// counted at all. The page itself is built on demand from these counters and from the
// state the status endpoint reads (cache stats, link status).

// metricsContentType is the content type of the text exposition format 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// metrics are a domain's counters. Every int64 field is updated with sync/atomic only
// (they come first: 64-bit alignment on 32-bit platforms). The middleware holds the
// same pointer (m.metrics), so a request-path increment is one atomic.AddInt64 on a
// field two loads away.
type metrics struct {
	// Revocations by source ("nats" is the link's received count, see writeMetrics).
	revokedEndpoint int64 // revoke endpoint answers 200 (a revocation was accepted)
	revokedLogout   int64 // back-channel logouts accepted (each a session or subject rule)
	logoutRefused   int64 // back-channel logout tokens refused (400)
	forgedRefused   int64 // revocations of a configured issuer's JWT whose signature failed

	// Requests rejected, by reason.
	rejectedRevoked     int64 // 401: a revoked bearer token
	rejectedRefused     int64 // 400: refused by the inspection (ambiguous, too long a token, ...)
	rejectedTooLarge    int64 // 413, 414, 431: a body, query or token header larger than maxBodyCheck
	rejectedRateLimited int64 // 429: a client over its revocation rate
	rejectedUnavailable int64 // 503: failClosed while not synced

	// syncNanos is how long the last replay of the stream took until synced, or -1
	// before the first sync.
	syncNanos int64

	// publish times natsLink.publish (the wait for NATS to confirm one revocation).
	publish *histogram
}

// publishBounds are the upper bounds of the publish histogram's buckets, 0.5 ms to 2 s
// (publishTimeout); later answers and timeouts land in +Inf.
var publishBounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
}

func newMetrics() *metrics {
	return &metrics{syncNanos: -1, publish: newHistogram(publishBounds)}
}

// observePublish records the duration of one publish. It may be called on a nil
// *metrics (a link built without a domain, in tests), which records nothing.
func (m *metrics) observePublish(d time.Duration) {
	if m != nil {
		m.publish.observe(d)
	}
}

// setSyncDuration records how long the replay took that just ended in sync. Nil-safe.
func (m *metrics) setSyncDuration(d time.Duration) {
	if m != nil {
		atomic.StoreInt64(&m.syncNanos, int64(d))
	}
}

// histogram counts durations in fixed buckets. counts[i] is the number of observations
// in (bounds[i-1], bounds[i]] (not cumulative; the last slot is +Inf); all atomic.
type histogram struct {
	sumNanos int64 // atomic
	counts   []int64
	bounds   []int64  // nanoseconds, ascending
	le       []string // bounds in seconds, as the le label shows them
}

func newHistogram(bounds []time.Duration) *histogram {
	h := &histogram{counts: make([]int64, len(bounds)+1)}
	for _, b := range bounds {
		h.bounds = append(h.bounds, int64(b))
		h.le = append(h.le, strconv.FormatFloat(b.Seconds(), 'f', -1, 64))
	}
	return h
}

func (h *histogram) observe(d time.Duration) {
	n := int64(d)
	i := 0
	for i < len(h.bounds) && n > h.bounds[i] {
		i++
	}
	atomic.AddInt64(&h.counts[i], 1)
	atomic.AddInt64(&h.sumNanos, n)
}

// serveMetrics answers GET (and HEAD) metricsPath without authentication (see above).
func (m *Middleware) serveMetrics(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		writeError(rw, http.StatusMethodNotAllowed, errInvalidRequest, "The metrics endpoint accepts GET or HEAD")
		return
	}
	body := m.domain.metricsText()
	h := rw.Header()
	h.Set("Content-Type", metricsContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = rw.Write(body)
	}
}

// metricsText renders the domain's metrics page. Families that do not apply are left
// out: nats_* and the publish histogram without NATS, stream_* and sync without a
// stream, snapshot_* with snapshots off.
func (d *domain) metricsText() []byte {
	w := &expoWriter{}
	m := d.metrics
	var st linkStatus
	mode := "local"
	if d.link != nil {
		st = d.link.status()
		mode = "nats"
		if st.Stream != "" {
			mode = "jetstream"
		}
	}

	w.family("tokenrevoke_info", "gauge",
		"Always 1; mode is how this gateway shares revocations: local (no NATS), nats (core NATS) or jetstream.")
	w.intSample("tokenrevoke_info", `mode="`+mode+`"`, 1)

	w.family("tokenrevoke_revocations_total", "counter",
		"Revocations applied, by source: endpoint (revoke requests answered 200), nats (valid revocations received over NATS, in JetStream mode including the replay and this gateway's own), logout (back-channel logouts accepted at this gateway; rules received over NATS count as nats).")
	w.intSample("tokenrevoke_revocations_total", `source="endpoint"`, atomic.LoadInt64(&m.revokedEndpoint))
	w.intSample("tokenrevoke_revocations_total", `source="nats"`, st.Received)
	w.intSample("tokenrevoke_revocations_total", `source="logout"`, atomic.LoadInt64(&m.revokedLogout))

	w.family("tokenrevoke_rejections_total", "counter",
		"Requests rejected by the gateway, by reason: revoked (401, revoked bearer token), refused (400, token ambiguous or too long), too_large (413, form body over maxBodyCheck), rate_limited (429, revoke endpoint), unavailable (503, failClosed before sync).")
	w.intSample("tokenrevoke_rejections_total", `reason="revoked"`, atomic.LoadInt64(&m.rejectedRevoked))
	w.intSample("tokenrevoke_rejections_total", `reason="refused"`, atomic.LoadInt64(&m.rejectedRefused))
	w.intSample("tokenrevoke_rejections_total", `reason="too_large"`, atomic.LoadInt64(&m.rejectedTooLarge))
	w.intSample("tokenrevoke_rejections_total", `reason="rate_limited"`, atomic.LoadInt64(&m.rejectedRateLimited))
	w.intSample("tokenrevoke_rejections_total", `reason="unavailable"`, atomic.LoadInt64(&m.rejectedUnavailable))

	entries, evictions, expired := d.cache.stats()
	d.cache.mu.RLock()
	capacity := d.cache.capacity
	d.cache.mu.RUnlock()
	w.family("tokenrevoke_cache_entries", "gauge", "Revoked tokens held in the cache (expired ones not yet swept included).")
	w.intSample("tokenrevoke_cache_entries", "", int64(entries))
	w.family("tokenrevoke_cache_capacity", "gauge", "Most revoked tokens the cache holds (cacheSize).")
	w.intSample("tokenrevoke_cache_capacity", "", int64(capacity))
	w.family("tokenrevoke_cache_evictions_total", "counter", "Unexpired revoked tokens dropped because the cache was full (accepted again until they expire).")
	w.intSample("tokenrevoke_cache_evictions_total", "", evictions)
	w.family("tokenrevoke_cache_expired_total", "counter", "Cache entries dropped because their token expired.")
	w.intSample("tokenrevoke_cache_expired_total", "", expired)

	rules, ruleEvictions := d.cache.ruleStats()
	w.family("tokenrevoke_rules", "gauge", "Session and subject rules held (back-channel logout; expired ones not yet swept included).")
	w.intSample("tokenrevoke_rules", "", int64(rules))
	w.family("tokenrevoke_rule_evictions_total", "counter", "Unexpired session and subject rules dropped because as many rules as cacheSize were held.")
	w.intSample("tokenrevoke_rule_evictions_total", "", ruleEvictions)
	w.family("tokenrevoke_session_rules_folded_total", "counter", "Session logouts turned into their subject's rule because that subject ended more sessions within maxTokenLifetime than one gateway keeps rules for.")
	w.intSample("tokenrevoke_session_rules_folded_total", "", d.folds.count())
	w.family("tokenrevoke_logout_refused_total", "counter", "Back-channel logout tokens refused (400: invalid, replayed, or the issuer's keys unavailable).")
	w.intSample("tokenrevoke_logout_refused_total", "", atomic.LoadInt64(&m.logoutRefused))
	w.family("tokenrevoke_revocations_unverified_total", "counter", "Revocations of a configured issuer's JWT not stored because its signature did not verify (answered 200, RFC 7009).")
	w.intSample("tokenrevoke_revocations_unverified_total", "", atomic.LoadInt64(&m.forgedRefused))

	w.family("tokenrevoke_synced", "gauge", "1 when the revocation state is complete (no stream, or the stream replay has caught up), else 0.")
	w.intSample("tokenrevoke_synced", "", boolInt(d.isSynced()))

	if d.link == nil {
		return w.bytes()
	}
	w.family("tokenrevoke_nats_connected", "gauge", "1 while connected to a NATS server, else 0.")
	w.intSample("tokenrevoke_nats_connected", "", boolInt(st.Connected))
	w.family("tokenrevoke_nats_published_total", "counter", "Revocations published to NATS and confirmed.")
	w.intSample("tokenrevoke_nats_published_total", "", st.Published)
	w.family("tokenrevoke_nats_publish_failures_total", "counter", "Revocations NATS did not confirm (kept locally; the client was answered 500).")
	w.intSample("tokenrevoke_nats_publish_failures_total", "", st.PublishFail)
	w.family("tokenrevoke_nats_dropped_total", "counter",
		"Revocation messages received and dropped, by reason: malformed, unsigned (no signature header, nats.signing set) or bad_signature (a signature that does not verify with the configured keys).")
	w.intSample("tokenrevoke_nats_dropped_total", `reason="malformed"`, st.Dropped-st.Unsigned-st.BadSignature)
	w.intSample("tokenrevoke_nats_dropped_total", `reason="unsigned"`, st.Unsigned)
	w.intSample("tokenrevoke_nats_dropped_total", `reason="bad_signature"`, st.BadSignature)
	w.histogram("tokenrevoke_publish_duration_seconds",
		"Time from publishing one revocation to NATS confirming it (or failing).", m.publish)

	if st.Stream != "" {
		w.family("tokenrevoke_stream_sequence", "gauge", "Stream sequence of the last revocation message received from the JetStream stream.")
		w.intSample("tokenrevoke_stream_sequence", "", int64(st.StreamSeq))
		if lag, ok := d.streamLag(); ok {
			w.family("tokenrevoke_stream_lag_messages", "gauge", "Messages the stream still had to deliver after the last one received (its num_pending).")
			w.intSample("tokenrevoke_stream_lag_messages", "", int64(lag))
		}
		if ns := atomic.LoadInt64(&m.syncNanos); ns >= 0 {
			w.family("tokenrevoke_sync_duration_seconds", "gauge", "Duration of the last replay of the stream until synced (snapshot load included).")
			w.floatSample("tokenrevoke_sync_duration_seconds", "", float64(ns)/1e9)
		}
	}
	if sn := st.Snapshot; sn != nil {
		w.family("tokenrevoke_snapshot_loaded_sequence", "gauge", "Stream sequence covered by the snapshot loaded at start (0: none).")
		w.intSample("tokenrevoke_snapshot_loaded_sequence", "", int64(sn.LoadedSeq))
		w.family("tokenrevoke_snapshot_written_sequence", "gauge", "Stream sequence covered by the last snapshot this gateway wrote (0: none).")
		w.intSample("tokenrevoke_snapshot_written_sequence", "", int64(sn.WrittenSeq))
	}
	return w.bytes()
}

// streamLag returns the stream consumer's last seen num_pending, when there is one.
func (d *domain) streamLag() (uint64, bool) {
	l, ok := d.link.(*natsLink)
	if !ok || l.stream == nil {
		return 0, false
	}
	l.stream.mu.Lock()
	c := l.stream.consumer
	l.stream.mu.Unlock()
	if c == nil {
		return 0, false
	}
	return c.Pending(), true
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// expoWriter writes the text exposition format. Names, help texts and label pairs are
// constants of this file (no escaping needed: no backslash, quote or newline in them).
type expoWriter struct {
	b strings.Builder
}

func (w *expoWriter) family(name, typ, help string) {
	w.b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

func (w *expoWriter) intSample(name, labels string, v int64) {
	w.sample(name, labels, strconv.FormatInt(v, 10))
}

func (w *expoWriter) floatSample(name, labels string, v float64) {
	w.sample(name, labels, strconv.FormatFloat(v, 'g', -1, 64))
}

func (w *expoWriter) sample(name, labels, value string) {
	w.b.WriteString(name)
	if labels != "" {
		w.b.WriteString("{" + labels + "}")
	}
	w.b.WriteString(" " + value + "\n")
}

// histogram writes h as cumulative buckets; +Inf and _count are the sum of the bucket
// counts read, so they agree even while observations come in.
func (w *expoWriter) histogram(name, help string, h *histogram) {
	w.family(name, "histogram", help)
	var cum int64
	for i := range h.counts {
		cum += atomic.LoadInt64(&h.counts[i])
		le := "+Inf"
		if i < len(h.le) {
			le = h.le[i]
		}
		w.intSample(name+"_bucket", `le="`+le+`"`, cum)
	}
	w.floatSample(name+"_sum", "", float64(atomic.LoadInt64(&h.sumNanos))/1e9)
	w.intSample(name+"_count", "", cum)
}

func (w *expoWriter) bytes() []byte {
	return []byte(w.b.String())
}
