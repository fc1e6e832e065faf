// Package listlru is the textbook LRU (a map to container/list elements), one of the
// candidates measured under yaegi before choosing the plugin's store design.
package listlru

import (
	"container/list"
	"sync"
)

type entry struct {
	key [32]byte
	exp int64
}

// Cache is a map plus a doubly linked list in recency order.
type Cache struct {
	mu    sync.Mutex
	size  int
	ll    *list.List
	items map[[32]byte]*list.Element
}

// New makes a cache holding at most size entries.
func New(size int) *Cache {
	return &Cache{size: size, ll: list.New(), items: make(map[[32]byte]*list.Element)}
}

// Add inserts or refreshes key.
func (c *Cache) Add(key [32]byte, exp int64) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		e.Value.(*entry).exp = exp
		c.mu.Unlock()
		return
	}
	c.items[key] = c.ll.PushFront(&entry{key: key, exp: exp})
	if c.ll.Len() > c.size {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*entry).key)
	}
	c.mu.Unlock()
}

// Contains reports whether key is held, without touching recency.
func (c *Cache) Contains(key [32]byte) bool {
	c.mu.Lock()
	_, ok := c.items[key]
	c.mu.Unlock()
	return ok
}
