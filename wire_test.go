package tokenrevoke

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func TestWireRoundTrip(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", name: "gw-a"}
	key, kind := tokenKey("eyJh.eyJw.sig")
	r := revocation{sum: key, kind: kind, hint: "access_token", exp: 1900000000, revokedAt: time.Unix(1800000000, 0), client: "portal"}
	body, subject := encodeRevocation(r, n)
	hexKey := sha256Hex("eyJh.eyJw")
	want := `{"v":2,"kind":"jws","key":"` + hexKey + `","exp":1900000000,"hint":"access_token","revokedAt":"2027-01-15T08:00:00Z","origin":"gw-a","client":"portal"}`
	if string(body) != want {
		t.Fatalf("body = %s\nwant   %s", body, want)
	}
	if subject != "tokens.revoked."+hexKey {
		t.Fatalf("subject = %s", subject)
	}
	if strings.Contains(string(body), "eyJh") {
		t.Fatal("the raw token is in the message")
	}
	sum, exp, v1, rule, _, reason := decodeRevocation(subject, body, "tokens.revoked")
	if reason != "" || sum != r.sum || exp != r.exp || v1 || rule != 0 {
		t.Fatalf("decode: %x %d %v %q", sum, exp, v1, reason)
	}
}

func TestWireVersion1StillAccepted(t *testing.T) {
	h := sha256Hex("tok")
	body := `{"v":1,"sha256":"` + h + `","hint":"access_token","exp":1900000000,"revokedAt":"2027-01-15T08:00:00Z","origin":"idp"}`
	sum, exp, v1, _, _, reason := decodeRevocation("tokens.revoked."+h, []byte(body), "tokens.revoked")
	if reason != "" || sum != hashToken("tok") || exp != 1900000000 || !v1 {
		t.Fatalf("decode: %x %d %v %q", sum, exp, v1, reason)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	h := sha256Hex("x")
	subj := "tokens.revoked." + h
	cases := []struct {
		name, subject, body string
	}{
		{"not json", subj, `not json`},
		{"empty", subj, ``},
		{"array", subj, `[1,2]`},
		{"version 2 without kind", subj, `{"v":2,"key":"` + h + `","exp":1900000000}`},
		{"version 2 with sha256 only", subj, `{"v":2,"kind":"token","sha256":"` + h + `","exp":1900000000}`},
		{"version 3", subj, `{"v":3,"kind":"token","key":"` + h + `","exp":1900000000}`},
		{"unknown kind", subj, `{"v":2,"kind":"cookie","key":"` + h + `","exp":1900000000}`},
		{"session rule on a token subject", subj, `{"v":2,"kind":"sid","key":"` + h + `","cutoff":1800000000,"exp":1900000000}`},
		{"session rule on the subject rules' subject", "tokens.revoked.sub." + h, `{"v":2,"kind":"sid","key":"` + h + `","cutoff":1800000000,"exp":1900000000}`},
		{"token on a session subject", "tokens.revoked.sid." + h, `{"v":2,"kind":"token","key":"` + h + `","exp":1900000000}`},
		{"session rule without cutoff", "tokens.revoked.sid." + h, `{"v":2,"kind":"sid","key":"` + h + `","exp":1900000000}`},
		{"session rule with cutoff after exp", "tokens.revoked.sid." + h, `{"v":2,"kind":"sid","key":"` + h + `","cutoff":1900000001,"exp":1900000000}`},
		{"subject rule with another key", "tokens.revoked.sub." + sha256Hex("y"), `{"v":2,"kind":"sub","key":"` + h + `","cutoff":1800000000,"exp":1900000000}`},
		{"subject rule with a negative cutoff", "tokens.revoked.sub." + h, `{"v":2,"kind":"sub","key":"` + h + `","cutoff":-5,"exp":1900000000}`},
		{"no version", subj, `{"sha256":"` + h + `","exp":1900000000}`},
		{"short sha", "tokens.revoked.abc", `{"v":1,"sha256":"abc","exp":1900000000}`},
		{"non-hex sha", "tokens.revoked." + strings.Repeat("z", 64), `{"v":1,"sha256":"` + strings.Repeat("z", 64) + `","exp":1900000000}`},
		{"subject mismatch", "tokens.revoked." + sha256Hex("y"), `{"v":1,"sha256":"` + h + `","exp":1900000000}`},
		{"no exp", subj, `{"v":1,"sha256":"` + h + `"}`},
		{"negative exp", subj, `{"v":1,"sha256":"` + h + `","exp":-1}`},
		{"exp wrong type", subj, `{"v":1,"sha256":"` + h + `","exp":"soon"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, _, _, reason := decodeRevocation(tc.subject, []byte(tc.body), "tokens.revoked"); reason == "" {
				t.Fatal("accepted")
			}
		})
	}
	// Upper-case hex is the same digest.
	up := strings.ToUpper(h)
	if _, _, _, _, _, reason := decodeRevocation("tokens.revoked."+up, []byte(`{"v":1,"sha256":"`+up+`","exp":1900000000}`), "tokens.revoked"); reason != "" {
		t.Fatalf("upper-case hex refused: %s", reason)
	}
}

func TestWireRules(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", name: "gw-a"}
	for _, kind := range []string{kindSID, kindSub} {
		key := ruleKey("https://idp.example", "secret-session-value")
		r := revocation{sum: key, kind: kind, cutoff: 1800000000, exp: 1800086400, revokedAt: time.Unix(1800000000, 0)}
		body, subject := encodeRevocation(r, n)
		hexKey := hex.EncodeToString(key[:])
		if subject != "tokens.revoked."+kind+"."+hexKey {
			t.Fatalf("%s: subject = %s", kind, subject)
		}
		if strings.Contains(string(body), "secret-session-value") || strings.Contains(string(body), "idp.example") {
			t.Fatalf("%s: a claim value is in the message: %s", kind, body)
		}
		want := `{"v":2,"kind":"` + kind + `","key":"` + hexKey + `","cutoff":1800000000,"exp":1800086400,"revokedAt":"2027-01-15T08:00:00Z","origin":"gw-a"}`
		if string(body) != want {
			t.Fatalf("body = %s\nwant   %s", body, want)
		}
		sum, exp, v1, rule, cutoff, reason := decodeRevocation(subject, body, "tokens.revoked")
		wantRule := ruleSID
		if kind == kindSub {
			wantRule = ruleSub
		}
		if reason != "" || sum != key || exp != 1800086400 || cutoff != 1800000000 || rule != wantRule || v1 {
			t.Fatalf("%s: decode: %x %d %d %d %q", kind, sum, exp, cutoff, rule, reason)
		}
	}
}

// Decoding a token message right after a rule message (and after a version-1 message)
// reports no rule and no version 1: under yaegi v0.16.1 named results a call leaves
// unset can keep an earlier call's values.
func TestDecodeKeepsNoStateBetweenMessages(t *testing.T) {
	rk := ruleKey("https://idp", "s")
	rh := hex.EncodeToString(rk[:])
	th := sha256Hex("tok")
	msgs := []struct {
		subject, body string
		rule          uint8
		v1            bool
	}{
		{"tokens.revoked.sid." + rh, `{"v":2,"kind":"sid","key":"` + rh + `","cutoff":1800000000,"exp":1900000000}`, ruleSID, false},
		{"tokens.revoked." + th, `{"v":2,"kind":"token","key":"` + th + `","exp":1900000000}`, 0, false},
		{"tokens.revoked." + th, `{"v":1,"sha256":"` + th + `","exp":1900000000}`, 0, true},
		{"tokens.revoked." + th, `{"v":2,"kind":"token","key":"` + th + `","exp":1900000000}`, 0, false},
		{"tokens.revoked.sub." + rh, `{"v":2,"kind":"sub","key":"` + rh + `","cutoff":1800000000,"exp":1900000000}`, ruleSub, false},
		{"tokens.revoked." + th, `{"v":2,"kind":"jws","key":"` + th + `","exp":1900000000}`, 0, false},
	}
	for i, m := range msgs {
		_, _, v1, rule, cutoff, reason := decodeRevocation(m.subject, []byte(m.body), "tokens.revoked")
		if reason != "" || rule != m.rule || v1 != m.v1 || (rule == 0) != (cutoff == 0) {
			t.Fatalf("message %d: rule %d cutoff %d v1 %v reason %q", i, rule, cutoff, v1, reason)
		}
	}
}
