// Package passthrough is the smallest possible Traefik yaegi middleware: ServeHTTP only
// calls the next handler. Benchmarks use it as the floor for the cost of an
// interpreted plugin in the request path.
package passthrough

import (
	"context"
	"net/http"
)

// Config is empty; the plugin takes no settings.
type Config struct{}

// CreateConfig returns the (empty) default configuration.
func CreateConfig() *Config { return &Config{} }

type passthrough struct {
	next http.Handler
}

// New returns the pass-through handler.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	return &passthrough{next: next}, nil
}

func (p *passthrough) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	p.next.ServeHTTP(rw, req)
}
