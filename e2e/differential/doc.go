// Package differential holds an end-to-end differential security test of the
// tokenrevoke plugin: one real Traefik gateway running the plugin in front of three
// resource servers written the common ways (Go net/http + golang-jwt, Node stdlib,
// Python stdlib http.server), each of which reads a bearer token wherever its kind of
// code usually looks and accepts it when it verifies. Every attack of the in-process
// bypass tables (and a few more) is replayed over raw TCP with a revoked token and with
// a token that is not revoked; no backend may accept a revoked token that the gateway
// let through, and the runs with the live token show that the backends really read
// each place.
//
// Run it with (Node 20 and Python 3 with `cryptography` on PATH):
//
//	cd e2e && TRAEFIK_BIN=/path/to/traefik go test -count=1 -v ./differential
//
// DIFF_DETAIL=1 also logs one line per (place, spelling).
package differential
