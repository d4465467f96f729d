package ledger

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/atomicfile"

	"github.com/gmailrelay/gmailrelay/internal/storeops"
)

// Local is the Store of make dev: records live in memory, and the file at its
// path is a journal of them, so that a restarted dev server still knows which
// keys it has sent.
//
// The journal is JSON lines, one {"id":DocID,"rec":Record} per change, the
// last line of an ID winning. Appends are not synced, but each is a write(2)
// into the page cache, which a killed process (kill -9, OOM) cannot take
// back: only the machine's own crash can lose the last changes. A change costs one append rather than a rewrite
// of every record, which made the ledger, not the sender, the limit of make
// dev. Appends are not synced: a crash may lose the last changes, which a dev
// server can afford, but never earlier ones, since each line is one write(2)
// and a torn final line is ignored on load. A line that does not parse
// anywhere else is corruption, and NewLocal refuses it rather than forget
// sends.
//
// The journal is compacted (rewritten atomically with only the live records)
// when it is opened and whenever it holds more than 4 lines per live record
// plus 1024, so that it stays proportional to the ledger. Compaction is when
// records past their TTL go, as Firestore's TTL policy deletes them
// eventually.
//
// It is safe for concurrent use within one process; two processes must not
// share a file.
type Local struct {
	path  string
	stats storeops.Counters

	mu   sync.Mutex
	recs map[string]*Record // by DocID of the record's Scope.ID
	// f is the journal, open for appending; nil when the last compaction
	// could not reopen it or the store is closed.
	f *os.File
	// lines is how many records the journal holds, superseded or not.
	lines int
	// dirty means the last append failed: the journal may end in part of
	// a line, so the next write compacts instead of appending after it.
	dirty  bool
	closed bool
	buf    bytes.Buffer
	enc    *json.Encoder // writes to buf
}

var _ Store = (*Local)(nil)

// journalLine is one line of the journal. ID is redundant with the record's
// scope; it is checked on load so that a line edited by hand cannot file a
// record under another request's ID.
type journalLine struct {
	ID  string  `json:"id"`
	Rec *Record `json:"rec"`
}

// legacyFile is the format before the journal: one JSON object rewritten
// whole on every change. NewLocal converts it.
type legacyFile struct {
	Records []*Record `json:"records"`
}

// compactSlack and compactFactor bound the journal at compactFactor lines per
// live record plus compactSlack: the slack keeps a small ledger from being
// rewritten every few writes, and the factor makes compaction's cost, a
// rewrite of the live records, amortise to a constant per write.
const (
	compactSlack  = 1024
	compactFactor = 4
)

// NewLocal opens the store persisted at path, creating its directory and an
// empty journal if there is none. The file keeps its name whatever its
// format, so that a state directory written before the journal (holding
// {"records":[...]}) is converted in place.
func NewLocal(path string) (*Local, error) {
	if path == "" {
		return nil, errors.New("ledger.NewLocal: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger.NewLocal: %w", err)
	}
	l := &Local{path: path, recs: make(map[string]*Record)}
	l.enc = json.NewEncoder(&l.buf)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ledger.NewLocal: %w", err)
	}
	clean, err := l.load(b)
	if err != nil {
		return nil, fmt.Errorf("ledger.NewLocal: %w", err)
	}
	if clean {
		err = l.open()
	} else {
		err = l.compact(time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("ledger.NewLocal: %w", err)
	}
	return l, nil
}

