package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// connFlags are the connection flags shared by every command.
type connFlags struct {
	server   string
	creds    string
	nkey     string
	user     string
	password string
	token    string
	tlsCert  string
	tlsKey   string
	tlsCA    string
	context  string
	timeout  time.Duration

	subject  string
	stream   string
	replicas int
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&c.server, "server", "s", "", "NATS server URLs, comma separated (env NATS_URL; default nats://127.0.0.1:4222)")
	fs.StringVar(&c.creds, "creds", "", "user credentials file (JWT + seed)")
	fs.StringVar(&c.nkey, "nkey", "", "NKey seed file")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.password, "password", "", "password")
	fs.StringVar(&c.token, "token", "", "authentication token")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate file")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key file")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA file to verify the servers")
	fs.StringVar(&c.context, "context", "", "nats CLI context name or file (env NATS_CONTEXT)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "timeout of connecting and of each NATS request")
	fs.StringVar(&c.subject, "subject", "tokens.revoked", "subject prefix of revocations (the gateways' nats.subject)")
	fs.StringVar(&c.stream, "stream", "REVOCATIONS", `JetStream stream (the gateways' nats.stream); "" = core NATS`)
	fs.IntVar(&c.replicas, "replicas", 1, "replicas of a stream this command creates (the gateways' nats.replicas)")
}

