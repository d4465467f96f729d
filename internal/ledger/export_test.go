package ledger

// BreakJournal closes l's journal behind its back, so that the next append
// fails as a write to a broken file would.
func BreakJournal(l *Local) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
