# Small entry points; the real work lives in the scripts they call.
.PHONY: demo test traefik e2e bench

# Two gateways, NATS with JetStream and an echo backend on this machine; prints curl commands.
demo:
	cd e2e && go run ./cmd/demo

# The project's whole test suite.
test:
	bash scripts/test.sh

# Only the end-to-end tests through a real Traefik binary.
e2e: traefik
	cd e2e && go test -count=1 -timeout 20m ./...

# Build (or find in .cache/) the Traefik binary the e2e tests and the demo run.
traefik:
	bash e2e/build-traefik.sh

# End-to-end benchmarks through real Traefik (6-8 minutes; run it on an idle
# machine). Writes bench-results/ and the traefik-bench section of BENCHMARKS.md.
# Smoke check: make bench BENCH_FLAGS=-quick
bench:
	bash scripts/bench.sh $(BENCH_FLAGS)
