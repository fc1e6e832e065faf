package natsclient

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Header holds NATS message headers. Unlike HTTP, NATS header keys are case-sensitive and
// are kept exactly as sent; Get falls back to a case-insensitive match for convenience.
type Header map[string][]string

// Get returns the first value of key: an exact key match first, otherwise the first key that
// matches case-insensitively. It returns "" when there is none.
func (h Header) Get(key string) string {
	if h == nil {
		return ""
	}
	if v, ok := h[key]; ok {
		if len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Values returns all values of key (exact match only).
func (h Header) Values(key string) []string {
	if h == nil {
		return nil
	}
	return h[key]
}

// Set replaces the values of key with value.
func (h Header) Set(key, value string) {
	h[key] = []string{value}
}

// Add appends value to the values of key.
func (h Header) Add(key, value string) {
	h[key] = append(h[key], value)
}

// Del removes key (exact match).
func (h Header) Del(key string) {
	delete(h, key)
}

const headerVersion = "NATS/1.0"

var (
	crlf            = []byte("\r\n")
	headerVersionB  = []byte(headerVersion)
	errBadHeaderKey = errors.New("nats: invalid header key (empty, or contains ':', whitespace or control characters)")
	errBadHeaderVal = errors.New("nats: invalid header value (contains CR or LF)")
)

// encodeHeader renders h as a NATS/1.0 header block, ending with the blank line. Keys are
// written in sorted order so that the output is deterministic.
func encodeHeader(h Header) ([]byte, error) {
	keys := make([]string, 0, len(h))
	for k := range h {
		if k == "" || strings.ContainsAny(k, ": \t\r\n") {
			return nil, errBadHeaderKey
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(headerVersion)
	b.WriteString("\r\n")
	for _, k := range keys {
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				return nil, errBadHeaderVal
			}
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// parseHeader parses a header block as received in HMSG. It returns the headers (never nil)
// and the inline status code and description of the first line, e.g.
// "NATS/1.0 503" or "NATS/1.0 100 Idle Heartbeat" (0 and "" when absent).
func parseHeader(b []byte) (Header, int, string, error) {
	hdr := Header{}
	if !bytes.HasPrefix(b, headerVersionB) {
		return hdr, 0, "", errors.New("nats: header block does not start with NATS/1.0")
	}
	end := bytes.Index(b, crlf)
	if end < 0 {
		return hdr, 0, "", errors.New("nats: header block without line end")
	}
	status := 0
	desc := ""
	first := bytes.TrimSpace(b[len(headerVersionB):end])
	if len(first) > 0 {
		code := first
		if sp := bytes.IndexByte(first, ' '); sp >= 0 {
			code = first[:sp]
			desc = string(bytes.TrimSpace(first[sp+1:]))
		}
		n, err := strconv.Atoi(string(code))
		if err != nil || n < 0 {
			return hdr, 0, "", errors.New("nats: bad status in header block")
		}
		status = n
	}
	rest := b[end+2:]
	for len(rest) > 0 {
		var line []byte
		j := bytes.Index(rest, crlf)
		if j < 0 {
			line = rest
			rest = nil
		} else {
			line = rest[:j]
			rest = rest[j+2:]
		}
		if len(line) == 0 {
			continue
		}
		k := bytes.IndexByte(line, ':')
		if k <= 0 {
			return hdr, status, desc, errors.New("nats: bad header line")
		}
		key := string(bytes.TrimSpace(line[:k]))
		hdr[key] = append(hdr[key], string(bytes.TrimSpace(line[k+1:])))
	}
	return hdr, status, desc, nil
}
