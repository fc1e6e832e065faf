package differential

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/golang-jwt/jwt/v5/request"
)

// seenRecord is what a backend remembers of one request it handled.
type seenRecord struct {
	ID       string `json:"id"` // the request path
	Accepted bool   `json:"accepted"`
	Via      string `json:"via"`   // the extractor that yielded the accepted token
	Token    string `json:"token"` // SHA-256 (hex) of the accepted token string
}

// backend is one running resource server.
type backend struct {
	Name string
	URL  string // http://127.0.0.1:<port>
	// Full: every spelling is sent at every place (the three hand-written backends);
	// the others get every spelling only at the canonical header, and the canonical
	// tokens everywhere, to keep the run short.
	Full bool
}

// fetchSeen asks a backend directly (not through the gateway) what it handled.
func (b backend) fetchSeen(t *testing.T) map[string]seenRecord {
	t.Helper()
	resp, err := http.Get(b.URL + "/__seen")
	if err != nil {
		t.Fatalf("%s: /__seen: %v", b.Name, err)
	}
	defer resp.Body.Close()
	var recs []seenRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatalf("%s: /__seen: %v", b.Name, err)
	}
	out := make(map[string]seenRecord, len(recs))
	for _, r := range recs {
		if _, dup := out[r.ID]; dup {
			t.Errorf("%s handled %s twice", b.Name, r.ID)
		}
		out[r.ID] = r
	}
	return out
}

// goBackend is the Go resource server: net/http and golang-jwt/v5 with its defaults.
type goBackend struct {
	pub    *ecdsa.PublicKey
	secret []byte

	mu   sync.Mutex
	seen []seenRecord
}

// startGoBackend serves the Go backend on a free 127.0.0.1 port until the test ends.
func startGoBackend(t *testing.T, pub *ecdsa.PublicKey, secret []byte) backend {
	t.Helper()
	g := &goBackend{pub: pub, secret: secret}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	return backend{Name: "go", URL: "http://" + ln.Addr().String()}
}

func (g *goBackend) keyFunc(tok *jwt.Token) (any, error) {
	switch tok.Method.(type) {
	case *jwt.SigningMethodECDSA:
		return g.pub, nil
	case *jwt.SigningMethodHMAC:
		return g.secret, nil
	}
	return nil, fmt.Errorf("unexpected alg %v", tok.Header["alg"])
}

// candidates are the strings the usual Go extractors take for the token: golang-jwt's
// own request extractors, r.FormValue, and the hand-written header splits.
func (g *goBackend) candidates(r *http.Request) [][2]string {
	var out [][2]string
	add := func(via, tok string, err error) {
		if err == nil && tok != "" {
			out = append(out, [2]string{via, tok})
		}
	}
	tok, err := request.OAuth2Extractor.ExtractToken(r)
	add("request.OAuth2Extractor", tok, err)
	tok, err = request.AuthorizationHeaderExtractor.ExtractToken(r)
	add("request.AuthorizationHeaderExtractor", tok, err)
	tok, err = request.BearerExtractor{}.ExtractToken(r)
	add("request.BearerExtractor", tok, err)
	tok, err = request.ArgumentExtractor{"access_token"}.ExtractToken(r)
	add("request.ArgumentExtractor", tok, err)
	add("r.FormValue", r.FormValue("access_token"), nil)
	h := r.Header.Get("Authorization")
	add(`TrimPrefix(h, "Bearer ")`, strings.TrimPrefix(h, "Bearer "), nil)
	if f := strings.Fields(h); len(f) > 1 {
		add("Fields(h)[1]", f[1], nil)
	}
	if p := strings.SplitN(h, " ", 2); len(p) == 2 {
		add(`TrimSpace(SplitN(h, " ", 2)[1])`, strings.TrimSpace(p[1]), nil)
	}
	return out
}

