//go:build !linux

package main

import "time"

// pause waits d; see pause_linux.go for why Linux does not use time.Sleep.
func pause(d time.Duration) { time.Sleep(d) }
