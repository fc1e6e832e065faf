package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"
)

// gatewayStatus is the live state a gateway puts in the STATS data of its "status"
// endpoint (the plugin's service.go: gatewayStatus).
type gatewayStatus struct {
	Gateway         string          `json:"gateway"`
	Version         string          `json:"version"`
	Mode            string          `json:"mode"`
	Entries         int             `json:"entries"`
	Capacity        int             `json:"capacity"`
	Evictions       int64           `json:"evictions"`
	Expired         int64           `json:"expired"`
	Synced          bool            `json:"synced"`
	Connected       bool            `json:"connected"`
	Server          string          `json:"server,omitempty"`
	Stream          string          `json:"stream,omitempty"`
	StreamSeq       uint64          `json:"streamSequence"`
	LastError       string          `json:"lastError,omitempty"`
	Received        int64           `json:"received"`
	Dropped         int64           `json:"dropped"`
	Published       int64           `json:"published"`
	PublishFailures int64           `json:"publishFailures"`
	Snapshot        json.RawMessage `json:"snapshot,omitempty"`
}

// gatewayLine is one gateway as `gateways` prints it.
type gatewayLine struct {
	ID          string            `json:"id"`
	Service     string            `json:"service"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Started     *time.Time        `json:"started,omitempty"`
	// Status is the STATS data; nil when the gateway answered PING or INFO but not
	// STATS within the window.
	Status *gatewayStatus `json:"status"`
	// Missing lists the requests (ping, info, stats) the gateway did not answer in time.
	Missing []string `json:"missing,omitempty"`

	ping, info, stats bool
}

func (g *gatewayLine) name() string {
	if g.Status != nil && g.Status.Gateway != "" {
		return g.Status.Gateway
	}
	return g.Metadata["gateway"]
}

func (a *app) gatewaysCmd() *cobra.Command {
	var (
		wait    time.Duration
		service string
		expect  int
	)
	cmd := &cobra.Command{
		Use:   "gateways",
		Short: "List the running gateways and their state: one table for the whole fleet",
		Long: `Ask every running gateway for its state over the NATS service protocol and print one
table for the fleet: gateway name (nats.name), plugin version, mode, revoked tokens held
(entries), evictions, synced, connected, stream sequence and last error.

Gateways register as instances of the service "tokenrevoke": the command sends
$SRV.PING, $SRV.INFO and $SRV.STATS for that name and collects the replies for
--timeout (default 1s; NATS cannot say how many gateways exist, so it waits the whole
window unless --expect N gateways have answered). The same gateways show in
"nats micro ls tokenrevoke", "nats micro info" and "nats micro stats".

--json prints one JSON object per gateway and line (id, service, version, metadata,
started, status, missing). Exits 1 when no gateway (or fewer than --expect) answered.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return usageErr("--timeout must be positive")
			}
			if expect < 0 {
				return usageErr("--expect must not be negative")
			}
			ctx := cmd.Context()
			nc, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			lines, err := collectGateways(ctx, nc, service, wait, expect)
			if err != nil {
				return err
			}
			if a.json {
				for _, g := range lines {
					a.printJSON(g)
				}
			} else if len(lines) > 0 {
				a.printGateways(lines)
			}
			synced, connected := 0, 0
			for _, g := range lines {
				if g.Status != nil && g.Status.Synced {
					synced++
				}
				if g.Status != nil && g.Status.Connected {
					connected++
				}
			}
			if !a.json && len(lines) > 0 {
				a.infof("%d gateway(s): %d synced, %d connected", len(lines), synced, connected)
			}
			if len(lines) == 0 {
				return fail(ExitError, "no gateway answered $SRV.PING.%s within %v", service, wait)
			}
			if len(lines) < expect {
				return fail(ExitError, "%d gateway(s) answered within %v, expected %d", len(lines), wait, expect)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	// A local --timeout: here it is the collection window (the global flag still sets
	// the connect timeout through its default).
	f.DurationVar(&wait, "timeout", time.Second, "how long to collect replies")
	f.StringVar(&service, "service", "tokenrevoke", "service name the gateways register under")
	f.IntVar(&expect, "expect", 0, "stop once this many gateways answered everything; exit 1 if fewer did")
	return cmd
}

