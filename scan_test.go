package tokenrevoke

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand"
	"mime"
	"mime/multipart"
	"sort"
	"strings"
	"testing"
)

// The compiled scanners of scan.go must read exactly what the interpreted walks they
// replace read. Each test holds one to a plain reference written the obvious way.

// byteDecode is the reference lenient decoder: byte by byte.
func byteDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func randomFrom(r *rand.Rand, alphabet []string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(alphabet[r.Intn(len(alphabet))])
	}
	return b.String()
}

func TestUnescaperMatchesByteDecoder(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	alphabet := []string{"%", "+", "a", "F", "f", "0", "9", "g", "z", "%4", "%41", "%%", "%e2%80", ".", "&", "\x00"}
	for i := 0; i < 20000; i++ {
		s := randomFrom(r, alphabet, r.Intn(12))
		if got, want := lenientUnescape(s), byteDecode(s); got != want {
			t.Fatalf("lenientUnescape(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestAnySpaceCutset(t *testing.T) {
	for c := rune(0); c < 0x3100; c++ {
		s := "\t" + string(c) + "x" + string(c) + " "
		if got, want := trimAnySpace(s), strings.TrimFunc(s, isAnySpace); got != want {
			t.Fatalf("U+%04X: trimAnySpace %q, TrimFunc %q", c, got, want)
		}
	}
	for _, s := range []string{"\xa0tok\x85", "\xfftok\xfe", "\xef\xbf\xbdtok", "\xe2\x80tok", "tok\xe3\x80\x80"} {
		if got, want := trimAnySpace(s), strings.TrimFunc(s, isAnySpace); got != want {
			t.Fatalf("%q: trimAnySpace %q, TrimFunc %q", s, got, want)
		}
	}
}

func TestAuthWordsMatchesFieldsFunc(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	alphabet := []string{"a", "B", " ", "\t", "\x00", "\x1f", "\u00a0", "\xa0", "\x85", "\u0085", "\u3000", "\u2028", "\ufffd", "\xff", "\xe2\x80", "é", "x"}
	for i := 0; i < 20000; i++ {
		s := randomFrom(r, alphabet, r.Intn(10))
		got, want := authWords(s), strings.FieldsFunc(s, isAnySpace)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Fatalf("authWords(%q) = %q, FieldsFunc %q", s, got, want)
		}
	}
}

// walkParams is the reference parameter reader: every pair, one by one.
func walkParams(raw string, match func(string) bool) []string {
	var values []string
	for raw != "" {
		var key, value string
		key, value, raw = nextParam(raw)
		if match(lenientUnescape(key)) {
			values = append(values, lenientUnescape(value))
		}
	}
	return values
}

func TestNamedParamsFindsWhatAWalkFinds(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	keys := []string{"access_token", "ACCESS_TOKEN", "%61ccess_token", "access%5Ftoken", "access.token", "access+token",
		"access%20token", "[access_token]", "%5Baccess_token%5D", "access_token[]", "access_token[0]", "access[token",
		"%EF%BB%BFaccess_token", "+access_token", "access_tok", "xaccess_token", "access_tokenx", "a", "", "page",
		"access_to%6Ben", "acc\\ess_token", "access_token%00", "%00access_token", "refresh_token", "Refresh.Token"}
	values := []string{"", "v", "tok%41", "a+b", "%zz", "%", "T0k=", "%26", "%3B"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		n := 1 + r.Intn(5)
		for j := 0; j < n; j++ {
			if j > 0 {
				b.WriteString([]string{"&", ";", "&&"}[r.Intn(3)])
			}
			b.WriteString(keys[r.Intn(len(keys))])
			if r.Intn(5) > 0 {
				b.WriteString("=" + values[r.Intn(len(values))])
			}
		}
		raw := b.String()
		for _, c := range []struct {
			word  string
			match func(string) bool
		}{{"access", isTokenParam}, {"refresh", isRefreshParam}} {
			got, refused := namedParams(raw, c.word, c.match)
			if refused {
				t.Fatalf("%q refused", raw)
			}
			want := walkParams(raw, c.match)
			have := map[string]int{}
			for _, v := range got {
				have[v]++
			}
			for _, v := range want {
				if have[v] == 0 && v != "" {
					t.Fatalf("namedParams(%q, %s) = %q, misses %q (a walk finds %q)", raw, c.word, got, v, want)
				}
			}
			if len(want) == 0 && len(got) > 0 {
				t.Fatalf("namedParams(%q, %s) = %q, a walk finds nothing", raw, c.word, got)
			}
		}
	}
}

func TestIsNamedForms(t *testing.T) {
	for name, want := range map[string]bool{
		"access_token": true, "Access_Token": true, "access.token": true, "access token": true,
		" access_token ": true, "\ufeffaccess_token": true, "[access_token]": true, "[access_token][x]": true,
		"access_token[]": true, "access_token[0]": true, "access[token": true,
		"access[token]": false, "x[access_token]": false, "access_tokens": false, "[access_token": false,
		"access__token": false, "accesstoken": false,
	} {
		if got := isTokenParam(name); got != want {
			t.Errorf("isTokenParam(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCandidatesBound(t *testing.T) {
	located := strings.Repeat("access_token\x00", maxCandidates)
	if ks, ok := candidates(located, "access_token"); !ok || len(ks) != maxCandidates {
		t.Fatalf("%d candidates: %v %v", maxCandidates, len(ks), ok)
	}
	if _, ok := candidates(located+"access_token", "access_token"); ok {
		t.Fatal("more than maxCandidates places were accepted")
	}
	ks, _ := candidates("x\x00access_token access_token\x00y\x00access_token", "access_token")
	if len(ks) != 2 || ks[0] != 1 || ks[1] != 3 {
		t.Fatalf("indexes %v, want [1 3]", ks)
	}
}

// walkParts is the reference multipart reader: Go's reader over every part.
func walkParts(body, boundary string) ([]string, error) {
	var out []string
	r := multipart.NewReader(strings.NewReader(body), boundary)
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		_, disp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err == nil && isTokenParam(disp["name"]) {
			raw, _ := io.ReadAll(p)
			out = append(out, string(raw))
		}
	}
}

func TestMultipartCandidatesFindWhatAWalkFinds(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	names := []string{`name="access_token"`, `name="Access.Token"`, `name="acc\ess_token"`, `name*=UTF-8''%61ccess_token`,
		`name*0="acc"; name*1="ess_token"`, `name="x"`, `name="page"; filename="access_token.txt"`, `name=access_token`}
	for i := 0; i < 3000; i++ {
		var b bytes.Buffer
		n := 1 + r.Intn(6)
		for j := 0; j < n; j++ {
			b.WriteString("--B\r\nContent-Disposition: form-data; " + names[r.Intn(len(names))] + "\r\n\r\n")
			b.WriteString([]string{"T1", "x\x00y", "access_token", "", "--Bx"}[r.Intn(5)] + "\r\n")
		}
		b.WriteString("--B--\r\n")
		body := b.String()
		want, err := walkParts(body, "B")
		if err != nil {
			t.Fatalf("reference: %v on %q", err, body)
		}
		parts, refuse := strictParts(body, "B")
		if refuse != "" {
			if strings.Contains(body, "--Bx") {
				continue // a delimiter-like line inside a part: refused, rightly
			}
			t.Fatalf("refused %q: %s", body, refuse)
		}
		ks, ok := multipartCandidates(body, "B")
		if !ok {
			t.Fatalf("too many candidates in %q", body)
		}
		var got []string
		for _, k := range ks {
			if k == 0 || k >= len(parts) {
				continue
			}
			found, _ := walkParts("--B"+parts[k]+"\r\n--B--\r\n", "B")
			got = append(got, found...)
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("candidates find %q, a walk finds %q in %q", got, want, body)
		}
	}
}

func TestStrictParts(t *testing.T) {
	ok := "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n"
	for body, refused := range map[string]bool{
		ok:                             false,
		strings.TrimSuffix(ok, "\r\n"): false,
		ok + "\r\n \r\n":               false,
		"\r\n" + ok:                    true, // preamble
		"junk\r\n" + ok:                true,
		ok + "x":                       true, // epilogue
		ok + "--B\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\nT\r\n--B--\r\n": true,
		"--B \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n":                true, // padding
		"--B\nContent-Disposition: form-data; name=\"a\"\n\n1\n--B--\n":                           true, // bare LF
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1--B\r\n--B--\r\n":              true, // not at a line start
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--Bx\r\n--B--\r\n":         true,
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n":                          true, // no closing delimiter
	} {
		_, why := strictParts(body, "B")
		if (why != "") != refused {
			t.Errorf("%q: refusal %q, want refused %v", body, why, refused)
		}
	}
}

// TestJSONMembersFindWhatParsersRead holds jsonMembers to the readers it stands for:
// the last member named exactly access_token (a map, as Node and Python keep it) and
// the member Go's encoding/json puts into a struct field.
func TestJSONMembersFindWhatParsersRead(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	keys := []string{`"access_token"`, `"Access_Token"`, `"\u0061ccess_token"`, `"acce\u017fs_token"`, `"ACCESS_TOKEN"`,
		`"access\u005Ftoken"`, `"x"`, `"access_tokens"`, `"refresh_token"`, `"a"`}
	values := []string{`"v1"`, `"v2"`, `"\u0065yJ"`, `1`, `null`, `["l1","l2"]`, `{"access_token":"nested"}`, `"access_token"`}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		b.WriteString("{")
		n := 1 + r.Intn(5)
		for j := 0; j < n; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(keys[r.Intn(len(keys))] + ":" + values[r.Intn(len(values))])
		}
		b.WriteString("}")
		body := []byte(b.String())
		got, refuse := jsonMembers(body, "access_token")
		if refuse != "" {
			t.Fatalf("%s refused: %s", body, refuse)
		}
		have := map[string]bool{}
		for _, v := range got {
			have[v] = true
		}
		var want []string
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		var f struct {
			V json.RawMessage `json:"access_token"`
		}
		if err := json.Unmarshal(body, &f); err != nil {
			t.Fatal(err)
		}
		for _, raw := range []json.RawMessage{m["access_token"], f.V} {
			var s string
			var list []string
			if json.Unmarshal(raw, &s) == nil {
				want = append(want, s)
			} else if json.Unmarshal(raw, &list) == nil {
				want = append(want, list...)
			}
		}
		for _, w := range want {
			if !have[w] {
				t.Fatalf("jsonMembers(%s) = %q, misses %q", body, got, w)
			}
		}
	}
}
