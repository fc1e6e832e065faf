package tokenrevoke

import (
	"strings"
	"testing"
	"time"
)

func TestWireRoundTrip(t *testing.T) {
	n := &natsSettings{subject: "tokens.revoked", name: "gw-a"}
	r := revocation{sum: hashToken("tok"), hint: "access_token", exp: 1900000000, revokedAt: time.Unix(1800000000, 0)}
	body, subject := encodeRevocation(r, n)
	want := `{"v":1,"sha256":"` + sha256Hex("tok") + `","hint":"access_token","exp":1900000000,"revokedAt":"2027-01-15T08:00:00Z","origin":"gw-a"}`
	if string(body) != want {
		t.Fatalf("body = %s\nwant   %s", body, want)
	}
	if subject != "tokens.revoked."+sha256Hex("tok") {
		t.Fatalf("subject = %s", subject)
	}
	if strings.Contains(string(body), `"tok"`) {
		t.Fatal("the raw token is in the message")
	}
	sum, exp, reason := decodeRevocation(subject, body, "tokens.revoked")
	if reason != "" || sum != r.sum || exp != r.exp {
		t.Fatalf("decode: %x %d %q", sum, exp, reason)
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
		{"version 2", subj, `{"v":2,"sha256":"` + h + `","exp":1900000000}`},
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
			if _, _, reason := decodeRevocation(tc.subject, []byte(tc.body), "tokens.revoked"); reason == "" {
				t.Fatal("accepted")
			}
		})
	}
	// Upper-case hex is the same digest.
	up := strings.ToUpper(h)
	if _, _, reason := decodeRevocation("tokens.revoked."+up, []byte(`{"v":1,"sha256":"`+up+`","exp":1900000000}`), "tokens.revoked"); reason != "" {
		t.Fatalf("upper-case hex refused: %s", reason)
	}
}