// collectGateways sends PING, INFO and STATS for service and gathers the replies by
// instance id until wait has passed (or expect instances answered all three).
func collectGateways(ctx context.Context, nc *nats.Conn, service string, wait time.Duration, expect int) ([]*gatewayLine, error) {
	type reply struct {
		verb micro.Verb
		data []byte
	}
	ch := make(chan reply, 1024)
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		v := verb
		subject, err := micro.ControlSubject(v, service, "")
		if err != nil {
			return nil, usageErr("--service: %v", err)
		}
		inbox := nc.NewRespInbox()
		sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
			if len(m.Data) == 0 { // a status message (no responders)
				return
			}
			select {
			case ch <- reply{v, m.Data}:
			default:
			}
		})
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
		if err := nc.PublishRequest(subject, inbox, nil); err != nil {
			return nil, err
		}
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	byID := map[string]*gatewayLine{}
	get := func(id string) *gatewayLine {
		g := byID[id]
		if g == nil {
			g = &gatewayLine{ID: id}
			byID[id] = g
		}
		return g
	}
	complete := func() int {
		n := 0
		for _, g := range byID {
			if g.ping && g.info && g.stats {
				n++
			}
		}
		return n
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
collect:
	for {
		select {
		case r := <-ch:
			switch r.verb {
			case micro.PingVerb:
				var p micro.Ping
				if json.Unmarshal(r.data, &p) != nil || p.Type != micro.PingResponseType || p.ID == "" {
					continue
				}
				g := get(p.ID)
				g.ping = true
				g.fillIdentity(p.ServiceIdentity)
			case micro.InfoVerb:
				var in micro.Info
				if json.Unmarshal(r.data, &in) != nil || in.Type != micro.InfoResponseType || in.ID == "" {
					continue
				}
				g := get(in.ID)
				g.info = true
				g.fillIdentity(in.ServiceIdentity)
				g.Description = in.Description
			case micro.StatsVerb:
				var st micro.Stats
				if json.Unmarshal(r.data, &st) != nil || st.Type != micro.StatsResponseType || st.ID == "" {
					continue
				}
				g := get(st.ID)
				g.stats = true
				g.fillIdentity(st.ServiceIdentity)
				started := st.Started
				g.Started = &started
				for _, e := range st.Endpoints {
					if e != nil && e.Name == "status" && len(e.Data) > 0 {
						var gs gatewayStatus
						if json.Unmarshal(e.Data, &gs) == nil {
							g.Status = &gs
						}
					}
				}
			}
			if expect > 0 && complete() >= expect {
				break collect
			}
		case <-timer.C:
			break collect
		case <-ctx.Done():
			return nil, fmt.Errorf("interrupted")
		}
	}
	lines := make([]*gatewayLine, 0, len(byID))
	for _, g := range byID {
		if !g.ping {
			g.Missing = append(g.Missing, "ping")
		}
		if !g.info {
			g.Missing = append(g.Missing, "info")
		}
		if !g.stats {
			g.Missing = append(g.Missing, "stats")
		}
		lines = append(lines, g)
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].name() != lines[j].name() {
			return lines[i].name() < lines[j].name()
		}
		return lines[i].ID < lines[j].ID
	})
	return lines, nil
}

func (g *gatewayLine) fillIdentity(id micro.ServiceIdentity) {
	g.Service = id.Name
	g.Version = id.Version
	if len(id.Metadata) > 0 {
		g.Metadata = id.Metadata
	}
}

// printGateways writes the fleet table.
func (a *app) printGateways(lines []*gatewayLine) {
	tw := tabwriter.NewWriter(a.stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tVERSION\tMODE\tENTRIES\tCAPACITY\tEVICTIONS\tSYNCED\tCONNECTED\tSTREAM SEQ\tLAST ERROR\tID")
	for _, g := range lines {
		name := g.name()
		if name == "" {
			name = "?"
		}
		mode := g.Metadata["mode"]
		cols := []string{name, g.Version, dash(mode)}
		if st := g.Status; st != nil {
			seq := "-"
			if st.Stream != "" {
				seq = strconv.FormatUint(st.StreamSeq, 10)
			}
			cols = append(cols, strconv.Itoa(st.Entries), strconv.Itoa(st.Capacity),
				strconv.FormatInt(st.Evictions, 10), yesNo(st.Synced), yesNo(st.Connected), seq,
				dash(oneLine(st.LastError, 60)))
		} else {
			cols = append(cols, "?", "?", "?", "?", "?", "?", "no answer to "+strings.Join(g.Missing, ", "))
		}
		cols = append(cols, g.ID)
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table cell on one line and at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}
