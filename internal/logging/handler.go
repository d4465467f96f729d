package logging

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/jsonenc"
)

// handler writes each record as one JSON object with Cloud Logging's keys:
// time, severity and message first, then the attributes, with those whose
// names look secret redacted.
//
// It replaces slog.JSONHandler with a ReplaceAttr function, which did the
// same, because that combination cost 5 µs for the sender's one line per
// message: the function ran for every attribute, built-in keys included, and
// each Logger.With cloned and re-encoded the handler's state. Values are
// written as JSONHandler writes them (durations in nanoseconds, errors as
// their text, other values through json.Marshal), and testing/slogtest holds
// the handler to slog's rules.
type handler struct {
	w     io.Writer
	mu    *sync.Mutex // shared by every handler derived from one New
	level slog.Leveler

	// pre holds the attributes of With, encoded, each member after a
	// comma, inside the groups opened for them.
	pre []byte
	// open counts the groups pre opened, to be closed after a record's
	// attributes.
	open int
	// pending names the groups of WithGroup that no attribute has entered
	// yet: a group without attributes is left out.
	pending []string
}

var _ slog.Handler = (*handler)(nil)

func newHandler(w io.Writer, level slog.Leveler) *handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &handler{w: w, mu: new(sync.Mutex), level: level}
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if !anyShown(attrs) {
		return h
	}
	h2 := *h
	pre := make([]byte, len(h.pre), len(h.pre)+64*len(attrs)+16*len(h.pending))
	copy(pre, h.pre)
	e := encoder{buf: pre, comma: true}
	for _, g := range h.pending {
		e.openGroup(g)
	}
	h2.open += len(h.pending)
	h2.pending = nil
	for _, a := range attrs {
		e.attr(a)
	}
	h2.pre = e.buf
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.pending = append(h.pending[:len(h.pending):len(h.pending)], name)
	return &h2
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	p := linePool.Get().(*[]byte)
	e := encoder{buf: (*p)[:0]}
	e.buf = append(e.buf, '{')
	if !r.Time.IsZero() {
		e.key("time")
		e.time(r.Time)
	}
	e.key("severity")
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, severity(r.Level)...)
	e.buf = append(e.buf, '"')
	e.key("message")
	e.buf = jsonenc.AppendString(e.buf, r.Message)
	e.buf = append(e.buf, h.pre...)
	closing := h.open
	// WithGroup's groups are opened only for attributes that go in them.
	if len(h.pending) == 0 || recordShows(r) {
		for _, g := range h.pending {
			e.openGroup(g)
		}
		closing += len(h.pending)
		r.Attrs(func(a slog.Attr) bool {
			e.attr(a)
			return true
		})
	}
	for range closing {
		e.buf = append(e.buf, '}')
	}
	e.buf = append(e.buf, '}', '\n')
	h.mu.Lock()
	_, err := h.w.Write(e.buf)
	h.mu.Unlock()
	if cap(e.buf) <= maxPooledLine {
		*p = e.buf
		linePool.Put(p)
	}
	return err
}

// linePool recycles line buffers; maxPooledLine keeps a huge line's out.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledLine = 16 << 10

// severity is Cloud Logging's name for l.
func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

// shown reports whether a writes anything: an empty attribute and a group
// with nothing in it write nothing.
func shown(a slog.Attr) bool {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		return anyShown(a.Value.Group())
	}
	return !a.Equal(slog.Attr{})
}

func anyShown(attrs []slog.Attr) bool {
	for _, a := range attrs {
		if shown(a) {
			return true
		}
	}
	return false
}

func recordShows(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = shown(a)
		return !found
	})
	return found
}

// encoder appends JSON members; comma says whether the next one needs a
// comma before it.
type encoder struct {
	buf   []byte
	comma bool
}

func (e *encoder) key(k string) {
	if e.comma {
		e.buf = append(e.buf, ',')
	}
	e.buf = jsonenc.AppendString(e.buf, k)
	e.buf = append(e.buf, ':')
	e.comma = true
}

func (e *encoder) openGroup(name string) {
	e.key(name)
	e.buf = append(e.buf, '{')
	e.comma = false
}

func (e *encoder) attr(a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if !anyShown(attrs) {
			return
		}
		if a.Key != "" {
			e.openGroup(a.Key)
		}
		for _, ga := range attrs {
			e.attr(ga)
		}
		if a.Key != "" {
			e.buf = append(e.buf, '}')
			e.comma = true
		}
		return
	}
	if a.Equal(slog.Attr{}) {
		return
	}
	e.key(a.Key)
	if isSecretKey(a.Key) && !(a.Value.Kind() == slog.KindString && a.Value.String() == "") {
		e.buf = jsonenc.AppendString(e.buf, Redacted)
		return
	}
	e.value(a.Value)
}

func (e *encoder) value(v slog.Value) {
	switch v.Kind() {
	case slog.KindString:
		e.buf = jsonenc.AppendString(e.buf, v.String())
	case slog.KindInt64:
		e.buf = strconv.AppendInt(e.buf, v.Int64(), 10)
	case slog.KindUint64:
		e.buf = strconv.AppendUint(e.buf, v.Uint64(), 10)
	case slog.KindBool:
		e.buf = strconv.AppendBool(e.buf, v.Bool())
	case slog.KindDuration:
		// As JSONHandler writes a duration: nanoseconds.
		e.buf = strconv.AppendInt(e.buf, int64(v.Duration()), 10)
	case slog.KindTime:
		e.time(v.Time())
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has no such numbers.
			e.buf = jsonenc.AppendString(e.buf, strconv.FormatFloat(f, 'g', -1, 64))
			return
		}
		e.marshal(f)
	default:
		a := v.Any()
		if err, ok := a.(error); ok {
			if _, custom := a.(json.Marshaler); !custom {
				e.buf = jsonenc.AppendString(e.buf, err.Error())
				return
			}
		}
		e.marshal(a)
	}
}

func (e *encoder) marshal(a any) {
	b, err := json.Marshal(a)
	if err != nil {
		e.buf = jsonenc.AppendString(e.buf, "!ERROR: "+err.Error())
		return
	}
	e.buf = append(e.buf, b...)
}

// time writes t as RFC 3339 with nanoseconds, which Cloud Logging reads as
// the entry's timestamp.
func (e *encoder) time(t time.Time) {
	e.buf = append(e.buf, '"')
	e.buf = t.AppendFormat(e.buf, time.RFC3339Nano)
	e.buf = append(e.buf, '"')
}
