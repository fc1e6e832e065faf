package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

const (
	revokePath   = "/api/id/v1/auth/token/revoke"
	statusPath   = "/api/id/v1/auth/token/revoke/status"
	clientID     = "portal"
	clientSecret = "s3cret"
	// resourcePath is what the load asks for on every route.
	resourcePath = "/api/orders"
)

// adminClient is for the control requests (status, debug endpoints, sanity checks).
var adminClient = &http.Client{Timeout: 10 * time.Second}

// pluginConfig is the tokenrevoke configuration of every benchmark gateway; only the
// stream (and the NATS client name) differ between them.
func pluginConfig(natsURL string, s streamSpec, name string, cacheSize int) map[string]any {
	return map[string]any{
		"revokePath": revokePath,
		"statusPath": statusPath,
		"clients":    []any{map[string]any{"id": clientID, "secret": clientSecret, "ratePerMinute": -1}},
		"cacheSize":  cacheSize,
		"defaultTTL": "1h",
		"nats": map[string]any{
			"servers": []any{natsURL},
			"subject": s.Subject,
			"name":    name,
			"stream":  s.Name,
		},
	}
}

// gatewayStatus is the part of the plugin's status document the benchmark reads.
type gatewayStatus struct {
	Entries int  `json:"entries"`
	Synced  bool `json:"synced"`
	NATS    *struct {
		Connected bool   `json:"connected"`
		LastError string `json:"lastError"`
		Snapshot  *struct {
			LoadedSequence  uint64 `json:"loadedSequence"`
			WrittenSequence uint64 `json:"writtenSequence"`
			LastError       string `json:"lastError"`
		} `json:"snapshot"`
	} `json:"nats"`
}

// snapshotSeqs returns the sequences of the snapshot a gateway loaded and of the last
// one it wrote (0 when none).
func (st gatewayStatus) snapshotSeqs() (loaded, written uint64) {
	if st.NATS == nil || st.NATS.Snapshot == nil {
		return 0, 0
	}
	return st.NATS.Snapshot.LoadedSequence, st.NATS.Snapshot.WrittenSequence
}

// waitSnapshotWritten polls the status document until the gateway has written a
// snapshot covering at least seq.
func waitSnapshotWritten(ctx context.Context, gw *harness.Traefik, seq uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := readStatus(gw)
		if _, written := st.snapshotSeqs(); err == nil && written >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s wrote no snapshot up to sequence %d in %v: last status %+v, error %v", gw.Name, seq, timeout, st, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readStatus(gw *harness.Traefik) (gatewayStatus, error) {
	var st gatewayStatus
	req, err := http.NewRequest(http.MethodGet, gw.WebURL+statusPath, nil)
	if err != nil {
		return st, err
	}
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := adminClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return st, json.Unmarshal(body, &st)
}

// waitSynced polls the status document every 20 ms until the store holds want entries
// and the stream replay is complete.
func waitSynced(ctx context.Context, gw *harness.Traefik, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last gatewayStatus
	var lastErr error
	for {
		st, err := readStatus(gw)
		if err == nil && st.Synced && st.Entries == want {
			return nil
		}
		last, lastErr = st, err
		if gw.Exited() {
			return fmt.Errorf("gateway %s exited while syncing:\n%s", gw.Name, gatewayTrouble(gw))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s not synced with %d entries after %v: last status %+v, error %v", gw.Name, want, timeout, last, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// memInfo is the memory of a gateway process: VmRSS and VmHWM from /proc, and the Go
// heap after a forced collection (from Traefik's debug endpoints).
type memInfo struct {
	RSSBytes      int64 `json:"rssBytes"`
	PeakRSSBytes  int64 `json:"peakRssBytes"`
	HeapAllocGC   int64 `json:"heapAllocAfterGCBytes"`
	HeapSysBytes  int64 `json:"heapSysBytes"`
	HeapIdleBytes int64 `json:"heapIdleBytes"`
}

// readMemory reads RSS first (as it is, the number operators see), then forces a GC
// through /debug/pprof/heap?gc=1 and reads the live heap from /debug/vars.
func readMemory(gw *harness.Traefik) (memInfo, error) {
	var m memInfo
	kb, err := procStatusKBFile(fmt.Sprintf("/proc/%d/status", gw.Pid()), "VmRSS", "VmHWM")
	if err != nil {
		return m, err
	}
	m.RSSBytes = kb["VmRSS"] * 1024
	m.PeakRSSBytes = kb["VmHWM"] * 1024

	resp, err := adminClient.Get(gw.AdminURL + "/debug/pprof/heap?gc=1")
	if err != nil {
		return m, err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	ms, err := readMemStats(gw)
	if err != nil {
		return m, err
	}
	m.HeapAllocGC = ms.HeapAlloc
	m.HeapSysBytes = ms.HeapSys
	m.HeapIdleBytes = ms.HeapIdle
	return m, nil
}

// memStats is the part of runtime.MemStats read from Traefik's /debug/vars.
type memStats struct {
	HeapAlloc    int64
	HeapSys      int64
	HeapIdle     int64
	TotalAlloc   int64
	NumGC        int64
	PauseTotalNs int64
}

func readMemStats(gw *harness.Traefik) (memStats, error) {
	var vars struct {
		MemStats memStats `json:"memstats"`
	}
	resp, err := adminClient.Get(gw.AdminURL + "/debug/vars")
	if err != nil {
		return vars.MemStats, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		return vars.MemStats, fmt.Errorf("/debug/vars: %w", err)
	}
	return vars.MemStats, nil
}

// cpuTicks is the user+system CPU time of a process in clock ticks (/proc/<pid>/stat).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: start after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// After ")" come state (field 3), ..., utime (field 14) and stime (field 15).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + st, nil
}

// clockTicks is USER_HZ; 100 on every Linux this runs on.
const clockTicks = 100

// expectStatus sends one request and checks the status code.
func expectStatus(url, token string, want int) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %s, want %d: %s", url, resp.Status, want, strings.TrimSpace(string(body)))
	}
	return nil
}

// machineTicks reads the first line of /proc/stat: the busy time of all CPUs together
// (user, nice, system, irq, softirq, steal) and the steal time alone, in clock ticks.
func machineTicks() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	// user nice system idle iowait irq softirq steal
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[7], nil
}

// cpuWindow measures how much CPU the rest of the machine used while something ran:
// all CPUs' busy time minus the processes we know (ours), in cores on average.
type cpuWindow struct {
	begin time.Time
	busy  int64
	own   map[int]int64 // pid -> CPU ticks at the start (0 for a process started later)
}

func startCPUWindow(pids ...int) cpuWindow {
	w := cpuWindow{begin: time.Now(), own: make(map[int]int64)}
	w.busy, _, _ = machineTicks()
	for _, pid := range pids {
		w.own[pid], _ = cpuTicks(pid)
	}
	return w
}

// track adds a process started after the window opened (all its CPU time counts).
func (w cpuWindow) track(pid int) { w.own[pid] = 0 }

// otherCores is the average number of cores used by processes not tracked, minus
// extraSeconds of CPU known to belong to untracked processes of ours (wrk).
func (w cpuWindow) otherCores(extraSeconds float64) float64 {
	busy, _, err := machineTicks()
	if err != nil {
		return 0
	}
	mine := extraSeconds
	for pid, t0 := range w.own {
		if t1, err := cpuTicks(pid); err == nil {
			mine += float64(t1-t0) / clockTicks
		}
	}
	wall := time.Since(w.begin).Seconds()
	if wall <= 0 {
		return 0
	}
	return max(0, float64(busy-w.busy)/clockTicks-mine) / wall
}
