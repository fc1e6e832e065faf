package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sumHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// A JWS revoked through stdin is found by check, under its signing-input key, also when
// presented with another spelling of its signature; only digests are stored.
func TestRevokeThenCheck(t *testing.T) {
	url := startNATS(t)
	_, js := client(t, url)
	exp := time.Now().Add(2 * time.Hour).Unix()
	tok := makeJWT(`{"sub":"alice","exp":`+strconv.FormatInt(exp, 10)+`}`, "c2lnbmF0dXJl")
	signingInput := tok[:strings.LastIndexByte(tok, '.')]
	key := sumHex(signingInput)

	r := mustRun(t, url, tok+"\n", 0, "revoke", "-", "--json", "--hint", "access_token", "--client", "portal")
	var pub published
	if err := json.Unmarshal([]byte(r.stdout), &pub); err != nil {
		t.Fatalf("revoke output %q: %v", r.stdout, err)
	}
	if !pub.Published || pub.Kind != "jws" || pub.Key != key || pub.Exp != exp+60 || pub.Seq != 1 || pub.Subject != "tokens.revoked."+key {
		t.Fatalf("revoke printed %+v, want jws %s exp %d", pub, key, exp+60)
	}

	// The stored message: v2 body, Nats-TTL, no trace of the token or its signature.
	m := lastMsg(t, js, "REVOCATIONS", "tokens.revoked."+key)
	var body map[string]interface{}
	if err := json.Unmarshal(m.Data, &body); err != nil {
		t.Fatal(err)
	}
	if body["v"] != 2.0 || body["kind"] != "jws" || body["key"] != key || body["exp"] != float64(exp+60) ||
		body["origin"] != "cli" || body["client"] != "portal" || body["hint"] != "access_token" {
		t.Fatalf("stored body %s", m.Data)
	}
	ttl := m.Header.Get("Nats-TTL")
	secs, err := strconv.Atoi(strings.TrimSuffix(ttl, "s"))
	if err != nil || secs < 7100 || secs > 7261 {
		t.Fatalf("Nats-TTL %q, want about 2h+1m", ttl)
	}
	if strings.Contains(string(m.Data), "c2lnbmF0dXJl") || strings.Contains(string(m.Data), signingInput) {
		t.Fatalf("the token appears in the message: %s", m.Data)
	}
	info := streamInfo(t, js, "REVOCATIONS")
	if !info.Config.AllowMsgTTL || info.Config.MaxMsgsPerSubject != 1 || streamProblem(info.Config, "tokens.revoked") != "" {
		t.Fatalf("created stream config %+v", info.Config)
	}

	for _, presented := range []string{tok, signingInput + ".c2lnbmF0dXJl=="} {
		r = mustRun(t, url, presented, 0, "check", "-", "--json")
		var c checkResult
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
			t.Fatal(err)
		}
		if !c.Revoked || c.Kind != "jws" || c.Key != key || c.Exp != exp+60 || c.Origin != "cli" || c.Client != "portal" || c.RevokedAt == "" || c.Seq != 1 {
			t.Fatalf("check printed %+v", c)
		}
	}
	// Human output names kind, key, exp, origin and revokedAt.
	r = mustRun(t, url, "", 0, "check", tok)
	for _, want := range []string{"revoked", "jws", key, "exp", "origin", "revokedAt"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("check output lacks %q:\n%s", want, r.stdout)
		}
	}

	// An opaque token given as an argument is kind token; --sha256 finds it too.
	mustRun(t, url, "", 0, "revoke", "opaque-1", "--ttl", "1h")
	mustRun(t, url, "", 0, "check", "opaque-1")
	mustRun(t, url, "", 0, "check", "--sha256", sumHex("opaque-1"))
	// An opaque token may start with "-": after "--" it is the token, not a flag.
	mustRun(t, url, "", 0, "revoke", "--ttl", "1h", "--", "-Opaque2")
	mustRun(t, url, "", 0, "check", "--sha256", sumHex("-Opaque2"))
	mustRun(t, url, "", 3, "check", "--sha256", sumHex("opaque-1"), "--kind", "sid")
	// A digest known in advance, with an RFC 3339 exp.
	d := sumHex("known-in-advance")
	r = mustRun(t, url, "", 0, "revoke", "--sha256", d, "--exp", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--json")
	if !strings.Contains(r.stdout, `"kind":"token"`) {
		t.Fatalf("revoke --sha256: %s", r.stdout)
	}
	mustRun(t, url, "", 0, "check", "--sha256", d)
}

// check of a token nobody revoked exits 3; so does one whose entry has expired.
func TestCheckUnknownExits3(t *testing.T) {
	url := startNATS(t)
	mustRun(t, url, "", 0, "revoke", "something-else")
	r := mustRun(t, url, "", 3, "check", "never-revoked", "--json")
	var c checkResult
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatal(err)
	}
	if c.Revoked || c.Key != sumHex("never-revoked") || c.Kind != "token" {
		t.Fatalf("check printed %+v", c)
	}
	mustRun(t, url, "", 3, "check", makeJWT(`{"exp":1}`, "x"))

	// An entry whose exp passed (published by someone else with a longer TTL).
	nc, js := client(t, url)
	_ = nc
	h := sumHex("stale")
	ctx := context.Background()
	if _, err := js.Publish(ctx, "tokens.revoked."+h, []byte(`{"v":1,"sha256":"`+h+`","exp":1000,"origin":"old"}`)); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, url, "", 3, "check", "stale")
	if !strings.Contains(r.stdout, "expired") {
		t.Fatalf("check of an expired entry: %s", r.stdout)
	}
	// A missing stream is an error, not "not revoked".
	mustRun(t, url, "", 1, "check", "x", "--stream", "NOSUCH")
}

