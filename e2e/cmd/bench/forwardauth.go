package main

import (
	"crypto/sha256"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// authService is the usual alternative to a gateway plugin: a small compiled Go
// service that Traefik's ForwardAuth middleware asks about every request. It holds
// the same revoked set as the plugin (SHA-256 of the token -> expiry, unix seconds)
// and answers 200 (let it through) or 401 from the Authorization header alone.
type authService struct {
	mu      sync.RWMutex
	revoked map[[32]byte]int64

	srv *http.Server
	URL string // http://127.0.0.1:<port>
}

func newAuthService(revoked map[[32]byte]int64) (*authService, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &authService{revoked: revoked, URL: "http://" + ln.Addr().String()}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln) //nolint:errcheck
	return a, nil
}

func (a *authService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, v := range r.Header.Values("Authorization") {
		if len(v) <= 7 || !strings.EqualFold(v[:7], "bearer ") {
			continue
		}
		sum := sha256.Sum256([]byte(strings.TrimLeft(v[7:], " ")))
		a.mu.RLock()
		exp, found := a.revoked[sum]
		a.mu.RUnlock()
		if found && exp > time.Now().Unix() {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token has been revoked"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (a *authService) Close() { a.srv.Close() }

// forwardAuthRoute is merged into a gateway's dynamic configuration: router "fa" on
// /fa with a forwardAuth middleware pointing at the service (Traefik's defaults
// otherwise: all request headers, Authorization included, are sent to it).
func forwardAuthRoute(authURL string) map[string]any {
	return map[string]any{"http": map[string]any{
		"middlewares": map[string]any{
			"fa": map[string]any{"forwardAuth": map[string]any{"address": authURL + "/check"}},
		},
		"routers": map[string]any{
			"fa": map[string]any{
				"entryPoints": []any{"web"},
				"rule":        "PathPrefix(`/fa`)",
				"service":     "backend",
				"priority":    9000,
				"middlewares": []any{"fa"},
			},
		},
	}}
}
