// Package differential holds an end-to-end differential security test of the
// tokenrevoke plugin: one real Traefik gateway running the plugin in front of eight
// resource servers: three written the common ways by hand (Go net/http + golang-jwt,
// Node stdlib, Python stdlib http.server) and five on frameworks with their real
// parsers (Express 4 and two set-ups of Express 5 with qs, body-parser, cookie-parser,
// passport-http-bearer, passport-jwt and jsonwebtoken; Django under gunicorn; Starlette
// under uvicorn). Each reads a bearer token wherever its kind of code usually looks and
// accepts it when it verifies. Every attack of the in-process bypass tables (and a few
// more, and the places of issue 18) is replayed over raw TCP with a revoked token and
// with a token that is not revoked; no backend may accept a revoked token that the
// gateway let through, and the runs with the live token (through the gateway and
// directly) show that the backends really read each place.
//
// Run it with (Node 20 and npm, Python 3 with `cryptography`, and Debian's
// python3-django, python3-gunicorn, python3-starlette, python3-multipart, python3-uvicorn
// and python3-jwt):
//
//	cd e2e && TRAEFIK_BIN=/path/to/traefik go test -count=1 -v ./differential
//
// DIFF_DETAIL=1 also logs one line per (place, spelling).
package differential
