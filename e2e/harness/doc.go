// Package harness starts the real processes the end-to-end tests, the demo and the
// benchmarks need: a Traefik binary with the plugin mounted as a local yaegi plugin, an
// embedded nats-server and an echo backend. Everything listens on 127.0.0.1 on free
// ports and is stopped by t.Cleanup (tests) or Close (everything else).
package harness
