package tokenrevoke

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

func TestWantedStreamIsCompatible(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", stream: "REVOCATIONS", replicas: 3, defaultTTL: 24 * time.Hour}
	c := wantedStream(n)
	if p := streamProblem(c, n); p != "" {
		t.Fatalf("the stream the plugin creates is refused: %s", p)
	}
	if c.MaxMsgsPerSubject != 1 || !c.AllowMsgTTL || c.Storage != "file" || c.Replicas != 3 || c.Subjects[0] != "tokens.revoked.>" {
		t.Fatalf("unexpected stream config %+v", c)
	}
}

func TestStreamProblems(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", stream: "REVOCATIONS", replicas: 1, defaultTTL: 24 * time.Hour}
	cases := []struct {
		name   string
		mutate func(c *natsclient.StreamConfig)
		want   string
	}{
		{"max age shorter than defaultTTL", func(c *natsclient.StreamConfig) { c.MaxAge = time.Hour }, "max_age"},
		{"no message TTL", func(c *natsclient.StreamConfig) { c.AllowMsgTTL = false }, "allow_msg_ttl"},
		{"other subjects", func(c *natsclient.StreamConfig) { c.Subjects = []string{"other.>"} }, "subjects"},
		{"memory storage", func(c *natsclient.StreamConfig) { c.Storage = "memory" }, "storage"},
		{"replicas", func(c *natsclient.StreamConfig) { c.Replicas = 3 }, "replica"},
		{"many per subject", func(c *natsclient.StreamConfig) { c.MaxMsgsPerSubject = -1 }, "max_msgs_per_subject"},
		{"message limit", func(c *natsclient.StreamConfig) { c.MaxMsgs = 1000 }, "max_msgs"},
		{"workqueue", func(c *natsclient.StreamConfig) { c.Retention = "workqueue" }, "retention"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := wantedStream(n)
			tc.mutate(&c)
			if p := streamProblem(c, n); !strings.Contains(p, tc.want) {
				t.Fatalf("problem %q does not mention %s", p, tc.want)
			}
		})
	}
	// A longer max_age, or a byte limit with discard new, cannot drop a live entry.
	c := wantedStream(n)
	c.MaxAge = 48 * time.Hour
	c.MaxBytes = 1 << 30
	c.Discard = "new"
	if p := streamProblem(c, n); p != "" {
		t.Fatalf("compatible stream refused: %s", p)
	}
}

// fakeLink stands in for NATS in tests of the plugin's reaction to link state.
type fakeLink struct {
	isSynced bool
	err      error
	sent     []revocation
}

func (f *fakeLink) publish(r revocation) error {
	if f.err != nil {
		return f.err
	}
	f.sent = append(f.sent, r)
	return nil
}
func (f *fakeLink) synced() bool { return f.isSynced }
func (f *fakeLink) status() linkStatus {
	return linkStatus{Connected: true, Stream: "REVOCATIONS", StreamSeq: 7, Synced: f.isSynced}
}

func TestFailClosedUntilSynced(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) {
		c.FailClosed = true
		c.NATS = &NATSConfig{Servers: []string{"nats://127.0.0.1:1"}, Stream: "REVOCATIONS"}
	})
	fl := &fakeLink{}
	m.domain.link = fl
	fc := &failClosedMiddleware{m: m}
	serve := func(_ *Middleware, req *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		fc.ServeHTTP(rec, req)
		return rec
	}
	rec := serve(m, bearerReq("any"))
	checkError(t, rec, http.StatusServiceUnavailable, errUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// Requests without a bearer token are not affected.
	if rec := serve(m, httptest.NewRequest(http.MethodGet, "/public", nil)); rec.Code != http.StatusTeapot {
		t.Errorf("anonymous request: %d", rec.Code)
	}
	fl.isSynced = true
	if rec := serve(m, bearerReq("any")); rec.Code != http.StatusTeapot {
		t.Fatalf("after sync: %d", rec.Code)
	}
	if b.count() != 2 {
		t.Errorf("backend saw %d requests, want 2", b.count())
	}
	fl.isSynced = false // the consumer stalled
	checkError(t, serve(m, bearerReq("any")), http.StatusServiceUnavailable, errUnavailable)
	// The endpoints stay available while unsynced.
	if rec := serve(m, revokeReq("token=x", basic("portal", "s3cret"))); rec.Code != http.StatusOK {
		t.Errorf("revoke while unsynced: %d", rec.Code)
	}
	// New returns the fail-closed wrapper only when asked to.
	c := CreateConfig()
	c.Clients = []ClientConfig{{ID: "a", Secret: "b"}}
	if h, err := New(context.Background(), http.NotFoundHandler(), c, "plain"); err != nil {
		t.Fatal(err)
	} else if _, ok := h.(*Middleware); !ok {
		t.Errorf("New returned %T without failClosed", h)
	}
}

func TestRevokeAnswers500WhenNATSDoesNotConfirm(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	fl := &fakeLink{err: natsclient.ErrNotConnected}
	m.domain.link = fl
	rec := serve(m, revokeReq("token=kept-locally", basic("portal", "s3cret")))
	checkError(t, rec, http.StatusInternalServerError, errServerError)
	if rec := serve(m, bearerReq("kept-locally")); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a revocation answered 500 was not kept locally: %d", rec.Code)
	}
	fl.err = nil
	if rec := serve(m, revokeReq("token=kept-locally", basic("portal", "s3cret"))); rec.Code != 200 {
		t.Fatalf("retry: %d", rec.Code)
	}
	if len(fl.sent) != 1 || fl.sent[0].sum != hashToken("kept-locally") {
		t.Fatalf("published %+v", fl.sent)
	}
}

func TestStatusEndpoint(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) { c.StatusPath = "/api/id/v1/auth/token/revoke/status" })
	m.domain.link = &fakeLink{isSynced: true}
	serve(m, revokeReq("token=one", basic("portal", "s3cret")))
	req := httptest.NewRequest(http.MethodGet, "/api/id/v1/auth/token/revoke/status", nil)
	checkError(t, serve(m, req), http.StatusUnauthorized, errInvalidClient)
	req.Header.Set("Authorization", basic("portal", "s3cret"))
	rec := serve(m, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", rec.Code, rec.Body.String())
	}
	var doc struct {
		Entries int  `json:"entries"`
		Synced  bool `json:"synced"`
		NATS    struct {
			Stream    string `json:"stream"`
			StreamSeq uint64 `json:"streamSequence"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Entries != 1 || !doc.Synced || doc.NATS.Stream != "REVOCATIONS" || doc.NATS.StreamSeq != 7 {
		t.Fatalf("status = %s", rec.Body.String())
	}
	if b.count() != 0 {
		t.Error("status request reached the backend")
	}
}
