package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/gmailrelay/gmailrelay/internal/registry"
)

// stack is what the push, burst and kill modes run the packaged sender
// against: an in-process Pub/Sub with the results topic and its
// subscription, the fake Google, and accounts connected in a Local
// registry under a scratch directory that the sender's state shares.
type stack struct {
	project string
	ps      *pstest.Server
	dir     string
	state   string
	g       *fakeGoogle
	psc     *pubsub.Client
	emails  []string
	// keep leaves the scratch directory behind on close, for the sender
	// logs of a run that failed.
	keep bool
}

// newStack connects accounts mailboxes, named by format and their index.
func newStack(ctx context.Context, mode string, accounts int, format string) (_ *stack, err error) {
	s := &stack{project: fmt.Sprintf("loadtest-%s-%d", mode, rand.IntN(1e9)), ps: pstest.NewServer()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = scratch("gmailrelay-" + mode + "-"); err != nil {
		return s, err
	}
	s.state = filepath.Join(s.dir, "state")
	if s.g, err = startGoogle(ctx, s.dir, s.project); err != nil {
		return s, err
	}
	if s.psc, err = pubsubClient(ctx, s.ps.Addr, s.project); err != nil {
		return s, err
	}
	if err = setupResults(ctx, s.psc, s.project); err != nil {
		return s, err
	}
	reg, err := registry.NewLocal(filepath.Join(s.state, "accounts.json"))
	if err != nil {
		return s, err
	}
	for i := range accounts {
		e := fmt.Sprintf(format, i)
		s.emails = append(s.emails, e)
		if err := s.g.connect(ctx, reg, e); err != nil {
			return s, err
		}
	}
	return s, nil
}

// env is the packaged sender's environment against this stack.
func (s *stack) env() []string { return senderEnv(s.g, s.project, s.state, s.ps.Addr) }

func (s *stack) close() {
	if s.psc != nil {
		s.psc.Close()
	}
	if s.g != nil {
		s.g.close()
	}
	s.ps.Close()
	if s.dir != "" && !s.keep {
		os.RemoveAll(s.dir)
	}
}
