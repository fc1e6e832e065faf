package tokenrevoke

import (
	"fmt"
	"io"
	"log"
	"sync"
)

// Traefik gives the interpreter its own stdout and stderr writers, which feed its log:
// stdout at DEBUG level, stderr at ERROR level. Only the fmt.Print* and log.Print*
// functions are bound to those writers (os.Stdout and os.Stderr stay the process's own
// unless YAEGI_SPECIAL_STDIO is set), so info lines go through fmt.Print and warnings
// and errors through log.Print, each tagged with its own level.
//
// No log line ever holds a raw token or a client secret: tokens are only ever named by
// a short prefix of their SHA-256, secrets not at all.

// logSink, when set (tests), receives every line instead.
var (
	logSinkMu sync.Mutex
	logSink   io.Writer
)

func init() {
	// Traefik stamps every line itself; log's own date and time would only repeat it.
	log.SetFlags(0)
}

type logger struct {
	name string
}

func newLogger(name string) *logger {
	return &logger{name: name}
}

func (l *logger) infof(format string, args ...interface{}) {
	l.write(false, "INFO", format, args)
}

func (l *logger) warnf(format string, args ...interface{}) {
	l.write(true, "WARN", format, args)
}

func (l *logger) errorf(format string, args ...interface{}) {
	l.write(true, "ERROR", format, args)
}

func (l *logger) write(toStderr bool, level, format string, args []interface{}) {
	line := level + " tokenrevoke[" + l.name + "]: " + fmt.Sprintf(format, args...) + "\n"
	logSinkMu.Lock()
	defer logSinkMu.Unlock()
	switch {
	case logSink != nil:
		_, _ = io.WriteString(logSink, line)
	case toStderr:
		log.Print(line)
	default:
		fmt.Print(line)
	}
}
