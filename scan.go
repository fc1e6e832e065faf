package tokenrevoke

import (
	"strings"
)

// Scanning without interpreted loops.
//
// Whoever sends a request controls how long any loop over its characters, parameters,
// cookies or parts runs, and under yaegi every interpreted iteration costs about 100
// times its compiled price: a query of a million '+' took 1.85 s through Traefik when
// the escapes were decoded by an interpreted loop. So the request path does that work
// with single stdlib calls, which run compiled:
//
//   - lenient percent-decoding ('+' is a space, %XX a byte, a malformed escape left as
//     it is) is one strings.Replacer (unescaper) holding every %XX escape;
//   - trimming and splitting at every character isAnySpace names is one Trim with a
//     cutset (anySpaceCutset) or one Replacer before strings.Fields (authWords);
//   - finding the parameters that may name access_token (or a cookie of a configured
//     name, or a multipart part) does not walk the parameters: a locator Replacer
//     decodes, folds and separates the whole input at once, strings.Count and Index
//     find the few places where the name can be, and only those are read exactly
//     (candidates). At most maxCandidates such places are read; a request with more
//     is refused.
//
// Only the candidates, each bounded in size, meet interpreted code.

// hexDigits are the characters of a %XX escape.
const hexDigits = "0123456789abcdefABCDEF"

// escapePairs returns the old/new pairs of every %XX escape for strings.NewReplacer,
// each decoded by decode (which may spell a byte otherwise).
func escapePairs(decode func(b byte) string) []string {
	pairs := make([]string, 0, 2*len(hexDigits)*len(hexDigits))
	for i := 0; i < len(hexDigits); i++ {
		for j := 0; j < len(hexDigits); j++ {
			b := unhex(hexDigits[i])<<4 | unhex(hexDigits[j])
			pairs = append(pairs, "%"+hexDigits[i:i+1]+hexDigits[j:j+1], decode(b))
		}
	}
	return pairs
}

func plainByte(b byte) string { return string([]byte{b}) }

// plusAsSpace and percentDecoder decode a query or form component leniently, as Node's
// querystring and Python's unquote_plus do, in two compiled passes: a byte table for
// '+' (a Replacer of single bytes), then a Replacer holding every %XX escape, whose cost
// grows with the number of '%' only (a Replacer of longer strings is much slower for
// every byte that starts a match, and '+' would be every byte of "+++…"). A Replacer
// scans left to right and never overlaps matches, so "%%41" is "%A" and "%zz" stays,
// exactly as a byte-by-byte decoder reads them.
var (
	plusAsSpace    = strings.NewReplacer("+", " ")
	percentDecoder = strings.NewReplacer(escapePairs(plainByte)...)
)

// lenientUnescape decodes a query or form component: '+' is a space, %XX is a byte, and
// a malformed escape is kept as it is.
func lenientUnescape(s string) string {
	if strings.IndexByte(s, '+') >= 0 {
		s = plusAsSpace.Replace(s)
	}
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	return percentDecoder.Replace(s)
}

// asciiLower lower-cases ASCII letters with a byte table. strings.ToLower maps
// non-ASCII text rune by rune (slowly, for a string of a million 'é'); the only
// characters it lowers to an ASCII letter are KELVIN SIGN (to 'k') and U+0130 (to "i̇",
// which no name looked for holds), so lowerForSearch adds the first.
var asciiLower = strings.NewReplacer("A", "a", "B", "b", "C", "c", "D", "d", "E", "e", "F", "f", "G", "g",
	"H", "h", "I", "i", "J", "j", "K", "k", "L", "l", "M", "m", "N", "n", "O", "o", "P", "p", "Q", "q",
	"R", "r", "S", "s", "T", "t", "U", "u", "V", "v", "W", "w", "X", "x", "Y", "y", "Z", "z")

// lowerForSearch lower-cases s as strings.ToLower would for finding an ASCII name in it.
func lowerForSearch(s string) string {
	s = asciiLower.Replace(s)
	if strings.Contains(s, "\u212a") {
		s = strings.ReplaceAll(s, "\u212a", "k")
	}
	return s
}

