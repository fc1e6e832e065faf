package tokenrevoke

import (
	"encoding/json"
	"strings"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

// Fleet view: every gateway with NATS answers the NATS service protocol ("micro") as
// an instance of the service "tokenrevoke", so that `tokenrevoke gateways`, `nats micro
// ls|info|stats` and nats.go's micro client list the running gateways:
//
//	$SRV.PING|INFO|STATS, $SRV.<VERB>.tokenrevoke, $SRV.<VERB>.tokenrevoke.<id>
//
// One instance per domain (one per Traefik process and NATS configuration), with a
// random id. The metadata holds what does not change (gateway name, mode, subject,
// stream); the "status" endpoint's STATS data, and its reply, hold the live state
// (entries, evictions, synced, stream sequence, last error, connected...). Nothing in
// them comes from a request: no token, hash, sid, sub, client id or secret.

// serviceName is the name every gateway registers under.
const serviceName = "tokenrevoke"

// pluginVersion is the plugin's release version (semantic version, as the service
// protocol requires), shown by the fleet view.
const pluginVersion = "0.1.0"

// serviceStatusSubject is the prefix of each instance's status endpoint subject
// (<prefix>.<id>). It starts with an underscore so that no revocation stream
// (<nats.subject>.>) is likely to capture it.
const serviceStatusSubject = "_tokenrevoke.status"

// gatewayStatus is the live state in the STATS data and the status endpoint's reply.
type gatewayStatus struct {
	Gateway        string          `json:"gateway"`
	Version        string          `json:"version"`
	Mode           string          `json:"mode"`
	Entries        int             `json:"entries"`
	Capacity       int             `json:"capacity"`
	Evictions      int64           `json:"evictions"`
	Expired        int64           `json:"expired"`
	Synced         bool            `json:"synced"`
	Connected      bool            `json:"connected"`
	Server         string          `json:"server,omitempty"`
	Stream         string          `json:"stream,omitempty"`
	StreamSeq      uint64          `json:"streamSequence"`
	LastError      string          `json:"lastError,omitempty"`
	Received       int64           `json:"received"`
	Dropped        int64           `json:"dropped"`
	Published      int64           `json:"published"`
	PublishFailure int64           `json:"publishFailures"`
	Snapshot       *snapshotStatus `json:"snapshot,omitempty"`
}

func (l *natsLink) mode() string {
	if l.n.stream != "" {
		return "jetstream"
	}
	return "nats"
}

// serviceStatus collects the link's and its cache's state.
func (l *natsLink) serviceStatus() gatewayStatus {
	st := l.status()
	entries, evictions, expired := l.cache.stats()
	l.cache.mu.RLock()
	capacity := l.cache.capacity
	l.cache.mu.RUnlock()
	server := st.Server
	if i := strings.LastIndexByte(server, '@'); i >= 0 {
		// ConnectedURL has no credentials; this only makes sure of it.
		scheme := ""
		if j := strings.Index(server, "://"); j >= 0 && j < i {
			scheme = server[:j+3]
		}
		server = scheme + server[i+1:]
	}
	return gatewayStatus{
		Gateway:        l.n.name,
		Version:        pluginVersion,
		Mode:           l.mode(),
		Entries:        entries,
		Capacity:       capacity,
		Evictions:      evictions,
		Expired:        expired,
		Synced:         st.Synced,
		Connected:      st.Connected,
		Server:         server,
		Stream:         st.Stream,
		StreamSeq:      st.StreamSeq,
		LastError:      st.LastError,
		Received:       st.Received,
		Dropped:        st.Dropped,
		Published:      st.Published,
		PublishFailure: st.PublishFail,
		Snapshot:       st.Snapshot,
	}
}

func (l *natsLink) serviceStatusJSON() []byte {
	b, err := json.Marshal(l.serviceStatus())
	if err != nil {
		return nil
	}
	return b
}

// startService registers the gateway as an instance of the "tokenrevoke" service on
// the link's connection (its subscriptions are re-sent after every reconnect). A
// failure only costs the fleet view: it is logged, the gateway works on.
func (l *natsLink) startService() {
	id := l.conn.NewInbox()[len("_INBOX."):] // random hex
	md := map[string]string{
		"gateway": l.n.name,
		"mode":    l.mode(),
		"subject": l.n.subject,
	}
	if l.n.stream != "" {
		md["stream"] = l.n.stream
	}
	var ep natsclient.ServiceEndpoint
	ep.Name = "status"
	ep.Subject = serviceStatusSubject + "." + id
	ep.Metadata = map[string]string{"format": "application/json"}
	ep.Handler = func(m *natsclient.Msg) []byte { return l.serviceStatusJSON() }
	ep.Data = l.serviceStatusJSON
	var cfg natsclient.ServiceConfig
	cfg.Name = serviceName
	cfg.ID = id
	cfg.Version = pluginVersion
	cfg.Description = "tokenrevoke gateway " + l.n.name + ": OAuth token revocation at the edge"
	cfg.Metadata = md
	cfg.Endpoints = []natsclient.ServiceEndpoint{ep}
	if _, err := l.conn.AddService(cfg); err != nil {
		l.log.warnf("nats: fleet view (service %s) not available: %v", serviceName, err)
	}
}
