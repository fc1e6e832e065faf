package tokenrevoke

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Traefik gives the interpreter its own stdout and stderr: what the plugin writes to
// os.Stdout lands in Traefik's log at DEBUG level, os.Stderr at ERROR level. Info lines
// go to stdout, warnings and errors to stderr, each tagged with its own level.
//
// No log line ever holds a raw token or a client secret: tokens are only ever named by
// a short prefix of their SHA-256, secrets not at all.

// logSink, when set (tests), receives every line instead of stdout/stderr.
var (
	logSinkMu sync.Mutex
	logSink   io.Writer
)

type logger struct {
	name string
}

func newLogger(name string) *logger {
	return &logger{name: name}
}

func (l *logger) infof(format string, args ...interface{}) {
	l.write(os.Stdout, "INFO", format, args)
}

func (l *logger) warnf(format string, args ...interface{}) {
	l.write(os.Stderr, "WARN", format, args)
}

func (l *logger) errorf(format string, args ...interface{}) {
	l.write(os.Stderr, "ERROR", format, args)
}

func (l *logger) write(w io.Writer, level, format string, args []interface{}) {
	line := time.Now().UTC().Format(time.RFC3339) + " " + level + " tokenrevoke[" + l.name + "]: " +
		fmt.Sprintf(format, args...) + "\n"
	logSinkMu.Lock()
	if logSink != nil {
		w = logSink
	}
	_, _ = io.WriteString(w, line)
	logSinkMu.Unlock()
}