// load fills l.recs from the file's contents b, dropping expired records,
// and reports whether b is already the compact journal of what it loaded,
// so that opening an unchanged ledger rewrites nothing.
func (l *Local) load(b []byte) (clean bool, err error) {
	now := time.Now()
	if recs, ok, err := parseLegacy(b); ok {
		if err != nil {
			return false, fmt.Errorf("parsing %s: %w", l.path, err)
		}
		for _, r := range recs {
			if r == nil || r.Key == "" || r.expired(now) {
				continue
			}
			l.recs[DocID(unscoped(r).Scope().ID())] = r
		}
		return false, nil
	}
	lines, n := 0, 0
	clean = true
	for len(b) > 0 {
		n++
		line, rest, complete := bytes.Cut(b, []byte("\n"))
		b = rest
		if len(bytes.TrimSpace(line)) == 0 {
			clean = false
			continue
		}
		var jl journalLine
		err := json.Unmarshal(line, &jl)
		if err == nil && jl.legacy() {
			// Written before idempotency was scoped: filed again under
			// its scope, which the compaction that follows writes down.
			unscoped(jl.Rec)
			jl.ID = DocID(jl.Rec.Scope().ID())
			clean = false
		}
		if err == nil {
			err = jl.check()
		}
		if err != nil {
			if !complete || len(bytes.TrimSpace(b)) == 0 {
				// The tail of a crash: the write of this line was cut
				// short, or its blocks never reached the disk. It was
				// never acknowledged, so it is dropped, and compaction
				// cuts it off before anything is appended after it.
				clean = false
				break
			}
			return false, fmt.Errorf("%s:%d: corrupt journal line: %w", l.path, n, err)
		}
		if !complete {
			// Whole but unterminated: an append after it would share its
			// line.
			clean = false
		}
		lines++
		l.recs[jl.ID] = jl.Rec
	}
	for id, r := range l.recs {
		if r.expired(now) {
			delete(l.recs, id)
		}
	}
	return clean && lines == len(l.recs), nil
}

// parseLegacy reports whether b is the pre-journal format, a JSON object
// with a "records" member, and if so returns its records. A one-line journal
// is also a JSON object, so the member, not the shape, decides.
func parseLegacy(b []byte) ([]*Record, bool, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, false, nil
	}
	if _, ok := top["records"]; !ok {
		return nil, false, nil
	}
	var f legacyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, true, err
	}
	return f.Records, true, nil
}

func (jl *journalLine) check() error {
	switch {
	case jl.Rec == nil:
		return errors.New("no record")
	case jl.Rec.Key == "":
		return errors.New("record without a key")
	case jl.ID != DocID(jl.Rec.Scope().ID()):
		return fmt.Errorf("id %q is not the DocID of the scope (%q, %q, %q)", jl.ID, jl.Rec.App, jl.Rec.Account, jl.Rec.Key)
	}
	return nil
}

// legacy reports whether the line was written before idempotency was
// scoped by app and account: its record has no app, and its ID is the hash
// of the bare key.
func (jl *journalLine) legacy() bool {
	return jl.Rec != nil && jl.Rec.App == "" && jl.Rec.Key != "" && jl.ID == legacyDocID(jl.Rec.Key)
}

// legacyDocID is the document ID before scoping: hex(sha256(key)).
func legacyDocID(key string) string { return Fingerprint([]byte(key)) }

// unscoped gives a record from before scoping the scope its request had:
// the default app and its account, normalised. It changes r in place.
func unscoped(r *Record) *Record {
	if r.App == "" {
		s := r.Scope().normalized()
		r.App, r.Account = s.App, s.Account
	}
	return r
}

// open opens the journal for appending. Callers have just read or written
// it as one line per record of l.recs.
func (l *Local) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.lines, l.dirty = f, len(l.recs), false
	return nil
}

// compact drops the records expired at now and replaces the journal with
// one line per remaining record. Memory drops them only once the disk has,
// and the new file is opened before the old one is let go, so that a
// failure leaves the store as it was, except when the new file was written
// but cannot be opened: the disk then holds the ledger, and the next write
// compacts again.
func (l *Local) compact(now time.Time) error {
	ids := make([]string, 0, len(l.recs))
	for id, r := range l.recs {
		if !r.expired(now) {
			ids = append(ids, id)
		}
	}
	// Sorted by key, then ID (scopes may share a key), so that compacting
	// an unchanged ledger writes the same bytes.
	slices.SortFunc(ids, func(a, b string) int { return cmp.Or(cmp.Compare(l.recs[a].Key, l.recs[b].Key), cmp.Compare(a, b)) })
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	for _, id := range ids {
		if err := enc.Encode(journalLine{ID: id, Rec: l.recs[id]}); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(l.path, out.Bytes(), 0o600); err != nil {
		return err
	}
	for id, r := range l.recs {
		if r.expired(now) {
			delete(l.recs, id)
		}
	}
	if err := l.open(); err != nil {
		if l.f != nil {
			// It appends to the file the rename replaced.
			_ = l.f.Close()
			l.f = nil
		}
		// The write itself is on disk, so it succeeded.
		l.dirty = true
	}
	return nil
}

// Close closes the journal; later writes fail with ErrUnavailable. Stores
// that live as long as their process, as make dev's do, need not call it.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Stats returns the reads and writes made so far, counted as Firestore
// would bill the same calls.
func (l *Local) Stats() Stats { return l.stats.Snapshot() }

// Claim implements Store.
func (l *Local) Claim(ctx context.Context, id string, c ClaimRequest) (*Record, ClaimOutcome, error) {
	scope, err := c.check(id)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	now := nowOr(c.Now)
	doc := DocID(id)

	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.recs[doc]
	if cur != nil {
		l.stats.Read(1)
	}
	rec, out, write, err := decide(cur, scope, c, now)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
	}
	if write {
		if err := l.put(doc, rec); err != nil {
			return nil, 0, fmt.Errorf("ledger.Claim: %w", err)
		}
	}
	return rec.clone(), out, nil
}