// natsContext is the part of a nats CLI context file that is used here.
type natsContext struct {
	URL      string `json:"url"`
	Token    string `json:"token"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
}

// loadContext reads the named nats CLI context (a name under the config directory, or a
// path to a .json file); with no name, the selected context (context.txt), if any.
func (a *app) loadContext() (*natsContext, error) {
	name := a.conn.context
	if name == "" {
		name = a.getenv("NATS_CONTEXT")
	}
	dir := a.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := a.getenv("HOME")
		if home == "" {
			return nil, nil
		}
		dir = filepath.Join(home, ".config")
	}
	dir = filepath.Join(dir, "nats")
	explicit := name != ""
	if name == "" {
		b, err := os.ReadFile(filepath.Join(dir, "context.txt"))
		if err != nil {
			return nil, nil
		}
		name = strings.TrimSpace(string(b))
		if name == "" {
			return nil, nil
		}
	}
	path := name
	if !strings.HasSuffix(name, ".json") {
		path = filepath.Join(dir, "context", name+".json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !explicit {
			return nil, nil
		}
		return nil, fmt.Errorf("nats context %q: %v", name, err)
	}
	var c natsContext
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("nats context %q: %v", name, err)
	}
	return &c, nil
}

func pick(flag, ctxValue string) string {
	if flag != "" {
		return flag
	}
	return ctxValue
}

// connect opens a NATS connection with the connection flags.
func (a *app) connect(ctx context.Context) (*nats.Conn, error) {
	c := a.conn
	nc, err := a.loadContext()
	if err != nil {
		return nil, usageErr("%v", err)
	}
	if nc == nil {
		nc = &natsContext{}
	}
	servers := c.server
	if servers == "" {
		servers = a.getenv("NATS_URL")
	}
	servers = pick(servers, nc.URL)
	if servers == "" {
		servers = nats.DefaultURL
	}
	opts := []nats.Option{
		nats.Name("tokenrevoke"),
		nats.Timeout(c.timeout),
		// Publishes made while reconnecting are buffered; acknowledgements decide.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	auth := 0
	if v := pick(c.creds, nc.Creds); v != "" {
		opts = append(opts, nats.UserCredentials(expandHome(v, a.getenv("HOME"))))
		auth++
	}
	if v := pick(c.nkey, nc.NKey); v != "" {
		o, err := nats.NkeyOptionFromSeed(expandHome(v, a.getenv("HOME")))
		if err != nil {
			return nil, fmt.Errorf("--nkey: %v", err)
		}
		opts = append(opts, o)
		auth++
	}
	if u := pick(c.user, nc.User); u != "" {
		opts = append(opts, nats.UserInfo(u, pick(c.password, nc.Password)))
		auth++
	}
	if v := pick(c.token, nc.Token); v != "" {
		opts = append(opts, nats.Token(v))
		auth++
	}
	if auth > 1 {
		return nil, usageErr("use one authentication method: --creds, --nkey, --user/--password or --token")
	}
	cert, key := pick(c.tlsCert, nc.Cert), pick(c.tlsKey, nc.Key)
	if (cert == "") != (key == "") {
		return nil, usageErr("--tlscert and --tlskey go together")
	}
	if cert != "" {
		opts = append(opts, nats.ClientCert(cert, key))
	}
	if ca := pick(c.tlsCA, nc.CA); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	type result struct {
		conn *nats.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := nats.Connect(servers, opts...)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("cannot connect to NATS at %s: %v", servers, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func expandHome(p, home string) string {
	if strings.HasPrefix(p, "~/") && home != "" {
		return filepath.Join(home, p[2:])
	}
	return p
}

// needStream refuses a command that needs JetStream when --stream is empty.
func (a *app) needStream(cmd string) error {
	if a.conn.stream == "" {
		return usageErr("%s needs a JetStream stream: --stream must not be empty", cmd)
	}
	return nil
}

// wantedStream is the configuration the gateways create (stream.go: wantedStream).
func wantedStream(name, subject string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "tokenrevoke: revoked OAuth tokens by SHA-256, each kept until the token expires",
		Subjects:          []string{subject + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		AllowMsgTTL:       true,
	}
}

// wantedSnapshotStream is the gateways' snapshot stream (snapshot.go: wantedSnapshotStream).
func wantedSnapshotStream(stream, subject string, replicas int) jetstream.StreamConfig {
	c := wantedStream(stream+"_SNAPSHOTS", subject+"-snapshots", replicas)
	c.Description = "tokenrevoke: snapshots of stream " + stream + " for fast gateway start"
	return c
}

// streamProblem says why an existing stream could drop a live revocation, as the
// gateways judge it (stream.go: streamProblem; replicas and max_age depend on the
// gateways' settings and are not checked here).
func streamProblem(c jetstream.StreamConfig, subject string) string {
	var problems []string
	covers := false
	for _, s := range c.Subjects {
		if s == subject+".>" {
			covers = true
		}
	}
	if !covers {
		problems = append(problems, fmt.Sprintf("its subjects %v do not include %s.>", c.Subjects, subject))
	}
	if !c.AllowMsgTTL {
		problems = append(problems, "it does not allow per-message TTLs (allow_msg_ttl)")
	}
	if c.Storage != jetstream.FileStorage {
		problems = append(problems, fmt.Sprintf("its storage is %s, not file", c.Storage))
	}
	if c.MaxMsgsPerSubject != 1 {
		problems = append(problems, fmt.Sprintf("max_msgs_per_subject is %d, not 1", c.MaxMsgsPerSubject))
	}
	if (c.MaxMsgs > 0 || c.MaxBytes > 0) && c.Discard != jetstream.DiscardNew {
		problems = append(problems, "it has a max_msgs/max_bytes limit with discard old, so live revocations could be dropped")
	}
	if c.Retention != jetstream.LimitsPolicy {
		problems = append(problems, fmt.Sprintf("its retention is %s, not limits", c.Retention))
	}
	return strings.Join(problems, "; ")
}

// session is a connection plus, with a stream, JetStream.
type session struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (s *session) close() {
	if s != nil && s.nc != nil {
		s.nc.Close()
	}
}

func (a *app) open(ctx context.Context, jsOpts ...jetstream.JetStreamOpt) (*session, error) {
	nc, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{nc: nc}
	if a.conn.stream != "" {
		js, err := jetstream.New(nc, append([]jetstream.JetStreamOpt{jetstream.WithDefaultTimeout(a.conn.timeout)}, jsOpts...)...)
		if err != nil {
			nc.Close()
			return nil, err
		}
		s.js = js
	}
	return s, nil
}

// revocationStream returns the revocation stream, creating it with the gateways'
// configuration when create is set and it is missing, and refusing one the gateways
// would refuse.
func (a *app) revocationStream(ctx context.Context, s *session, create bool) (jetstream.Stream, *jetstream.StreamInfo, error) {
	c := a.conn
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := s.js.Stream(rctx, c.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return nil, nil, fmt.Errorf("stream %s does not exist", c.stream)
		}
		st, err = s.js.CreateStream(rctx, wantedStream(c.stream, c.subject, c.replicas))
		if err == nil {
			a.infof("created stream %s (subjects %s.>, file storage, %d replica(s), one message per subject, per-message TTL)", c.stream, c.subject, c.replicas)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %v", c.stream, err)
	}
	info := st.CachedInfo()
	if p := streamProblem(info.Config, c.subject); p != "" {
		return nil, nil, fmt.Errorf("stream %s is not usable by the gateways: %s", c.stream, p)
	}
	return st, info, nil
}
