package tokenrevoke

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestStatusEndpoint(t *testing.T) {
	m, b := newTestMiddleware(t, func(c *Config) { c.StatusPath = "/api/id/v1/auth/token/revoke/status" })
	m.domain.link = &fakeLink{isSynced: true}
	serve(m, revokeReq("token=one", basic("portal", "s3cret")))
	req := httptest.NewRequest(http.MethodGet, "/api/id/v1/auth/token/revoke/status", nil)
	checkError(t, serve(m, req), http.StatusUnauthorized, errInvalidClient)
	req.Header.Set("Authorization", basic("portal", "s3cret"))
	rec := serve(m, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", rec.Code, rec.Body.String())
	}
	var doc struct {
		Entries int  `json:"entries"`
		Synced  bool `json:"synced"`
		NATS    struct {
			Stream    string `json:"stream"`
			StreamSeq uint64 `json:"streamSequence"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Entries != 1 || !doc.Synced || doc.NATS.Stream != "REVOCATIONS" || doc.NATS.StreamSeq != 7 {
		t.Fatalf("status = %s", rec.Body.String())
	}
	if b.count() != 0 {
		t.Error("status request reached the backend")
	}
}
