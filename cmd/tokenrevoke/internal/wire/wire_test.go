package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func jwt(payload string) string {
	return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestTokenKeyKinds(t *testing.T) {
	j := jwt(`{"exp":1767225600}`)
	cases := []struct {
		tok, kind, keyOf string
	}{
		{j, KindJWS, j[:strings.LastIndexByte(j, '.')]},
		{"opaque-token", KindToken, "opaque-token"},
		{"abc.def.ghi", KindToken, "abc.def.ghi"},                                                         // not starting with e
		{"ewogImEiOiAxfQ.e30.c2ln", KindJWS, "ewogImEiOiAxfQ.e30"},                                        // header "{\n ..." starts with ew
		{"eyJhbGciOiJkaXIifQ..AAAA.Y2lwaGVy.dGFnIB", KindJWE, "eyJhbGciOiJkaXIifQ..AAAA.Y2lwaGVy.dGFnIA"}, // JWE: canonical spelling
		{"eyJa.b.c.d.e", KindToken, "eyJa.b.c.d.e"},                                                       // a JWE: five segments
		{"eyJhbGciOiJIUzI1NiJ9.e30", KindToken, "eyJhbGciOiJIUzI1NiJ9.e30"},                               // one dot
		{"eyJ.x.", KindJWS, "eyJ.x"},                                                                      // empty signature
	}
	for _, c := range cases {
		kind, key := TokenKey(c.tok)
		if kind != c.kind || key.Hex() != hexSum(c.keyOf) {
			t.Errorf("TokenKey(%q) = %s %s, want %s sha256(%q)", c.tok, kind, key.Hex(), c.kind, c.keyOf)
		}
	}
	// Two spellings of one signature are one key.
	_, k1 := TokenKey(j)
	_, k2 := TokenKey(j[:strings.LastIndexByte(j, '.')] + ".c2ln==")
	if k1 != k2 {
		t.Fatal("the signature changed a jws key")
	}
}

func TestRuleKey(t *testing.T) {
	if got := RuleKey("https://idp", "s1").Hex(); got != hexSum("https://idp\x00s1") {
		t.Fatalf("RuleKey = %s", got)
	}
	if RuleKey("a", "bc") == RuleKey("ab", "c") {
		t.Fatal("issuer and value are not separated")
	}
}

func TestTokenExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	if got := TokenExpiry(jwt(`{"exp":1767225600}`), now, time.Minute, time.Hour); got != 1767225660 {
		t.Fatalf("jwt exp = %d", got)
	}
	if got := TokenExpiry(jwt(`{"exp":1767225600.2}`), now, 0, time.Hour); got != 1767225601 {
		t.Fatalf("fractional exp = %d", got)
	}
	if got := TokenExpiry("opaque", now, time.Minute, time.Hour); got != now.Unix()+3600 {
		t.Fatalf("opaque = %d", got)
	}
	if got := TokenExpiry(jwt(`{"sub":"x"}`), now, time.Minute, time.Hour); got != now.Unix()+3600 {
		t.Fatalf("no exp = %d", got)
	}
}

func TestEncodeDecode(t *testing.T) {
	k := RuleKey("iss", "sid-1")
	e := Entry{Kind: KindSID, Key: k.Hex(), Cutoff: 100, Exp: 200, Origin: `o"x`, Client: "portal", RevokedAt: "2026-12-02T05:00:00Z"}
	body := e.Encode()
	var m map[string]interface{}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	want := map[string]interface{}{"v": 2.0, "kind": "sid", "key": k.Hex(), "cutoff": 100.0, "exp": 200.0,
		"origin": `o"x`, "client": "portal", "revokedAt": "2026-12-02T05:00:00Z"}
	if len(m) != len(want) {
		t.Fatalf("body %s, want fields %v", body, want)
	}
	for f, v := range want {
		if m[f] != v {
			t.Fatalf("body %s: %s = %v, want %v", body, f, m[f], v)
		}
	}
	got, gk, err := Decode("tokens.revoked", "tokens.revoked.sid."+k.Hex(), body)
	if err != nil || gk != k || got.Cutoff != 100 || got.Exp != 200 || got.V != 2 {
		t.Fatalf("Decode = %+v %v", got, err)
	}
	// The subject must match kind and key.
	if _, _, err := Decode("tokens.revoked", "tokens.revoked."+k.Hex(), body); err == nil {
		t.Fatal("a sid body on a token subject was accepted")
	}
	tok := Entry{Kind: KindJWS, Key: k.Hex(), Exp: 5, Origin: ""}
	if b := string(tok.Encode()); strings.Contains(b, "cutoff") || !strings.Contains(b, `"origin":""`) {
		t.Fatalf("jws body %s", b)
	}
}

func TestDecodeV1AndRejects(t *testing.T) {
	h := hexSum("t")
	e, _, err := Decode("p", "p."+h, []byte(`{"v":1,"sha256":"`+strings.ToUpper(h)+`","exp":9,"origin":"gw"}`))
	if err != nil || e.Kind != KindToken || e.Key != h || e.V != 1 || e.Origin != "gw" {
		t.Fatalf("v1: %+v %v", e, err)
	}
	bad := [][2]string{
		{"p." + h, `{"v":3,"kind":"token","key":"` + h + `","exp":9}`},
		{"p." + h + "x", `{"v":2,"kind":"token","key":"` + h + `","exp":9}`},
		{"p.sid." + h, `{"v":2,"kind":"sid","key":"` + h + `","exp":9}`},
		{"p." + h, `{"v":2,"kind":"token","key":"` + h + `"}`},
		{"p.sub." + h[:2], `{"v":2,"kind":"sub","key":"` + h[:2] + `","cutoff":1,"exp":9}`},
		{"p.x." + h, `{"v":2,"kind":"x","key":"` + h + `","exp":9}`},
		{"p.y", `not json`},
	}
	for _, c := range bad {
		if _, _, err := Decode("p", c[0], []byte(c[1])); err == nil {
			t.Errorf("accepted %s %s", c[0], c[1])
		}
	}
}

func TestTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	if TTL(4600, now) != "3600s" || TTL(1000, now) != "1s" || TTL(1001, now.Add(-time.Millisecond)) != "2s" {
		t.Fatal(TTL(4600, now), TTL(1000, now), TTL(1001, now.Add(-time.Millisecond)))
	}
}
