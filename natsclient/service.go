package natsclient

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// The NATS service protocol ("micro", ADR-32): a service instance answers discovery
// requests on
//
//	$SRV.<VERB>                  every service
//	$SRV.<VERB>.<name>           every instance of the service <name>
//	$SRV.<VERB>.<name>.<id>      one instance
//
// for the verbs PING, INFO and STATS, with JSON documents of the types
// io.nats.micro.v1.ping_response, info_response and stats_response. This is what
// nats.go's micro package and the nats CLI ("nats micro ls|info|stats") speak. Only the
// discovery side is implemented here, plus endpoints whose handler returns the reply
// body (no service errors).

// Response types of the service protocol.
const (
	ServicePingType  = "io.nats.micro.v1.ping_response"
	ServiceInfoType  = "io.nats.micro.v1.info_response"
	ServiceStatsType = "io.nats.micro.v1.stats_response"
)

// ServiceConfig describes a service instance.
type ServiceConfig struct {
	// Name is the service name (letters, digits, '-' and '_'), shared by every instance.
	Name string
	// ID identifies this instance (same alphabet); empty: a random one.
	ID string
	// Version is the service's semantic version ("1.2.3", "1.2.3-rc.1").
	Version     string
	Description string
	// Metadata is sent in every PING, INFO and STATS reply; it must not change after
	// AddService.
	Metadata  map[string]string
	Endpoints []ServiceEndpoint
}

// ServiceEndpoint is one endpoint of a service.
type ServiceEndpoint struct {
	Name     string // same alphabet as a service name
	Subject  string // no queue group: every instance subscribed receives each request
	Metadata map[string]string
	// Handler returns the reply body of a request (sent only when the request has a
	// reply subject). It runs on the connection's reading goroutine.
	Handler func(m *Msg) []byte
	// Data, when set, returns the endpoint's "data" of a STATS reply (valid JSON, or nil
	// for none). It runs on the connection's reading goroutine.
	Data func() []byte
}

// Service is a running service instance. Its subscriptions are those of the
// connection: they are sent again after every reconnect, and end with Stop or Close.
type Service struct {
	conn    *Conn
	cfg     ServiceConfig
	started time.Time
	// subjects are the subjects subscribed to (set before the first subscription,
	// never changed), to recognize the server's permission errors about them.
	subjects []string

	mu    sync.Mutex
	subs  []*Subscription
	stats []endpointCounters
}

type endpointCounters struct {
	requests int
	nanos    int64
}

// serviceIdentity and the types below are the protocol's JSON documents (the field
// names and types of nats.go's micro.Ping, micro.Info and micro.Stats).
type servicePing struct {
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
	Type     string            `json:"type"`
}

type serviceInfo struct {
	Name        string                `json:"name"`
	ID          string                `json:"id"`
	Version     string                `json:"version"`
	Metadata    map[string]string     `json:"metadata"`
	Type        string                `json:"type"`
	Description string                `json:"description"`
	Endpoints   []serviceEndpointInfo `json:"endpoints"`
}

type serviceEndpointInfo struct {
	Name       string            `json:"name"`
	Subject    string            `json:"subject"`
	QueueGroup string            `json:"queue_group"`
	Metadata   map[string]string `json:"metadata"`
}

type serviceStats struct {
	Name      string                 `json:"name"`
	ID        string                 `json:"id"`
	Version   string                 `json:"version"`
	Metadata  map[string]string      `json:"metadata"`
	Type      string                 `json:"type"`
	Started   string                 `json:"started"`
	Endpoints []serviceEndpointStats `json:"endpoints"`
}

type serviceEndpointStats struct {
	Name                  string          `json:"name"`
	Subject               string          `json:"subject"`
	QueueGroup            string          `json:"queue_group"`
	NumRequests           int             `json:"num_requests"`
	NumErrors             int             `json:"num_errors"`
	LastError             string          `json:"last_error"`
	ProcessingTime        int64           `json:"processing_time"`         // nanoseconds
	AverageProcessingTime int64           `json:"average_processing_time"` // nanoseconds
	Data                  json.RawMessage `json:"data,omitempty"`
}