// anySpaceCutset holds every character isAnySpace accepts. strings.Trim with it trims
// what strings.TrimFunc(s, isAnySpace) trims: an invalid UTF-8 byte decodes as U+FFFD,
// which the cutset holds, just as isAnySpace accepts it (TestAnySpaceCutset).
const anySpaceCutset = controlBytes + " \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufffd"

// asciiSpaceCutset is the ASCII part of anySpaceCutset: Trim with it takes a byte table.
const asciiSpaceCutset = controlBytes + " "

// trimAnySpace is strings.TrimFunc(s, isAnySpace) without a callback per character:
// ASCII first (a byte table), then whatever non-ASCII space remains at either end.
func trimAnySpace(s string) string {
	return strings.Trim(strings.Trim(s, asciiSpaceCutset), anySpaceCutset)
}

// Locators: two compiled passes that fold what a backend's name matching folds ('.',
// ' ', '+' and '[' read as '_', as PHP reads them in names; a backslash dropped, as a
// quoted-string escape is), turn the separators into NUL (a NUL in the input, raw or
// escaped, becomes 0x01, so a NUL is only ever a separator), and decode every %XX
// escape (the decoded '.', ' ' and '[' folded too, '\' dropped). The first pass maps
// single bytes (a byte table); the second, only for input holding '%', decodes the
// escapes. After lowerForSearch, every parameter whose name a backend may read as
// access_token holds "access_token" in its stretch of the located string, and the
// number of NULs before that stretch is its index among the input's pieces.
type locator struct {
	bytes   *strings.Replacer
	escapes *strings.Replacer
}

func locatorFor(seps string, nulIsSeparator bool) locator {
	pairs := []string{"+", "_", ".", "_", " ", "_", "[", "_", "\\", ""}
	if !nulIsSeparator {
		pairs = append(pairs, "\x00", "\x01")
	}
	for i := 0; i < len(seps); i++ {
		pairs = append(pairs, seps[i:i+1], "\x00")
	}
	return locator{
		bytes: strings.NewReplacer(pairs...),
		escapes: strings.NewReplacer(escapePairs(func(b byte) string {
			switch b {
			case 0:
				return "\x01"
			case '.', ' ', '[':
				return "_"
			case '\\':
				return ""
			}
			return plainByte(b)
		})...),
	}
}

// locate returns raw as the locator spells it, lower-cased for the search.
func (l locator) locate(raw string) string {
	s := l.bytes.Replace(raw)
	if strings.IndexByte(s, '%') >= 0 {
		s = l.escapes.Replace(s)
	}
	return lowerForSearch(s)
}

var (
	// paramLocator separates query strings and form bodies at '&' and ';'.
	paramLocator = locatorFor("&;", false)
	// cookieLocator separates Cookie header values at ';' and ','.
	cookieLocator = locatorFor(";,", false)
	// partLocator keeps NULs: a multipart body arrives with its raw NULs made 0x01 and
	// its delimiters made NULs (see multipartCandidates).
	partLocator = locatorFor("", true)
)

// maxCandidates bounds the places of one request read exactly: more parameters,
// cookies or parts that may carry a token name are refused, not read.
const maxCandidates = 16

// candidates returns the indexes (ascending, without repeats) of the NUL-separated
// pieces of located that hold one of the words, and false when there are more than
// maxCandidates occurrences of them.
func candidates(located string, words ...string) ([]int, bool) {
	total := 0
	for _, w := range words {
		total += strings.Count(located, w)
	}
	if total == 0 {
		return nil, true
	}
	if total > maxCandidates {
		return nil, false
	}
	var found []int
	for _, w := range words {
		from := 0
		for {
			i := strings.Index(located[from:], w)
			if i < 0 {
				break
			}
			at := from + i
			k := strings.Count(located[:at], "\x00")
			found = insertIndex(found, k)
			from = at + len(w)
		}
	}
	return found, true
}

// insertIndex adds k to the ascending list found unless it is there already.
func insertIndex(found []int, k int) []int {
	i := 0
	for i < len(found) && found[i] < k {
		i++
	}
	if i < len(found) && found[i] == k {
		return found
	}
	found = append(found, 0)
	copy(found[i+1:], found[i:])
	found[i] = k
	return found
}
