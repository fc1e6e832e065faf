package harness

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// ProbePrefix marks the harness's own readiness and reload probes, and so does the
// ProbeHeader request header. The backend answers them like any other request but
// neither counts nor records them.
const (
	ProbePrefix = "/__harness/"
	ProbeHeader = "X-Harness-Probe"
)

// EchoRequest is what the backend received, and what it answers with as JSON.
type EchoRequest struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Headers http.Header `json:"headers"`
	Body    string      `json:"body"`
}

// Backend is an HTTP echo server: every request gets 200 and a JSON EchoRequest.
type Backend struct {
	URL string // http://127.0.0.1:<port>

	srv   *http.Server
	ln    net.Listener
	count atomic.Int64

	mu      sync.Mutex
	records []EchoRequest
	keep    int
}

// StartBackend starts an echo backend for a test, stopped in t.Cleanup.
func StartBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := NewBackend()
	if err != nil {
		t.Fatalf("start backend: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// NewBackend starts an echo backend on a free 127.0.0.1 port; the caller must Close it.
// It keeps the last 10000 requests (see SetKeep) and counts all of them.
func NewBackend() (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Backend{URL: "http://" + ln.Addr().String(), ln: ln, keep: 10000}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	go b.srv.Serve(ln) //nolint:errcheck
	return b, nil
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := EchoRequest{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Headers: r.Header.Clone(),
		Body:    string(body),
	}
	if !strings.HasPrefix(r.URL.Path, ProbePrefix) && r.Header.Get(ProbeHeader) == "" {
		b.count.Add(1)
		b.mu.Lock()
		if b.keep > 0 {
			if len(b.records) >= b.keep {
				b.records = append(b.records[:0], b.records[len(b.records)-b.keep/2:]...)
			}
			b.records = append(b.records, rec)
		}
		b.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Echo-Backend", "1")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(rec) //nolint:errcheck
}

// SetKeep sets how many recent requests are recorded (0 records none; counting goes on).
func (b *Backend) SetKeep(n int) {
	b.mu.Lock()
	b.keep = n
	if n == 0 {
		b.records = nil
	}
	b.mu.Unlock()
}

// Count is the number of requests received, probes excluded.
func (b *Backend) Count() int64 { return b.count.Load() }

// Requests returns a copy of the recorded requests, oldest first.
func (b *Backend) Requests() []EchoRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]EchoRequest(nil), b.records...)
}

// Saw reports whether any recorded request matches.
func (b *Backend) Saw(match func(EchoRequest) bool) bool {
	for _, r := range b.Requests() {
		if match(r) {
			return true
		}
	}
	return false
}

// SawPath reports whether a request for path was recorded.
func (b *Backend) SawPath(path string) bool {
	return b.Saw(func(r EchoRequest) bool { return r.Path == path })
}

// SawSubstring reports whether s occurs in any recorded request's path, query, header
// value or body.
func (b *Backend) SawSubstring(s string) bool {
	return b.Saw(func(r EchoRequest) bool {
		if strings.Contains(r.Path, s) || strings.Contains(r.Query, s) || strings.Contains(r.Body, s) {
			return true
		}
		for _, vs := range r.Headers {
			for _, v := range vs {
				if strings.Contains(v, s) {
					return true
				}
			}
		}
		return false
	})
}

// Reset forgets recorded requests and zeroes the counter.
func (b *Backend) Reset() {
	b.mu.Lock()
	b.records = nil
	b.mu.Unlock()
	b.count.Store(0)
}

// Close stops the server.
func (b *Backend) Close() {
	if b.srv != nil {
		b.srv.Close()
	}
}