// serviceName reports whether s is a valid service or endpoint name.
func serviceName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// semver reports whether v is MAJOR.MINOR.PATCH with an optional pre-release and
// build part, as the service protocol requires.
func semver(v string) bool {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		if !dotIdents(v[i+1:], false) {
			return false
		}
		v = v[:i]
	}
	if i := strings.IndexByte(v, '-'); i >= 0 {
		if !dotIdents(v[i+1:], true) {
			return false
		}
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if !numericIdent(p) {
			return false
		}
	}
	return true
}

func numericIdent(p string) bool {
	if p == "" || (len(p) > 1 && p[0] == '0') {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// dotIdents checks dot-separated identifiers of [0-9A-Za-z-]; in a pre-release,
// numeric identifiers have no leading zero.
func dotIdents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			b := id[i]
			switch {
			case b >= '0' && b <= '9':
			case b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '-':
				numeric = false
			default:
				return false
			}
		}
		if pre && numeric && !numericIdent(id) {
			return false
		}
	}
	return true
}

// AddService starts answering the service protocol's PING, INFO and STATS requests for
// cfg, and the requests of its endpoints. It works while disconnected, like Subscribe.
func (c *Conn) AddService(cfg ServiceConfig) (*Service, error) {
	if !serviceName(cfg.Name) {
		return nil, errors.New("nats: service name must be letters, digits, '-' or '_'")
	}
	if cfg.ID == "" {
		cfg.ID = randomID()
	}
	if !serviceName(cfg.ID) {
		return nil, errors.New("nats: service id must be letters, digits, '-' or '_'")
	}
	if !semver(cfg.Version) {
		return nil, errors.New("nats: service version must be a semantic version")
	}
	for i := 0; i < len(cfg.Endpoints); i++ {
		e := cfg.Endpoints[i]
		if !serviceName(e.Name) {
			return nil, errors.New("nats: service endpoint name must be letters, digits, '-' or '_'")
		}
		if err := checkSubject(e.Subject); err != nil {
			return nil, err
		}
		if e.Handler == nil {
			return nil, ErrNilCallback
		}
	}
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	s := &Service{conn: c, cfg: cfg, started: time.Now().UTC(), stats: make([]endpointCounters, len(cfg.Endpoints))}
	verbs := []string{"PING", "INFO", "STATS"}
	for _, v := range verbs {
		s.subjects = append(s.subjects, "$SRV."+v, "$SRV."+v+"."+cfg.Name, "$SRV."+v+"."+cfg.Name+"."+cfg.ID)
	}
	for i := 0; i < len(cfg.Endpoints); i++ {
		s.subjects = append(s.subjects, cfg.Endpoints[i].Subject)
	}
	c.mu.Lock()
	c.services = append(c.services, s)
	c.mu.Unlock()
	for _, verb := range verbs {
		v := verb
		cb := func(m *Msg) { s.control(v, m) }
		for _, subj := range []string{"$SRV." + v, "$SRV." + v + "." + cfg.Name, "$SRV." + v + "." + cfg.Name + "." + cfg.ID} {
			if err := s.subscribe(subj, cb); err != nil {
				s.Stop()
				return nil, err
			}
		}
	}
	for i := 0; i < len(cfg.Endpoints); i++ {
		idx := i
		if err := s.subscribe(cfg.Endpoints[i].Subject, func(m *Msg) { s.handle(idx, m) }); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *Service) subscribe(subject string, cb func(m *Msg)) error {
	sub, err := s.conn.Subscribe(subject, cb)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return nil
}

// ID returns the instance's id.
func (s *Service) ID() string { return s.cfg.ID }

// Stop ends the service's subscriptions. It is idempotent.
func (s *Service) Stop() {
	c := s.conn
	c.mu.Lock()
	kept := c.services[:0]
	for _, other := range c.services {
		if other != s {
			kept = append(kept, other)
		}
	}
	c.services = kept
	c.mu.Unlock()
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
}

// handle runs endpoint i's handler and replies.
func (s *Service) handle(i int, m *Msg) {
	start := time.Now()
	body := s.cfg.Endpoints[i].Handler(m)
	if m.Reply != "" {
		_ = s.conn.Publish(m.Reply, body)
	}
	d := time.Since(start)
	s.mu.Lock()
	s.stats[i].requests++
	s.stats[i].nanos += int64(d)
	s.mu.Unlock()
}

// control answers one PING, INFO or STATS request.
func (s *Service) control(verb string, m *Msg) {
	if m.Reply == "" {
		return
	}
	body, err := s.document(verb)
	if err != nil {
		return
	}
	_ = s.conn.Publish(m.Reply, body)
}

// document returns the JSON reply to verb.
func (s *Service) document(verb string) ([]byte, error) {
	cfg := s.cfg
	switch verb {
	case "PING":
		return json.Marshal(servicePing{Name: cfg.Name, ID: cfg.ID, Version: cfg.Version, Metadata: cfg.Metadata, Type: ServicePingType})
	case "INFO":
		doc := serviceInfo{Name: cfg.Name, ID: cfg.ID, Version: cfg.Version, Metadata: cfg.Metadata,
			Type: ServiceInfoType, Description: cfg.Description, Endpoints: []serviceEndpointInfo{}}
		for i := 0; i < len(cfg.Endpoints); i++ {
			e := cfg.Endpoints[i]
			md := e.Metadata
			if md == nil {
				md = map[string]string{}
			}
			doc.Endpoints = append(doc.Endpoints, serviceEndpointInfo{Name: e.Name, Subject: e.Subject, Metadata: md})
		}
		return json.Marshal(doc)
	}
	doc := serviceStats{Name: cfg.Name, ID: cfg.ID, Version: cfg.Version, Metadata: cfg.Metadata,
		Type: ServiceStatsType, Started: s.started.Format(time.RFC3339Nano), Endpoints: []serviceEndpointStats{}}
	s.mu.Lock()
	counters := make([]endpointCounters, len(s.stats))
	copy(counters, s.stats)
	s.mu.Unlock()
	for i := 0; i < len(cfg.Endpoints); i++ {
		e := cfg.Endpoints[i]
		st := serviceEndpointStats{Name: e.Name, Subject: e.Subject,
			NumRequests: counters[i].requests, ProcessingTime: counters[i].nanos}
		if counters[i].requests > 0 {
			st.AverageProcessingTime = counters[i].nanos / int64(counters[i].requests)
		}
		if e.Data != nil {
			if data := e.Data(); len(data) > 0 && json.Valid(data) {
				st.Data = json.RawMessage(data)
			}
		}
		doc.Endpoints = append(doc.Endpoints, st)
	}
	return json.Marshal(doc)
}

// serviceDenied recognizes the server's -ERR refusing a subscription of a running
// service (a user without permission for $SRV.> or an endpoint subject). The service
// is then unavailable on this connection, and everything else works: the first such
// error of a connection is logged at info level, and none of them becomes the
// connection's LastError (the plugin shows that as its last error). It reports whether
// args was such an error.
func (c *Conn) serviceDenied(args []byte) bool {
	const prefix = "'permissions violation for subscription to \""
	text := string(args)
	if len(text) < len(prefix) || strings.ToLower(text[:len(prefix)]) != prefix {
		return false
	}
	rest := text[len(prefix):]
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return false
	}
	subject := rest[:end]
	name := ""
	c.mu.Lock()
	for _, s := range c.services {
		for _, own := range s.subjects {
			if own == subject {
				name = s.cfg.Name
			}
		}
	}
	first := name != "" && c.svcDenied != c.epoch
	if first {
		c.svcDenied = c.epoch
	}
	c.mu.Unlock()
	if first {
		c.logf("info", "nats: service "+name+" is not available on this connection: the server refused the subscription to "+
			subject+" (permissions; allow subscribing to $SRV.> and the service's endpoint subjects)")
	}
	return name != ""
}