// An already expired JWT is not published.
func TestRevokeExpiredJWT(t *testing.T) {
	url := startNATS(t)
	r := mustRun(t, url, "", 0, "revoke", makeJWT(`{"exp":1000}`, "s"), "--json")
	if !strings.Contains(r.stdout, `"published":false`) {
		t.Fatalf("expired JWT: %s", r.stdout)
	}
	_, js := client(t, url)
	if _, err := js.Stream(context.Background(), "REVOCATIONS"); err == nil {
		t.Fatal("the stream was created for nothing")
	}
}

// revoke-session and revoke-subject publish the documented v2 rule: subject
// <subject>.<kind>.<sha256(iss NUL value)>, body with cutoff and exp = cutoff + max token
// lifetime, and no trace of the raw value anywhere in the message.
func TestRevokeSessionAndSubjectWire(t *testing.T) {
	url := startNATS(t)
	_, js := client(t, url)
	const iss = "https://idp.example.com"
	cutoff := time.Now().Add(-time.Minute).Unix()
	for _, c := range []struct{ cmd, kind, value string }{
		{"revoke-session", "sid", "SECRET-SESSION-7f3a9"},
		{"revoke-subject", "sub", "user-4711@example.com"},
	} {
		args := []string{c.cmd, "--issuer", iss, "--" + c.kind, c.value, "--cutoff", strconv.FormatInt(cutoff, 10),
			"--max-token-lifetime", "2h", "--origin", "idp", "--json"}
		r := mustRun(t, url, "", 0, args...)
		key := sumHex(iss + "\x00" + c.value)
		subject := "tokens.revoked." + c.kind + "." + key
		var pub published
		if err := json.Unmarshal([]byte(r.stdout), &pub); err != nil || pub.Subject != subject || pub.Key != key {
			t.Fatalf("%s printed %s (%v), want subject %s", c.cmd, r.stdout, err, subject)
		}
		m := lastMsg(t, js, "REVOCATIONS", subject)
		var body map[string]interface{}
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatal(err)
		}
		want := map[string]interface{}{"v": 2.0, "kind": c.kind, "key": key, "cutoff": float64(cutoff),
			"exp": float64(cutoff + 7200), "origin": "idp"}
		for f, v := range want {
			if body[f] != v {
				t.Fatalf("%s body %s: %s = %v, want %v", c.cmd, m.Data, f, body[f], v)
			}
		}
		for f := range body {
			if _, ok := want[f]; !ok && f != "revokedAt" {
				t.Fatalf("%s body has unexpected field %s: %s", c.cmd, f, m.Data)
			}
		}
		all := m.Subject + string(m.Data)
		for k, vs := range m.Header {
			all += k + strings.Join(vs, ",")
		}
		if strings.Contains(all, c.value) || strings.Contains(strings.ToLower(all), strings.ToLower(c.value)) {
			t.Fatalf("the raw %s travels: %s", c.kind, all)
		}
		if m.Header.Get("Nats-TTL") == "" {
			t.Fatal("no Nats-TTL")
		}
		// check finds the rule by issuer and value.
		mustRun(t, url, "", 0, "check", "--issuer", iss, "--"+c.kind, c.value)
	}
	// The value can come from stdin.
	mustRun(t, url, "piped-sid\n", 0, "revoke-session", "--issuer", iss, "--sid", "-")
	mustRun(t, url, "", 0, "check", "--issuer", iss, "--sid", "piped-sid")
}

// Usage errors exit 2; the exit codes are in --help.
func TestUsageAndHelp(t *testing.T) {
	url := "nats://127.0.0.1:1" // never reached
	for _, args := range [][]string{
		{"nosuch"},
		{"revoke"},
		{"revoke", "a", "b"},
		{"revoke", "--sha256", "abc"},
		{"revoke", "tok", "--exp", "5"},
		{"check", "x", "--stream", ""},
		{"revoke-session", "--sid", "x"},
		{"import"},
		{"watch", "--stream", "", "--all"},
		{"revoke", "tok", "--bogus"},
	} {
		if r := run(t, context.Background(), url, "", args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want 2; stderr %s", args, r.code, r.stderr)
		}
	}
	r := mustRun(t, url, "", 0, "--help")
	for _, want := range []string{"Exit codes", "3    check: not revoked", "revoke-session", "snapshot", "purge"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("--help lacks %q", want)
		}
	}
	// Not reachable: exit 1.
	if r := run(t, context.Background(), url, "", "--timeout", "300ms", "revoke", "tok"); r.code != ExitError {
		t.Fatalf("unreachable server: exit %d, %s", r.code, r.stderr)
	}
}

// A nats CLI context supplies the server URL.
func TestNATSContext(t *testing.T) {
	url := startNATS(t)
	cfg := t.TempDir()
	dir := filepath.Join(cfg, "nats", "context")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), []byte(`{"description":"x","url":"`+url+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	env := Env{Stdout: &out, Stderr: &out, Getenv: func(k string) string {
		if k == "XDG_CONFIG_HOME" {
			return cfg
		}
		return ""
	}}
	if code := Run(context.Background(), []string{"--context", "lab", "revoke", "ctx-token"}, env); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	// The selected context (context.txt) is used without --context.
	if err := os.WriteFile(filepath.Join(cfg, "nats", "context.txt"), []byte("lab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := Run(context.Background(), []string{"check", "ctx-token"}, env); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if code := Run(context.Background(), []string{"--context", "nosuch", "check", "ctx-token"}, env); code != ExitUsage {
		t.Fatalf("unknown context: exit %d", code)
	}
}
