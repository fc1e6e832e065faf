package tokenrevoke

import (
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
