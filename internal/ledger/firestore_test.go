package ledger_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

func TestFirestoreContract(t *testing.T) {
	t.Parallel()
	testenv.FirestoreClient(t) // skips the whole suite, or fails it under CI, without an emulator
	runContract(t, func(t *testing.T) store { return ledger.NewFirestore(testenv.FirestoreClient(t)) })
}

func TestFirestoreDocumentLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.FirestoreClient(t)
	s := ledger.NewFirestore(c)
	const key = "tenant/7/order-42"
	claim(t, s, key, t0)

	snap, err := c.Collection(ledger.Collection).Doc(ledger.DocID(id(key))).Get(ctx)
	if err != nil {
		t.Fatalf("the record is not at %s/%s: %v", ledger.Collection, ledger.DocID(id(key)), err)
	}
	data := snap.Data()
	if got, ok := data[ledger.ExpireAtField].(time.Time); !ok || !got.Equal(us(t0.Add(ledger.TTL))) {
		t.Errorf("%s = %#v, want the timestamp %v, which the TTL policy needs", ledger.ExpireAtField, data[ledger.ExpireAtField], t0.Add(ledger.TTL))
	}
	for field, want := range map[string]any{"key": key, "state": "sending", "attempts": int64(1)} {
		if data[field] != want {
			t.Errorf("field %s = %#v, want %#v", field, data[field], want)
		}
	}

	if err := s.Finish(ctx, id(key), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g1", Now: t0}); err != nil {
		t.Fatal(err)
	}
	snap, err = c.Collection(ledger.Collection).Doc(ledger.DocID(id(key))).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data = snap.Data()
	if data["gmail_message_id"] != "g1" || data["state"] != "sent" {
		t.Errorf("after Finish: %v; want state sent and gmail_message_id g1", data)
	}
	for _, field := range []string{"lease_until", "gmail_thread_id", "error_code", "error_message"} {
		if _, ok := data[field]; ok {
			t.Errorf("after Finish the document still has %s: %v", field, data)
		}
	}
}

// TestDocIDIsSHA256Hex pins the scope's encoding and its hash: every record
// is found by exactly these strings.
func TestDocIDIsSHA256Hex(t *testing.T) {
	t.Parallel()
	s := ledger.Scope{Account: " Alice@Example.COM", Key: "abc"}
	if got, want := s.ID(), "7:default,17:alice@example.com,3:abc,"; got != want {
		t.Fatalf("ID = %q, want %q", got, want)
	}
	// printf '7:default,17:alice@example.com,3:abc,' | sha256sum
	if got, want := ledger.DocID(s.ID()), "05ed13de883d79e89f559f74fda227d14278bbe5c21bf3f026724586e01df9a4"; got != want {
		t.Fatalf("DocID = %s, want %s", got, want)
	}
}

// failingFirestore is the network side of Firestore answering every commit
// with one gRPC code, so the real client, with its own retries, meets it.
type failingFirestore struct {
	firestorepb.UnimplementedFirestoreServer
	code codes.Code
}

func (f *failingFirestore) Commit(context.Context, *firestorepb.CommitRequest) (*firestorepb.CommitResponse, error) {
	return nil, status.Error(f.code, "injected by the test")
}

func failingClient(t *testing.T, code codes.Code) *firestore.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	firestorepb.RegisterFirestoreServer(srv, &failingFirestore{code: code})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := firestore.NewClient(context.Background(), "test-failing", option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFirestoreMapsGRPCCodes(t *testing.T) {
	t.Parallel()
	claimOp := func(ctx context.Context, s *ledger.Firestore) error {
		_, _, err := s.Claim(ctx, id("k"), ledger.ClaimRequest{Lease: lease, Now: t0})
		return err
	}
	finishOp := func(ctx context.Context, s *ledger.Firestore) error {
		return s.Finish(ctx, id("k"), ledger.Finish{State: ledger.StateSent, Now: t0})
	}
	ambiguousOp := func(ctx context.Context, s *ledger.Firestore) error {
		return s.MarkAmbiguous(ctx, id("k"), t0)
	}
	for _, tc := range []struct {
		name string
		code codes.Code
		op   func(context.Context, *ledger.Firestore) error
		want error // nil: neither sentinel
	}{
		// The client retries Unavailable and ResourceExhausted on commit
		// until the context ends.
		{"claim unavailable", codes.Unavailable, claimOp, ledger.ErrUnavailable},
		{"claim resource exhausted", codes.ResourceExhausted, claimOp, ledger.ErrUnavailable},
		{"claim internal", codes.Internal, claimOp, ledger.ErrUnavailable},
		{"claim aborted", codes.Aborted, claimOp, ledger.ErrUnavailable},
		{"claim deadline exceeded", codes.DeadlineExceeded, claimOp, ledger.ErrUnavailable},
		{"claim permission denied", codes.PermissionDenied, claimOp, nil},
		{"claim invalid argument", codes.InvalidArgument, claimOp, nil},
		{"finish not found", codes.NotFound, finishOp, ledger.ErrNotFound},
		{"finish unavailable", codes.Unavailable, finishOp, ledger.ErrUnavailable},
		{"ambiguous not found", codes.NotFound, ambiguousOp, ledger.ErrNotFound},
		{"ambiguous internal", codes.Internal, ambiguousOp, ledger.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := ledger.NewFirestore(failingClient(t, tc.code))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := tc.op(ctx, s)
			if err == nil {
				t.Fatal("no error from a failing server")
			}
			for _, sentinel := range []error{ledger.ErrUnavailable, ledger.ErrNotFound} {
				if errors.Is(err, sentinel) != (sentinel == tc.want) {
					t.Errorf("err = %v; errors.Is(err, %v) = %v, want %v", err, sentinel, !(sentinel == tc.want), sentinel == tc.want)
				}
			}
			if got := s.Stats().Writes; got != 0 {
				t.Errorf("writes = %d after a failed commit, want 0", got)
			}
		})
	}
}
