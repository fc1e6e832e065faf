package tokenrevoke

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// statusDoc is what the status endpoint returns.
type statusDoc struct {
	Entries   int   `json:"entries"`
	Capacity  int   `json:"capacity"`
	Evictions int64 `json:"evictions"`
	Expired   int64 `json:"expired"`
	Synced    bool  `json:"synced"`
	// Origins counts the entries held per origin: the client that revoked them, or "@"
	// and the name of the publisher of a NATS message without a client.
	Origins map[string]int `json:"origins"`
	// Rules counts the session and subject rules held (back-channel logout), by digest
	// only; RuleEvictions the live ones dropped because the rule set was full.
	Rules         int   `json:"rules"`
	RuleEvictions int64 `json:"ruleEvictions"`
	// Issuers lists each configured issuer's keys (kid, kty, alg; no key material) and
	// when they were fetched.
	Issuers []jwksStatus `json:"issuers,omitempty"`
	NATS    *linkStatus  `json:"nats,omitempty"`
}

// serveStatus answers GET statusPath for authenticated clients (same credentials as the
// revoke endpoint: HTTP Basic, or client_id/client_secret in a form body).
func (m *Middleware) serveStatus(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodPost {
		rw.Header().Set("Allow", "GET, POST")
		writeError(rw, http.StatusMethodNotAllowed, errInvalidRequest, "The status endpoint accepts GET or POST")
		return
	}
	form := req.URL.Query()
	form.Del("client_secret") // secrets are only accepted in a body or header
	if req.Method == http.MethodPost {
		f, status, desc := readForm(req, maxRevokeBody)
		if status != 0 {
			writeError(rw, status, errInvalidRequest, desc)
			return
		}
		form = f
	}
	if _, status, desc := m.authenticate(req, form); status != 0 {
		if status == http.StatusUnauthorized {
			writeInvalidClient(rw, desc)
		} else {
			writeError(rw, status, errInvalidRequest, desc)
		}
		return
	}
	entries, evictions, expired := m.cache.stats()
	doc := statusDoc{
		Entries:   entries,
		Capacity:  m.settings.cacheSize,
		Evictions: evictions,
		Expired:   expired,
		Synced:    m.domain.isSynced(),
		Origins:   m.cache.originCounts(),
	}
	doc.Rules, doc.RuleEvictions = m.cache.ruleStats()
	if m.issuers != nil {
		doc.Issuers = m.issuers.status()
	}
	if m.domain.link != nil {
		st := m.domain.link.status()
		doc.NATS = &st
	}
	body, err := json.Marshal(doc)
	if err != nil {
		writeError(rw, http.StatusInternalServerError, errServerError, "The status could not be encoded")
		return
	}
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write(body)
}
