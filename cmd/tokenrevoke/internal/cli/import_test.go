package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// importFile writes n entries in the three line formats (plus a comment, a blank and an
// expired line at the top) and returns the path and, per line number, the subject the
// line publishes ("" for lines that publish nothing).
func importFile(t testing.TB, n int, tag string) (string, map[int64]string) {
	t.Helper()
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	var b strings.Builder
	subjects := map[int64]string{}
	line := int64(0)
	add := func(s, subject string) {
		line++
		b.WriteString(s + "\n")
		if subject != "" {
			subjects[line] = subject
		}
	}
	add("# revocations to backfill", "")
	add("", "")
	add(fmt.Sprintf(`{"sha256":"%s","exp":1000}`, sumHex("long-gone")), "")
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			tok := fmt.Sprintf("%s-opaque-%d", tag, i)
			add(tok, "tokens.revoked."+sumHex(tok))
		case 1:
			d := sumHex(fmt.Sprintf("%s-digest-%d", tag, i))
			add(fmt.Sprintf(`{"sha256":"%s","exp":%d,"hint":"refresh_token"}`, d, exp), "tokens.revoked."+d)
		case 2:
			tok := makeJWT(fmt.Sprintf(`{"jti":"%s-%d","exp":%d}`, tag, i, exp), "sig")
			add(fmt.Sprintf(`{"token":%q}`, tok), "tokens.revoked."+sumHex(tok[:strings.LastIndexByte(tok, '.')]))
		}
	}
	path := filepath.Join(t.TempDir(), "revocations.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, subjects
}

// streamSubjects returns every subject stored in the revocation stream.
func streamSubjects(t testing.TB, js jetstream.JetStream) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for s, n := range info.State.Subjects {
		if n != 1 {
			t.Fatalf("subject %s holds %d messages", s, n)
		}
		out[s] = true
	}
	return out
}

func readState(t testing.TB, path string) importState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	var st importState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file %s: %v", b, err)
	}
	return st
}

// checkConfirmed fails unless every line up to the state's line is in the stream.
func checkConfirmed(t testing.TB, js jetstream.JetStream, subjects map[int64]string, upTo int64) {
	t.Helper()
	have := streamSubjects(t, js)
	for l := int64(1); l <= upTo; l++ {
		if s := subjects[l]; s != "" && !have[s] {
			t.Fatalf("line %d is recorded as acknowledged but %s is not in the stream", l, s)
		}
	}
}