// Finish implements Store.
func (l *Local) Finish(ctx context.Context, id string, fin Finish) error {
	if err := fin.check(id); err != nil {
		return fmt.Errorf("ledger.Finish: %w", err)
	}
	return l.update(ctx, "ledger.Finish", id, false, func(cur *Record) *Record {
		return finished(cur, fin, nowOr(fin.Now))
	})
}

// Release implements Store.
func (l *Local) Release(ctx context.Context, id, errorCode, errorMessage string, now time.Time) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("ledger.Release: %w", err)
	}
	return l.update(ctx, "ledger.Release", id, true, func(cur *Record) *Record {
		if cur.State != StateSending {
			return nil
		}
		return released(cur, errorCode, errorMessage, nowOr(now))
	})
}

// MarkAmbiguous implements Store.
func (l *Local) MarkAmbiguous(ctx context.Context, id string, now time.Time) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("ledger.MarkAmbiguous: %w", err)
	}
	return l.update(ctx, "ledger.MarkAmbiguous", id, false, func(cur *Record) *Record {
		return ambiguous(cur, nowOr(now))
	})
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, id string) (*Record, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger.Get: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Read(1)
	cur := l.recs[DocID(id)]
	if cur == nil {
		return nil, fmt.Errorf("ledger.Get: %w", ErrNotFound)
	}
	return cur.clone(), nil
}

// update applies change to the key's record; change returns nil to write
// nothing. counted says whether the Firestore twin reads before writing, so
// that both stores report the same Stats.
func (l *Local) update(ctx context.Context, op, id string, counted bool, change func(*Record) *Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	doc := DocID(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if counted {
		l.stats.Read(1)
	}
	cur := l.recs[doc]
	if cur == nil {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	next := change(cur)
	if next == nil {
		return nil
	}
	if err := l.put(doc, next); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// put stores rec and persists it, undoing the change in memory if the
// journal cannot be written, so memory never claims what the disk lost.
func (l *Local) put(id string, rec *Record) error {
	old, had := l.recs[id]
	l.recs[id] = rec
	if err := l.persist(id, rec); err != nil {
		if had {
			l.recs[id] = old
		} else {
			delete(l.recs, id)
		}
		return fmt.Errorf("%w: writing %s: %w", ErrUnavailable, l.path, err)
	}
	l.stats.Write()
	return nil
}

// persist writes rec, already in l.recs, to the journal: one append, or a
// compaction (which writes every record, rec included) when the journal has
// grown past its bound or its end cannot be trusted.
func (l *Local) persist(id string, rec *Record) error {
	if l.closed {
		return os.ErrClosed
	}
	if l.f == nil || l.dirty || l.lines >= compactFactor*len(l.recs)+compactSlack {
		return l.compact(time.Now())
	}
	l.buf.Reset()
	if err := l.enc.Encode(journalLine{ID: id, Rec: rec}); err != nil {
		return err
	}
	if _, err := l.f.Write(l.buf.Bytes()); err != nil {
		// The journal may now end in part of this line, which a restart
		// would drop as a crash tail but an append would bury, and the
		// file itself may be broken: the next write rewrites it from
		// memory instead.
		l.dirty = true
		return err
	}
	l.lines++
	return nil
}
