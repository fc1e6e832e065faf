package propagation

import (
	"strconv"
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// BenchmarkYaegiRevokeConfirmed: one revocation at the endpoint of a gateway (the plugin
// in its own yaegi interpreter, called from compiled code as Traefik calls it) until its
// 200, which waits for NATS to confirm the publish: on core NATS a PING answered by
// PONG after the PUB, with a stream the JetStream acknowledgement. A new token per op.
//
//	cd e2e && go test -run '^$' -bench YaegiRevokeConfirmed -benchtime 2000x ./propagation
func BenchmarkYaegiRevokeConfirmed(b *testing.B) {
	for _, mode := range []string{"core", "jetstream"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			srv := harness.StartNATS(b, harness.NATSOptions{JetStream: true})
			extra := map[string]interface{}{}
			if mode == "jetstream" {
				extra["stream"] = "REVOCATIONS"
			}
			cfg := natsConfig([]string{srv.URL}, "gw-bench", extra)
			cfg["cacheSize"] = b.N + 10
			g := newGateway(b, cfg)
			g.waitConnected(10 * time.Second)
			if _, err := g.WaitSynced(10 * time.Second); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if code := g.revoke("bench-token-" + strconv.Itoa(i)); code != 200 {
					b.Fatalf("revoke %d: %d", i, code)
				}
			}
		})
	}
}
