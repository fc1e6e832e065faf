package tokenrevoke

import "sync"

// One user must not be able to fill the rule set. Every logout of a session adds a
// session rule, and a full set drops the rules nearest to expiry, whose tokens then pass
// again; a user who logs in and out in a loop (or a client that revokes its own refresh
// tokens, with refreshRevokesSession) would push other users' rules out. So each gateway
// counts the session rules it adds per subject (the logout token's or refresh token's
// sub, by digest with the issuer) over maxTokenLifetime: past sessionsPerSubject, the
// subject's further session logouts become one subject rule instead, whose cutoff moves
// forward with each of them. It ends every session of that user up to that logout (its
// later tokens pass), so the worst a loop costs its user is logging in again, and it
// holds one rule however long it runs.

const (
	// sessionsPerSubject is how many session rules one subject adds at one gateway
	// within maxTokenLifetime before its logouts turn into a subject rule.
	sessionsPerSubject = 50
	// foldSubjectsMax bounds the subjects counted (about 100 bytes each); past it a new
	// subject is not counted until expired windows are swept.
	foldSubjectsMax = 100000
	// foldSweepEvery is the least time between two sweeps while the count is full.
	foldSweepEvery = 60
)

// sessionFolds counts session rules per subject; one per domain, shared by its
// middlewares.
type sessionFolds struct {
	mu      sync.Mutex
	windows map[[32]byte]foldWindow // by ruleKey(iss, sub)
	next    int                     // sweep when this many subjects are counted
	swept   int64                   // unix seconds of the last sweep
	folded  int64                   // session logouts turned into subject rules
}

type foldWindow struct {
	count int
	until int64 // unix seconds: the count starts again after it
}

func newSessionFolds() *sessionFolds {
	return &sessionFolds{windows: make(map[[32]byte]foldWindow), next: 1024}
}

// fold counts one more session rule of the subject known by key (ruleKey(iss, sub)) at
// now, in a window of span seconds. It reports whether the rule must be the subject's
// rule instead, and whether this is the window's first such fold (to log it once).
func (f *sessionFolds) fold(key [32]byte, now, span int64) (bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.windows[key]
	if !ok {
		if len(f.windows) >= f.next || len(f.windows) >= foldSubjectsMax && now-f.swept >= foldSweepEvery {
			f.sweepLocked(now)
		}
		if len(f.windows) >= foldSubjectsMax {
			return false, false
		}
	}
	if !ok || w.until <= now {
		w = foldWindow{until: now + span}
	}
	w.count++
	f.windows[key] = w
	if w.count <= sessionsPerSubject {
		return false, false
	}
	f.folded++
	return true, w.count == sessionsPerSubject+1
}

func (f *sessionFolds) sweepLocked(now int64) {
	for k, w := range f.windows {
		if w.until <= now {
			delete(f.windows, k)
		}
	}
	f.swept = now
	f.next = 2*len(f.windows) + 1024
}

// count returns how many session logouts were turned into subject rules.
func (f *sessionFolds) count() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.folded
}
