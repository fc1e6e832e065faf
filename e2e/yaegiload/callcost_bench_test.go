package yaegiload

import "testing"

// What one standard-library call costs when interpreted code makes it (yaegi calls
// them through reflection), measured in an interpreter set up as Traefik's: the floor
// under any claim reading on the request path. Each case runs one call per iteration of
// an interpreted loop; the empty loop is reported too.
const callCostProgram = `package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
)

type claims struct {
	Iss string  ` + "`json:\"iss\"`" + `
	Sid string  ` + "`json:\"sid\"`" + `
	Sub string  ` + "`json:\"sub\"`" + `
	Iat float64 ` + "`json:\"iat\"`" + `
}

var payload = ` + "`" + `{"jti":"s-jti","sub":"user-0123456789","iat":1800000000,"exp":1900000000,"scope":"openid profile orders","client_id":"portal","iss":"https://idp.example.com/realms/main","aud":"https://api.example.com","sid":"session-00000001"}` + "`" + `
var raw = []byte(payload)
var seg = base64.RawURLEncoding.EncodeToString(raw)

func Empty(n int) {
	for i := 0; i < n; i++ {
	}
}

func IndexByte(n int) {
	for i := 0; i < n; i++ {
		strings.IndexByte(seg, '.')
	}
}

func Base64Decode(n int) {
	for i := 0; i < n; i++ {
		base64.RawURLEncoding.DecodeString(seg)
	}
}

func Unmarshal(n int) {
	for i := 0; i < n; i++ {
		var c claims
		json.Unmarshal(raw, &c)
	}
}

func Sum256(n int) {
	for i := 0; i < n; i++ {
		sha256.Sum256(raw)
	}
}
`

func BenchmarkYaegiStdlibCall(b *testing.B) {
	for _, name := range []string{"Empty", "IndexByte", "Base64Decode", "Unmarshal", "Sum256"} {
		run := evalProgram(b, callCostProgram, "main."+name).Interface().(func(int))
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			run(b.N)
		})
	}
}
