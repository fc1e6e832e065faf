package chaos

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// clusterNode is one embedded nats-server of a JetStream cluster.
type clusterNode struct {
	name     string
	port     int // client port
	url      string
	storeDir string

	mu  sync.Mutex
	srv *server.Server
}

// cluster is a JetStream cluster of embedded servers joined by routes, all on
// 127.0.0.1, each with its own file store.
type cluster struct {
	name  string
	nodes []*clusterNode
}

// startCluster starts n servers named n1..n<n> and waits until JetStream has a meta
// leader. Every node is shut down in t.Cleanup.
func startCluster(t *testing.T, name string, n int) *cluster {
	t.Helper()
	c := &cluster{name: name}
	routePorts := make([]int, n)
	var routes []*url.URL
	for i := 0; i < n; i++ {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		routePorts[i] = p
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	opts := make([]*server.Options, n)
	for i := 0; i < n; i++ {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		node := &clusterNode{
			name:     fmt.Sprintf("n%d", i+1),
			port:     port,
			url:      fmt.Sprintf("nats://127.0.0.1:%d", port),
			storeDir: t.TempDir(),
		}
		c.nodes = append(c.nodes, node)
		opts[i] = &server.Options{
			ServerName: node.name,
			Host:       "127.0.0.1",
			Port:       port,
			NoSigs:     true,
			NoLog:      true,
			JetStream:  true,
			StoreDir:   node.storeDir,
			Cluster: server.ClusterOpts{
				Name: name,
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: routes,
		}
	}
	t.Cleanup(c.shutdownAll)
	// JetStream in clustered mode needs its peers to become ready: start them all
	// before waiting for any.
	for i, node := range c.nodes {
		srv, err := server.NewServer(opts[i])
		if err != nil {
			t.Fatalf("nats-server %s: %v", node.name, err)
		}
		node.mu.Lock()
		node.srv = srv
		node.mu.Unlock()
		go srv.Start()
	}
	for _, node := range c.nodes {
		if !node.server().ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats-server %s not ready after 30s", node.name)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for c.metaLeader() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

func (n *clusterNode) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// shutdown stops the node and waits until it is down.
func (n *clusterNode) shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (c *cluster) shutdownAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func(n *clusterNode) {
			defer wg.Done()
			n.shutdown()
		}(n)
	}
	wg.Wait()
}

// urls lists the client URLs of every node (running or not).
func (c *cluster) urls() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.url)
	}
	return out
}

// liveURLs lists the client URLs of the running nodes.
func (c *cluster) liveURLs() []string {
	var out []string
	for _, n := range c.nodes {
		if n.server() != nil {
			out = append(out, n.url)
		}
	}
	return out
}

func (c *cluster) metaLeader() *clusterNode {
	for _, n := range c.nodes {
		if s := n.server(); s != nil && s.JetStreamIsLeader() {
			return n
		}
	}
	return nil
}

// streamLeader returns the node leading the stream in the global account, or nil.
func (c *cluster) streamLeader(stream string) *clusterNode {
	for _, n := range c.nodes {
		if s := n.server(); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return n
		}
	}
	return nil
}

// nodeByURL returns the node serving the client URL u (nil when none does).
func (c *cluster) nodeByURL(u string) *clusterNode {
	for _, n := range c.nodes {
		if strings.TrimPrefix(n.url, "nats://") == strings.TrimPrefix(u, "nats://") {
			return n
		}
	}
	return nil
}

// nodeName names the node of a client URL, for messages.
func (c *cluster) nodeName(u string) string {
	if n := c.nodeByURL(u); n != nil {
		return n.name
	}
	return u
}

// moveStreamLeader asks the current stream leader to step down in favour of target and
// waits until target leads the stream.
func moveStreamLeader(t *testing.T, c *cluster, target *clusterNode) {
	t.Helper()
	if l := c.streamLeader(streamName); l == target {
		return
	}
	nc, err := nats.Connect(strings.Join(c.liveURLs(), ","), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect for stepdown: %v", err)
	}
	defer nc.Close()
	body := []byte(`{"placement":{"preferred":"` + target.name + `"}}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+streamName, body, 5*time.Second); err != nil {
			t.Logf("stream leader stepdown request: %v", err)
		}
		for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); {
			if c.streamLeader(streamName) == target {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not move the leadership of stream %s to %s", streamName, target.name)
		}
	}
}
