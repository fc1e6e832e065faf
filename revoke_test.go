package tokenrevoke

import (
	"net/http"
	"testing"

	"github.com/tokenrevoke/tokenrevoke/natsclient"
)

func TestRevokeAnswers500WhenNATSDoesNotConfirm(t *testing.T) {
	m, _ := newTestMiddleware(t, nil)
	fl := &fakeLink{err: natsclient.ErrNotConnected}
	m.domain.link = fl
	rec := serve(m, revokeReq("token=kept-locally", basic("portal", "s3cret")))
	checkError(t, rec, http.StatusInternalServerError, errServerError)
	if rec := serve(m, bearerReq("kept-locally")); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a revocation answered 500 was not kept locally: %d", rec.Code)
	}
	fl.err = nil
	if rec := serve(m, revokeReq("token=kept-locally", basic("portal", "s3cret"))); rec.Code != 200 {
		t.Fatalf("retry: %d", rec.Code)
	}
	if len(fl.sent) != 1 || fl.sent[0].sum != hashToken("kept-locally") {
		t.Fatalf("published %+v", fl.sent)
	}
}
