package testenv

import (
	"io"
	"strings"
	"sync"
)

// SyncBuffer collects what concurrent writers write (a logger shared by
// handlers, a child process's output) for a test to read.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

var _ io.Writer = (*SyncBuffer)(nil)

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
