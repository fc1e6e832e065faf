package tokenrevoke

import (
	"sync"
	"time"
)

// Any authenticated client can fill the store: RFC 7009 answers 200 to a junk token,
// and every one of them is held for defaultTTL. So each client gets a revocation rate
// (clients[].ratePerMinute), enforced per gateway process with a token bucket that
// holds up to one minute's worth.

// rateLimiter keeps one bucket per client id; it is shared by all middlewares of a
// domain, so Traefik's repeated New calls do not reset it.
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[string]rateBucket
}

type rateBucket struct {
	tokens float64   // revocations available now
	at     time.Time // when tokens was computed
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{buckets: make(map[string]rateBucket)}
}

// allow takes one revocation from client's bucket. When none is left it returns false
// and how long until one is.
func (r *rateLimiter) allow(client string, perMinute int, now time.Time) (bool, time.Duration) {
	if perMinute <= 0 {
		return true, 0
	}
	limit := float64(perMinute)
	perSecond := limit / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[client]
	if !ok {
		b = rateBucket{tokens: limit, at: now}
	} else if now.After(b.at) {
		b.tokens += now.Sub(b.at).Seconds() * perSecond
		if b.tokens > limit {
			b.tokens = limit
		}
		b.at = now
	}
	if b.tokens < 1 {
		r.buckets[client] = b
		wait := time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
		return false, wait
	}
	b.tokens--
	r.buckets[client] = b
	return true, 0
}