func (g *goBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/__seen" {
		g.mu.Lock()
		data, _ := json.Marshal(g.seen)
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(data) //nolint:errcheck
		return
	}
	rec := seenRecord{ID: r.URL.Path}
	for _, c := range g.candidates(r) {
		if t, err := jwt.Parse(c[1], g.keyFunc); err == nil && t.Valid {
			sum := sha256.Sum256([]byte(c[1]))
			rec.Accepted, rec.Via, rec.Token = true, c[0], hex.EncodeToString(sum[:])
			break
		}
	}
	io.Copy(io.Discard, r.Body) //nolint:errcheck
	g.mu.Lock()
	g.seen = append(g.seen, rec)
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Diff-Backend", "go")
	status := http.StatusUnauthorized
	if rec.Accepted {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck
		"backend": "go", "id": rec.ID, "accepted": rec.Accepted, "via": rec.Via, "token": rec.Token,
	})
}

// startProcessBackend runs a backend script (it prints "PORT <n>" once listening) until
// the test ends.
func startProcessBackend(t *testing.T, name string, env []string, argv ...string) backend {
	t.Helper()
	return launchProcessBackend(t, name, env, argv...)()
}

// launchProcessBackend starts a backend script and returns a function that waits until
// it listens, so that several backends start at once.
func launchProcessBackend(t *testing.T, name string, env []string, argv ...string) func() backend {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Fatalf("%s backend: %v", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr := &lockedWriter{w: new(bytes.Buffer)}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s backend: %v", name, err)
	}
	t.Cleanup(func() {
		// The whole process group: gunicorn's worker is a child of its master.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
		cmd.Wait()                                      //nolint:errcheck
		if out := stderr.String(); t.Failed() && out != "" {
			t.Logf("%s backend stderr:\n%s", name, shortBytes([]byte(out), 4000))
		}
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
				select {
				case port <- p:
				default:
				}
			}
		}
	}()
	return func() backend {
		t.Helper()
		select {
		case p := <-port:
			return backend{Name: name, URL: "http://127.0.0.1:" + p}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s backend did not start: %s", name, stderr.String())
		}
		return backend{}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func testdata(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", name))
	return p
}

// debianPython is the first of $PYTHON_WEB, $PYTHON, python3 and /usr/bin/python3 that
// imports what the Django and Starlette backends need (Debian packages python3-django,
// python3-gunicorn, python3-starlette, python3-multipart, python3-uvicorn, python3-jwt;
// scripts/test.sh installs them).
func debianPython(t *testing.T) string {
	t.Helper()
	const probe = "import django, gunicorn, starlette, multipart, uvicorn, jwt"
	var tried []string
	for _, p := range []string{os.Getenv("PYTHON_WEB"), os.Getenv("PYTHON"), "python3", "/usr/bin/python3"} {
		if p == "" {
			continue
		}
		if err := exec.Command(p, "-c", probe).Run(); err == nil {
			return p
		}
		tried = append(tried, p)
	}
	t.Fatalf("no Python among %v imports django, gunicorn, starlette, multipart, uvicorn and jwt "+
		"(apt-get install python3-django python3-gunicorn python3-starlette python3-multipart python3-uvicorn python3-jwt)", tried)
	return ""
}

// npmStamp, inside node_modules, records the hash of package.json and
// package-lock.json that the last successful `npm ci` in testdata installed.
const npmStamp = ".differential-installed"

// ensureNodeDeps runs `npm ci` in testdata (the Express backends' packages) unless
// node_modules already holds what package-lock.json pins; under a file lock, so that
// two test binaries do not install over each other.
func ensureNodeDeps(t *testing.T) {
	t.Helper()
	dir := testdata("")
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm is not on PATH: the Express backends need their packages (npm ci in %s)", dir)
	}
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	want := hex.EncodeToString(h.Sum(nil))
	fresh := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", npmStamp))
		return err == nil && strings.TrimSpace(string(b)) == want
	}
	if fresh() {
		return
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".npm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if fresh() {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", npmStamp), []byte(want+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("npm ci in %s took %v", dir, time.Since(start).Round(time.Millisecond))
}
