// Package propagation tests revocation sharing between gateways: each gateway is the
// plugin loaded in its own yaegi interpreter (as in its own Traefik process), joined by
// a real, embedded nats-server; nats.go is the reference peer.
package propagation

import (
	"testing"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/gatewaytest"
	"github.com/tokenrevoke/tokenrevoke/e2e/yaegiload"
)

// gateway adapts gatewaytest.Gateway (shared with the chaos tests) to the names these
// tests use.
type gateway struct {
	*gatewaytest.Gateway
	plugin *yaegiload.Plugin
}

var okBackend = gatewaytest.OKBackend

func natsConfig(servers []string, name string, extra map[string]interface{}) map[string]interface{} {
	return gatewaytest.NATSConfig(servers, name, extra)
}

func newGateway(t testing.TB, cfg map[string]interface{}) *gateway {
	t.Helper()
	g := gatewaytest.New(t, cfg)
	return &gateway{Gateway: g, plugin: g.Plugin}
}

func (g *gateway) revoke(tok string) int         { return g.Revoke(tok) }
func (g *gateway) call(tok string) int           { return g.Call(tok) }
func (g *gateway) status() string                { return g.Status() }
func (g *gateway) logged() string                { return g.Logged() }
func (g *gateway) waitConnected(d time.Duration) { g.T.Helper(); g.WaitConnected(d) }
func (g *gateway) waitRejected(tok string, d time.Duration) bool {
	return g.WaitRejected(tok, d)
}
