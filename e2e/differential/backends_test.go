package differential

import (
	"bufio"
	"bytes"
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
		cmd.Process.Kill() //nolint:errcheck
		cmd.Wait()         //nolint:errcheck
		if out := stderr.String(); t.Failed() && out != "" {
			t.Logf("%s backend stderr:\n%s", name, out)
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
	select {
	case p := <-port:
		return backend{Name: name, URL: "http://127.0.0.1:" + p}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s backend did not start: %s", name, stderr.String())
	}
	return backend{}
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
