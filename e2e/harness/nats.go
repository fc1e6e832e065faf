package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configures an embedded nats-server.
type NATSOptions struct {
	// Port to listen on (127.0.0.1); 0 picks a free one.
	Port int
	// JetStream enables JetStream, storing in StoreDir.
	JetStream bool
	// StoreDir for JetStream; empty means a fresh temporary directory (removed on Close).
	StoreDir string
	// Monitor enables the HTTP monitoring endpoint (/connz, /varz, ...) on a free port.
	Monitor bool
	// Debug sends the server's own log to stderr.
	Debug bool
}

// NATS is a running embedded nats-server. Restart brings it back on the same port and
// store directory.
type NATS struct {
	mu         sync.Mutex
	opts       NATSOptions
	srv        *server.Server
	tmpStore   string
	monitor    int
	URL        string // nats://127.0.0.1:<port>
	MonitorURL string // http://127.0.0.1:<port>, empty without Monitor
}

// StartNATS starts a server for a test and shuts it down in t.Cleanup.
func StartNATS(t testing.TB, opts NATSOptions) *NATS {
	t.Helper()
	n, err := NewNATS(opts)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// NewNATS starts a server; the caller must Close it.
func NewNATS(opts NATSOptions) (*NATS, error) {
	n := &NATS{opts: opts}
	if n.opts.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		n.opts.Port = p
	}
	if n.opts.JetStream && n.opts.StoreDir == "" {
		d, err := os.MkdirTemp("", "tokenrevoke-nats-*")
		if err != nil {
			return nil, err
		}
		n.tmpStore = d
		n.opts.StoreDir = d
	}
	if n.opts.Monitor {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		n.monitor = p
		n.MonitorURL = fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	n.URL = fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port)
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *NATS) start() error {
	so := &server.Options{
		ServerName: fmt.Sprintf("e2e-%d", n.opts.Port),
		Host:       "127.0.0.1",
		Port:       n.opts.Port,
		NoSigs:     true,
		NoLog:      !n.opts.Debug,
		JetStream:  n.opts.JetStream,
		StoreDir:   n.opts.StoreDir,
	}
	if n.monitor != 0 {
		so.HTTPHost = "127.0.0.1"
		so.HTTPPort = n.monitor
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return err
	}
	if n.opts.Debug {
		srv.ConfigureLogger()
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return errors.New("nats-server not ready after 10s")
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	return nil
}

// Server is the running server (nil while shut down).
func (n *NATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Port is the client port.
func (n *NATS) Port() int { return n.opts.Port }

// StoreDir is the JetStream store directory ("" without JetStream).
func (n *NATS) StoreDir() string { return n.opts.StoreDir }

// Shutdown stops the server and waits until it is down; Restart brings it back.
func (n *NATS) Shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart shuts the server down (if running) and starts a new one on the same port,
// monitor port and store directory.
func (n *NATS) Restart() error {
	n.Shutdown()
	var err error
	// The port can linger briefly after shutdown; retry for a few seconds.
	for i := 0; i < 50; i++ {
		if err = n.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Close stops the server and removes a temporary store directory.
func (n *NATS) Close() {
	n.Shutdown()
	if n.tmpStore != "" {
		os.RemoveAll(n.tmpStore)
		n.tmpStore = ""
	}
}

// Connections lists the open client connections (with their subscriptions).
func (n *NATS) Connections() ([]*server.ConnInfo, error) {
	srv := n.Server()
	if srv == nil {
		return nil, errors.New("nats-server is not running")
	}
	cz, err := srv.Connz(&server.ConnzOptions{Subscriptions: true, Limit: 10000})
	if err != nil {
		return nil, err
	}
	return cz.Conns, nil
}

// ConnectionsNamed counts open client connections whose CONNECT name equals name.
func (n *NATS) ConnectionsNamed(name string) (int, error) {
	conns, err := n.Connections()
	if err != nil {
		return 0, err
	}
	c := 0
	for _, ci := range conns {
		if ci.Name == name {
			c++
		}
	}
	return c, nil
}

// MonitorConnz reads /connz over HTTP from the monitoring port (needs Monitor) and
// returns the connection names, one entry per open connection.
func (n *NATS) MonitorConnz() ([]string, error) {
	if n.MonitorURL == "" {
		return nil, errors.New("monitoring is not enabled")
	}
	resp, err := http.Get(n.MonitorURL + "/connz?limit=10000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(body.Connections))
	for _, c := range body.Connections {
		names = append(names, c.Name)
	}
	return names, nil
}
