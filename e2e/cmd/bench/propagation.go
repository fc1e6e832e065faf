package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
)

// propResult is the propagation measurement: for each sample, the time from sending
// the revoke request to gateway A until gateway B first answers 401 for that token.
type propResult struct {
	Samples int     `json:"samples"`
	Missed  int     `json:"missed"` // B still accepted the token after the per-sample limit
	MinUs   float64 `json:"minUs"`
	P50Us   float64 `json:"p50Us"`
	P90Us   float64 `json:"p90Us"`
	P99Us   float64 `json:"p99Us"`
	MaxUs   float64 `json:"maxUs"`
	// Revoke round trip on A (its 200 arrives once NATS acknowledged the publish).
	AckP50Us float64 `json:"ackP50Us"`
	AckP99Us float64 `json:"ackP99Us"`
	// B's first 401 minus A's 200 (negative: B rejected before A's answer arrived): the
	// quantity of the target (issue #3).
	AfterAckP50Us float64 `json:"afterAckP50Us"`
	AfterAckP90Us float64 `json:"afterAckP90Us"`
	AfterAckP99Us float64 `json:"afterAckP99Us"`
	AfterAckMaxUs float64 `json:"afterAckMaxUs"`
	// Polls of B per sample (median), and the pause between two polls.
	PollsP50  float64 `json:"pollsP50"`
	PollGapUs int64   `json:"pollGapUs"`
	// Resolution: for each sample, the time from the start of the last poll B answered
	// 200 to the start of the poll it answered 401 (a sample overstates B's delay by
	// less than that).
	DetectP50Us float64 `json:"detectP50Us"`
	DetectP99Us float64 `json:"detectP99Us"`
	DetectMaxUs float64 `json:"detectMaxUs"`
	// CPU used by other processes meanwhile, in cores.
	OtherCores float64 `json:"otherCores"`
	// Raw samples, microseconds from the revoke request to B's first 401 (-1: missed).
	RawUs    []int64 `json:"rawUs"`
	RawAckUs []int64 `json:"rawAckUs"`
	RawPolls []int   `json:"rawPolls"`
}

const propLimit = 2 * time.Second // per sample

func keepAliveClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute},
	}
}

type ack struct {
	took   time.Duration
	status int
	err    error
}

// measurePropagation revokes n fresh tokens one after the other on a and polls b with
// each (on a kept-alive connection, gap apart) until b rejects it. On a small machine
// the gap matters: polling back to back keeps a core busy with b and the backend while
// a handles the revocation. The gap is waited with pause, not time.Sleep: see pause.
func measurePropagation(ctx context.Context, a, b *harness.Traefik, n int, gap time.Duration) (propResult, error) {
	res := propResult{Samples: n, PollGapUs: gap.Microseconds()}
	revokeClient, pollClient := keepAliveClient(), keepAliveClient()
	defer revokeClient.CloseIdleConnections()
	defer pollClient.CloseIdleConnections()
	run := time.Now().UnixNano()
	var lat, acks, afterAck, polls, detect []float64
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		tok := fmt.Sprintf("%sprop-%d-%d", benchTokenBase, run, i)
		// Warm B's view of this token first (200), so the first poll after the revoke
		// costs the same as every later one.
		if code, err := getWith(pollClient, b.WebURL+resourcePath, tok); err != nil || code != http.StatusOK {
			return res, fmt.Errorf("gateway B before revocation %d: status %d, %v", i, code, err)
		}
		acked := make(chan ack, 1)
		start := time.Now()
		go func() {
			code, err := postRevoke(revokeClient, a.WebURL, tok)
			acked <- ack{took: time.Since(start), status: code, err: err}
		}()
		seen := time.Duration(-1)
		p := 0
		var prevPoll time.Time
		for time.Since(start) < propLimit {
			pollStart := time.Now()
			code, err := getWith(pollClient, b.WebURL+resourcePath, tok)
			p++
			if err != nil {
				return res, fmt.Errorf("poll gateway B: %w", err)
			}
			if code == http.StatusUnauthorized {
				seen = time.Since(start)
				if p > 1 {
					detect = append(detect, float64(pollStart.Sub(prevPoll).Microseconds()))
				}
				break
			}
			if code != http.StatusOK {
				return res, fmt.Errorf("poll gateway B: status %d", code)
			}
			prevPoll = pollStart
			if gap > 0 {
				pause(gap)
			}
		}
		var ak ack
		select {
		case ak = <-acked:
		case <-time.After(10 * time.Second):
			return res, fmt.Errorf("revoke %d on gateway A: no answer after 10s", i)
		}
		if ak.err != nil || ak.status != http.StatusOK {
			return res, fmt.Errorf("revoke %d on gateway A: status %d, %v", i, ak.status, ak.err)
		}
		res.RawAckUs = append(res.RawAckUs, ak.took.Microseconds())
		acks = append(acks, float64(ak.took.Microseconds()))
		polls = append(polls, float64(p))
		res.RawPolls = append(res.RawPolls, p)
		if seen < 0 {
			res.Missed++
			res.RawUs = append(res.RawUs, -1)
			continue
		}
		res.RawUs = append(res.RawUs, seen.Microseconds())
		lat = append(lat, float64(seen.Microseconds()))
		afterAck = append(afterAck, float64((seen - ak.took).Microseconds()))
		time.Sleep(2 * time.Millisecond)
	}
	if len(lat) > 0 {
		res.MinUs = percentile(lat, 0)
		res.P50Us = percentile(lat, 50)
		res.P90Us = percentile(lat, 90)
		res.P99Us = percentile(lat, 99)
		res.MaxUs = percentile(lat, 100)
	}
	res.AckP50Us = percentile(acks, 50)
	res.AckP99Us = percentile(acks, 99)
	res.AfterAckP50Us = percentile(afterAck, 50)
	res.AfterAckP90Us = percentile(afterAck, 90)
	res.AfterAckP99Us = percentile(afterAck, 99)
	res.AfterAckMaxUs = percentile(afterAck, 100)
	res.PollsP50 = percentile(polls, 50)
	res.DetectP50Us = percentile(detect, 50)
	res.DetectP99Us = percentile(detect, 99)
	res.DetectMaxUs = percentile(detect, 100)
	return res, nil
}

func postRevoke(c *http.Client, base, tok string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+revokePath, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode, nil
}

func getWith(c *http.Client, u, tok string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode, nil
}
