package natsclient

import (
	"crypto/ed25519"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"os"
	"strings"
)

// An nkey is base32 (standard alphabet, no padding) of:
//
//	prefix byte(s) | raw key | CRC-16/XMODEM of the preceding bytes, little endian
//
// A seed uses two prefix bytes: the first carries the "seed" marker (18<<3) plus the top
// three bits of the key type, the second the remaining five bits of the key type.
const (
	nkeyPrefixSeed byte = 18 << 3 // 'S'
	nkeyPrefixUser byte = 20 << 3 // 'U'
)

var nkeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

var errBadSeed = errors.New("nats: invalid nkey seed")

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum used by nkeys.
func crc16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = (crc << 1) ^ 0x1021
			} else {
				crc = crc << 1
			}
		}
	}
	return crc
}

// nkeyUser is a decoded user nkey: the ed25519 private key and the public key in its
// encoded "U..." form.
type nkeyUser struct {
	priv   ed25519.PrivateKey
	public string
}

// decodeUserSeed parses an "SU..." seed. The returned error never contains the seed.
func decodeUserSeed(seed string) (nkeyUser, error) {
	var out nkeyUser
	raw, err := nkeyEncoding.DecodeString(strings.TrimSpace(seed))
	if err != nil {
		return out, errBadSeed
	}
	// 2 prefix bytes + 32 byte ed25519 seed + 2 byte checksum.
	if len(raw) != 2+ed25519.SeedSize+2 {
		return out, errBadSeed
	}
	body := raw[:len(raw)-2]
	sum := uint16(raw[len(raw)-2]) | uint16(raw[len(raw)-1])<<8
	if crc16(body) != sum {
		return out, errors.New("nats: invalid nkey seed (checksum mismatch)")
	}
	if body[0]&0xf8 != nkeyPrefixSeed {
		return out, errors.New("nats: invalid nkey seed (not a seed)")
	}
	kind := (body[0]&0x07)<<5 | (body[1]&0xf8)>>3
	if kind != nkeyPrefixUser {
		return out, errors.New("nats: nkey seed is not a user seed (must start with SU)")
	}
	out.priv = ed25519.NewKeyFromSeed(body[2:])
	pub := []byte(out.priv[ed25519.SeedSize:]) // the last 32 bytes are the public key
	enc := make([]byte, 0, 1+len(pub)+2)
	enc = append(enc, nkeyPrefixUser)
	enc = append(enc, pub...)
	c := crc16(enc)
	enc = append(enc, byte(c), byte(c>>8))
	out.public = nkeyEncoding.EncodeToString(enc)
	return out, nil
}

// sign signs the server nonce and returns the signature as unpadded base64url, the form the
// server expects in CONNECT "sig".
func (k nkeyUser) sign(nonce string) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.priv, []byte(nonce)))
}

// creds is the content of a NATS user creds file.
type creds struct {
	jwt  string
	user nkeyUser
}

// loadCreds reads and parses a creds file. Errors name the file, never its content.
func loadCreds(path string) (creds, error) {
	var out creds
	data, err := os.ReadFile(path)
	if err != nil {
		return out, errors.New("nats: cannot read creds file: " + err.Error())
	}
	blocks := credsBlocks(string(data))
	if len(blocks) < 2 {
		return out, errors.New("nats: creds file " + path + " must contain a user JWT and an nkey seed block")
	}
	out.jwt = blocks[0]
	if strings.Count(out.jwt, ".") != 2 {
		return out, errors.New("nats: creds file " + path + ": first block is not a JWT")
	}
	u, err := decodeUserSeed(blocks[1])
	if err != nil {
		return out, errors.New("nats: creds file " + path + ": " + err.Error())
	}
	out.user = u
	return out, nil
}

// credsBlocks returns the bodies found between "-----BEGIN ...-----" and "-----END ...-----"
// style marker lines (any number of dashes, at least three), in file order.
func credsBlocks(s string) []string {
	var blocks []string
	lines := strings.Split(s, "\n")
	inBlock := false
	var cur strings.Builder
	for _, ln := range lines {
		t := strings.TrimSpace(ln)
		isMarker := strings.HasPrefix(t, "---") && strings.HasSuffix(t, "---")
		if isMarker {
			if !inBlock && strings.Contains(t, "BEGIN") {
				inBlock = true
				cur.Reset()
			} else if inBlock && strings.Contains(t, "END") {
				inBlock = false
				blocks = append(blocks, cur.String())
			}
			continue
		}
		if inBlock {
			cur.WriteString(t)
		}
	}
	return blocks
}
