// Package lrubench drives the store candidates from interpreted code, the way the
// plugin would: a bearer check (hash + lookup of a key that is not held) and inserts.
package lrubench

import (
	"crypto/sha256"
	"time"

	lru "github.com/hashicorp/golang-lru"

	"example.com/listlru"
)

func keyOf(i int) [32]byte {
	var k [32]byte
	k[0], k[1], k[2], k[3], k[31] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24), 0xAB
	return k
}

// Result holds nanoseconds per operation.
type Result struct {
	InsertNs, MissNs float64
	Keep             interface{} // the filled cache, so the caller can measure its heap
}

// GolangLRU measures golang-lru v1 (its thread-safe Cache).
func GolangLRU(n, probes int, token string) Result {
	c, _ := lru.New(n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		c.Add(keyOf(i), int64(i))
	}
	ins := float64(time.Since(t0).Nanoseconds()) / float64(n)
	t0 = time.Now()
	for i := 0; i < probes; i++ {
		if c.Contains(sha256.Sum256([]byte(token))) {
			panic("unexpected hit")
		}
	}
	return Result{ins, float64(time.Since(t0).Nanoseconds()) / float64(probes), c}
}

// ListLRU measures the map + container/list LRU.
func ListLRU(n, probes int, token string) Result {
	c := listlru.New(n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		c.Add(keyOf(i), int64(i))
	}
	ins := float64(time.Since(t0).Nanoseconds()) / float64(n)
	t0 = time.Now()
	for i := 0; i < probes; i++ {
		if c.Contains(sha256.Sum256([]byte(token))) {
			panic("unexpected hit")
		}
	}
	return Result{ins, float64(time.Since(t0).Nanoseconds()) / float64(probes), c}
}
