package cli

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// stateEvery is how often import records its progress in the state file.
const stateEvery = time.Second

// background writes the state file every stateEvery and reports progress until stop
// is closed: a redrawn bar when stderr is a terminal, a plain line every --progress-every
// otherwise.
func (im *importer) background(stop <-chan struct{}, size int64) {
	tty := isTerminal(im.a.stderr())
	draw := im.o.every
	if tty {
		draw = 200 * time.Millisecond
	}
	stateTick := time.NewTicker(stateEvery)
	defer stateTick.Stop()
	var drawTick <-chan time.Time
	if draw > 0 {
		t := time.NewTicker(draw)
		defer t.Stop()
		drawTick = t.C
	}
	lastSaved := int64(-1)
	for {
		select {
		case <-stop:
			return
		case <-stateTick.C:
			if l := atomic.LoadInt64(&im.doneLine); l != lastSaved {
				if err := im.writeState(); err != nil {
					im.mu.Lock()
					first := im.stateErr == nil
					im.stateErr = err
					im.mu.Unlock()
					if first {
						im.note("cannot write state file %s: %v", im.state, err)
					}
				} else {
					lastSaved = l
				}
			}
		case <-drawTick:
			im.report(tty, size, false)
		}
	}
}

// finishProgress ends the bar's line on a terminal.
func (im *importer) finishProgress(size int64) {
	if isTerminal(im.a.stderr()) {
		im.report(true, size, true)
	}
}

// report prints one progress update.
func (im *importer) report(tty bool, size int64, final bool) {
	el := time.Since(im.start).Seconds()
	lines := atomic.LoadInt64(&im.doneLine)
	off := atomic.LoadInt64(&im.doneOffset)
	rate := 0.0
	if el > 0 {
		rate = float64(lines-im.resume) / el
	}
	pct, eta := "", ""
	frac := -1.0
	if size > 0 {
		frac = float64(off) / float64(size)
		pct = fmt.Sprintf(" %5.1f%%", 100*frac)
		// ETA from the byte rate of this run.
		if startOff := im.startOffset(); off > startOff && el > 0 {
			left := float64(size-off) / (float64(off-startOff) / el)
			eta = " ETA " + fmtDuration(time.Duration(left*float64(time.Second)))
		}
	}
	text := fmt.Sprintf("%s lines%s, %s published, %s/s%s", groupDigits(lines), pct,
		groupDigits(atomic.LoadInt64(&im.published)), groupDigits(int64(rate)), eta)
	im.mu.Lock()
	defer im.mu.Unlock()
	w := im.a.stderr()
	if !tty {
		fmt.Fprintf(w, "import: %s\n", text)
		return
	}
	bar := ""
	if frac >= 0 {
		const width = 30
		n := int(frac * width)
		if n > width {
			n = width
		}
		bar = "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] "
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(w, "\r\033[K%s%s%s", bar, text, end)
}

// startOffset is the byte offset this run started from.
func (im *importer) startOffset() int64 { return im.resumeOffset }

func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return "<1s"
	}
	return d.Round(time.Second).String()
}

// groupDigits writes n with thousands separators.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
