package tokenrevoke

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// OAuth error codes used by the plugin (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 6750 §3.1).
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errUnsupportedTokenType = "unsupported_token_type"
	errServerError          = "server_error"
	errInvalidToken         = "invalid_token"
	errUnavailable          = "temporarily_unavailable"
	errTooManyRequests      = "too_many_requests"
)

// errorBody is the JSON shape of every error the plugin writes.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"errorDescription"`
}

func writeError(rw http.ResponseWriter, status int, code, description string) {
	writeErrorBody(rw, status, errorJSON(code, description))
}

func errorJSON(code, description string) []byte {
	body, err := json.Marshal(errorBody{Error: code, ErrorDescription: description})
	if err != nil {
		return []byte(`{"error":"server_error","errorDescription":"could not encode the error"}`)
	}
	return body
}

// revokedBody is prebuilt: rejecting a revoked token is the plugin's busiest error.
var revokedBody = errorJSON(errInvalidToken, "The access token has been revoked")

func writeErrorBody(rw http.ResponseWriter, status int, body []byte) {
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(status)
	_, _ = rw.Write(body)
}

// writeRevoked rejects a request that presented a revoked bearer token (RFC 6750 §3).
func writeRevoked(rw http.ResponseWriter) {
	rw.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token has been revoked"`)
	writeErrorBody(rw, http.StatusUnauthorized, revokedBody)
}

// writeUnavailable answers bearer requests while failClosed waits for the revocation
// stream to be synced.
func writeUnavailable(rw http.ResponseWriter) {
	rw.Header().Set("Retry-After", "1")
	writeError(rw, http.StatusServiceUnavailable, errUnavailable,
		"Revocation state is not synced yet; retry shortly")
}

// writeTooManyRequests answers a client over its revocation rate; Retry-After is in
// whole seconds, rounded up.
func writeTooManyRequests(rw http.ResponseWriter, wait time.Duration) {
	secs := int64((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	rw.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(rw, http.StatusTooManyRequests, errTooManyRequests,
		"This client has revoked too many tokens in the last minute; retry later")
}

// writeInvalidClient answers a failed client authentication (RFC 6749 §5.2).
func writeInvalidClient(rw http.ResponseWriter, description string) {
	rw.Header().Set("WWW-Authenticate", `Basic realm="tokenrevoke"`)
	writeError(rw, http.StatusUnauthorized, errInvalidClient, description)
}