func checkComplete(t testing.TB, js jetstream.JetStream, subjects map[int64]string) {
	t.Helper()
	have := streamSubjects(t, js)
	if len(have) != len(subjects) {
		t.Fatalf("the stream holds %d subjects, want %d", len(have), len(subjects))
	}
	for l, s := range subjects {
		if !have[s] {
			t.Fatalf("line %d (%s) is missing", l, s)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func streamMsgs(t testing.TB, js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "REVOCATIONS")
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// An import of 10k lines interrupted mid-way (its context cancelled, as Ctrl-C does)
// exits 130 with a state file; everything it records is in the stream, and running it
// again resumes after it and leaves exactly the 10k subjects.
func TestImportInterruptedAndResumed(t *testing.T) {
	const n = 10000
	url := startNATS(t)
	_, js := client(t, url)
	path, subjects := importFile(t, n, "a")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- run(t, ctx, url, "", "import", path, "--window", "64", "--rate", "4000", "--json") }()
	waitFor(t, 20*time.Second, "3000 messages", func() bool { return streamMsgs(t, js) >= 3000 })
	cancel()
	r := <-done
	if r.code != ExitInterrupted {
		t.Fatalf("interrupted import: exit %d, want 130\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := readState(t, path+".progress")
	if st.Line < 3000 || st.Line >= n+3 {
		t.Fatalf("state line %d, want between 3000 and the end", st.Line)
	}
	if !strings.Contains(r.stderr, "resume") {
		t.Fatalf("no resume hint: %s", r.stderr)
	}
	checkConfirmed(t, js, subjects, st.Line)

	r = mustRun(t, url, "", 0, "import", path, "--json")
	var sum importSummary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("%s: %v", r.stdout, err)
	}
	rest := int64(0)
	for l := range subjects {
		if l > st.Line {
			rest++
		}
	}
	// The counts are this run's: the blank and expired lines were in the first part.
	if sum.ResumedAfter != st.Line || sum.Lines != n+3 || !sum.Complete || sum.Published != rest || sum.Expired != 0 || sum.Blank != 0 || sum.Rejected != 0 {
		t.Fatalf("resumed import summary %+v, want resumed after %d", sum, st.Line)
	}
	if _, err := os.Stat(path + ".progress"); !os.IsNotExist(err) {
		t.Fatalf("state file left after a complete import: %v", err)
	}
	checkComplete(t, js, subjects)
	info := streamInfo(t, js, "REVOCATIONS")
	if info.State.NumSubjects != n || info.State.Msgs != n {
		t.Fatalf("stream holds %d subjects / %d messages, want %d", info.State.NumSubjects, info.State.Msgs, n)
	}
}

// The built binary: Ctrl-C (SIGINT) saves the state and exits 130; SIGKILL loses no
// acknowledged line recorded by the periodic state writes; a third run completes.
func TestImportBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	const n = 10000
	bin := buildBinary(t)
	url := startNATS(t)
	_, js := client(t, url)
	path, subjects := importFile(t, n, "b")
	state := filepath.Join(t.TempDir(), "import.state")
	args := []string{"-s", url, "import", path, "--state", state, "--window", "64", "--rate", "2500"}

	// 1: SIGINT once 2000 messages are in.
	cmd, out := startBinary(t, bin, args...)
	waitFor(t, 20*time.Second, "2000 messages", func() bool { return streamMsgs(t, js) >= 2000 })
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if code := exitCode(err); code != ExitInterrupted {
		t.Fatalf("after SIGINT: exit %d (%v), want 130\n%s", code, err, out.String())
	}
	first := readState(t, state)
	if first.Line < 2000 {
		t.Fatalf("state after SIGINT: line %d", first.Line)
	}
	checkConfirmed(t, js, subjects, first.Line)

	// 2: SIGKILL after the state file moved on by 2000 lines: no clean-up runs.
	cmd, out = startBinary(t, bin, args...)
	waitFor(t, 20*time.Second, "the state file to move on", func() bool {
		b, err := os.ReadFile(state)
		var st importState
		return err == nil && json.Unmarshal(b, &st) == nil && st.Line >= first.Line+2000
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	second := readState(t, state)
	if second.Line < first.Line+2000 || second.Line >= n+3 {
		t.Fatalf("state after SIGKILL: line %d (first run %d)\n%s", second.Line, first.Line, out.String())
	}
	checkConfirmed(t, js, subjects, second.Line)

	// 3: completes.
	cmd, out = startBinary(t, bin, "-s", url, "import", path, "--state", state)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("resumed after line %d", second.Line)) {
		t.Fatalf("final run did not resume after line %d:\n%s", second.Line, out.String())
	}
	checkComplete(t, js, subjects)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds the command once per test binary.
func buildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tokenrevoke-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "tokenrevoke")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/tokenrevoke/tokenrevoke/cmd/tokenrevoke").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func startBinary(t testing.TB, bin string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Rejected lines are reported with their numbers and make the exit code 4; the rest
// is published.
func TestImportRejectedLines(t *testing.T) {
	url := startNATS(t)
	_, js := client(t, url)
	good := sumHex("good")
	in := strings.Join([]string{
		"plain-token",
		`{"sha256":"nothex"}`,
		`{"sha256":"` + good + `","kind":"jws"}`,
		`{"token":"x","sha256":"` + good + `"}`,
		`{not json`,
	}, "\n")
	state := filepath.Join(t.TempDir(), "st")
	r := mustRun(t, url, in, ExitRejected, "import", "-", "--state", state, "--json")
	for _, want := range []string{"line 2 rejected", "line 4 rejected", "line 5 rejected"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "line 1 ") || strings.Contains(r.stderr, "line 3 ") {
		t.Fatalf("good lines reported: %s", r.stderr)
	}
	have := streamSubjects(t, js)
	if len(have) != 2 || !have["tokens.revoked."+sumHex("plain-token")] || !have["tokens.revoked."+good] {
		t.Fatalf("stream subjects %v", have)
	}
	m := lastMsg(t, js, "REVOCATIONS", "tokens.revoked."+good)
	if !strings.Contains(string(m.Data), `"kind":"jws"`) {
		t.Fatalf("kind from the JSON line lost: %s", m.Data)
	}
}

// Without a stream, import publishes on core NATS (confirmed by flushes).
func TestImportCoreNATS(t *testing.T) {
	url := startNATS(t)
	nc, _ := client(t, url)
	var mu sync.Mutex
	got := map[string]bool{}
	sub, err := nc.Subscribe("tokens.revoked.>", func(m *nats.Msg) {
		mu.Lock()
		got[m.Subject] = true
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := 0; i < 500; i++ {
		lines = append(lines, "core-"+strconv.Itoa(i))
	}
	r := mustRun(t, url, strings.Join(lines, "\n"), 0, "import", "-", "--stream", "", "--window", "100", "--json")
	if !strings.Contains(r.stdout, `"published":500`) {
		t.Fatalf("summary %s", r.stdout)
	}
	waitFor(t, 5*time.Second, "500 core messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 500
	})
}

// When the stream stops acknowledging (here: a message limit with discard new, which
// the gateways accept), import stops with an error, and its state file records only
// acknowledged lines; after the limit is lifted the same command completes the rest.
func TestImportStopsAtFirstUnacknowledged(t *testing.T) {
	const n, limit = 6000, 2500
	url := startNATS(t)
	_, js := client(t, url)
	ctx := context.Background()
	cfg := wantedStream("REVOCATIONS", "tokens.revoked", 1)
	cfg.MaxMsgs, cfg.Discard = limit, jetstream.DiscardNew
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	path, subjects := importFile(t, n, "u")
	r := mustRun(t, url, "", ExitError, "import", path, "--window", "64", "--timeout", "500ms")
	if !strings.Contains(r.stderr, "import stopped") || !strings.Contains(r.stderr, "resume") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	st := readState(t, path+".progress")
	// Lines 1-3 publish nothing; line 3+limit is the first one the stream refused.
	if st.Line != 3+limit {
		t.Fatalf("state line %d, want %d (just before the first refused line)", st.Line, 3+limit)
	}
	checkConfirmed(t, js, subjects, st.Line)

	cfg.MaxMsgs = 0
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	mustRun(t, url, "", 0, "import", path)
	checkComplete(t, js, subjects)
}
