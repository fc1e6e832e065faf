package wire

import (
	"encoding/json"
	"testing"
)

var fastParseSeeds = []string{
	`{"v":2,"kind":"jws","key":"ab","exp":1767225600,"hint":"access_token","revokedAt":"2026-12-02T05:00:00Z","origin":"gw-a","client":"portal"}`,
	`{"v":1,"sha256":"9f86","hint":"","exp":1767225600,"revokedAt":"x","origin":"gw-a"}`,
	` { "v" : 2 , "kind":"sid","key":"k","cutoff":-5,"exp":0 } `,
	`{}`,
	`{"V":2}`,
	`{"Exp":5,"exp":6}`,
	`{"exp":5,"exp":6}`,
	`{"exp":1.5}`,
	`{"exp":1e3}`,
	`{"exp":01}`,
	`{"exp":-}`,
	`{"exp":9223372036854775807}`,
	`{"exp":9223372036854775808}`,
	`{"exp":-9223372036854775808}`,
	`{"v":"2"}`,
	`{"kind":2}`,
	`{"origin":"a\"b"}`,
	`{"origin":"é"}`,
	`{"other":{"x":1},"v":2}`,
	`{"other":"x","v":2}`,
	`{"v":2}x`,
	`{"v":2,}`,
	`{"v" 2}`,
	`[1]`,
	`{"v":null}`,
	`{"revokedat":"x"}`,
	"{\"v\":2\t,\r\n\"exp\":3}",
}

// fastParse accepts only what encoding/json reads the same way.
func FuzzFastParse(f *testing.F) {
	for _, s := range fastParseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow wireIn
		if !fastParse(b, &fast) {
			return
		}
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fastParse accepted %q, encoding/json refuses it: %v", b, err)
		}
		if fast != slow {
			t.Fatalf("%q: fastParse %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

// The wire's own bodies take the fast path.
func TestFastParseTakesWireBodies(t *testing.T) {
	k := RuleKey("i", "s")
	for _, e := range []Entry{
		{Kind: KindSID, Key: k.Hex(), Cutoff: 1, Exp: 2, Origin: "idp", RevokedAt: "2026-12-02T05:00:00Z"},
		{Kind: KindJWS, Key: k.Hex(), Exp: 2, Origin: "", Hint: "refresh_token", Client: "c"},
	} {
		var w wireIn
		if !fastParse(e.Encode(), &w) || w.V != 2 || w.Key != e.Key || w.Exp != 2 {
			t.Fatalf("%s: fast path not taken or wrong: %+v", e.Encode(), w)
		}
	}
	var w wireIn
	if !fastParse([]byte(fastParseSeeds[1]), &w) || w.V != 1 || w.Sha256 != "9f86" {
		t.Fatal("v1 body not on the fast path")
	}
}
