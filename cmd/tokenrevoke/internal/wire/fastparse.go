package wire

import "strings"

// fastParse reads the flat JSON objects the wire format consists of without reflection
// (snapshot decodes a million of them). It only accepts what it can read exactly as
// encoding/json would into wireIn: ASCII strings without escapes, integers, and keys
// that are either one of wireIn's names spelled exactly or match none of them (json
// matches names case-insensitively), each at most once. Anything else returns false and
// the caller uses encoding/json, so the outcome is the same either way.
func fastParse(b []byte, w *wireIn) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	var seen uint16
	for {
		// Key.
		if i >= len(b) || b[i] != '"' {
			return false
		}
		key, next, ok := readString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		// Value: a string or an integer.
		var str string
		var num int64
		isStr := false
		switch c := b[i]; {
		case c == '"':
			s, next, ok := readString(b, i)
			if !ok {
				return false
			}
			str, isStr, i = s, true, next
		case c == '-' || (c >= '0' && c <= '9'):
			n, next, ok := readInt(b, i)
			if !ok {
				return false
			}
			num, i = n, next
		default:
			return false // objects, arrays, literals: leave them to encoding/json
		}
		field := fieldIndex(key)
		if field < 0 {
			if field == -2 {
				return false // a case variant of a known name
			}
		} else {
			if seen&(1<<field) != 0 || isStr != (field != fV && field != fCutoff && field != fExp) {
				return false
			}
			seen |= 1 << field
			switch field {
			case fV:
				if num != int64(int(num)) {
					return false
				}
				w.V = int(num)
			case fKind:
				w.Kind = str
			case fKey:
				w.Key = str
			case fSha256:
				w.Sha256 = str
			case fCutoff:
				w.Cutoff = num
			case fExp:
				w.Exp = num
			case fHint:
				w.Hint = str
			case fRevokedAt:
				w.RevokedAt = str
			case fOrigin:
				w.Origin = str
			case fClient:
				w.Client = str
			}
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipWS(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = skipWS(b, i+1)
	}
}

const (
	fV = iota
	fKind
	fKey
	fSha256
	fCutoff
	fExp
	fHint
	fRevokedAt
	fOrigin
	fClient
)

var fieldNames = [...]string{"v", "kind", "key", "sha256", "cutoff", "exp", "hint", "revokedAt", "origin", "client"}

// fieldIndex is the wireIn field named exactly key, -1 for no field, -2 for a name
// that encoding/json would match case-insensitively.
func fieldIndex(key string) int {
	for i, n := range fieldNames {
		if key == n {
			return i
		}
	}
	for _, n := range fieldNames {
		if strings.EqualFold(key, n) {
			return -2
		}
	}
	// encoding/json also folds the Kelvin sign and long s; both are non-ASCII, which
	// readString refuses.
	return -1
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// readString reads a string starting at the quote b[i]: printable ASCII without escapes.
func readString(b []byte, i int) (string, int, bool) {
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			return string(b[i+1 : j]), j + 1, true
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return "", 0, false
		}
	}
	return "", 0, false
}

// readInt reads a JSON integer (no fraction or exponent) that fits in an int64.
func readInt(b []byte, i int) (int64, int, bool) {
	neg := false
	if b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var n uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if n > (1<<63)/10 {
			return 0, 0, false
		}
		n = n*10 + uint64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || (digits > 1 && b[start] == '0') || n > 1<<63 || (!neg && n == 1<<63) {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	if neg {
		return -int64(n), i, true
	}
	return int64(n), i, true
}
