package registry_test

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

	"github.com/gmailrelay/gmailrelay/internal/registry"
	"github.com/gmailrelay/gmailrelay/internal/testing/testenv"
)

func TestFirestoreContract(t *testing.T) {
	t.Parallel()
	testenv.FirestoreClient(t) // skips the whole suite, or fails it under CI, without an emulator
	runContract(t, func(t *testing.T) store { return registry.NewFirestore(testenv.FirestoreClient(t)) })
}

func TestFirestoreDocumentLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.FirestoreClient(t)
	s := registry.NewFirestore(c)
	a := account(" Alice@Example.com", registry.StatusConnected)
	a.LastRefreshAt = t0.Add(time.Minute)
	upsert(t, s, a)

	// sha256("alice@example.com"), as account.IDs derives it: accounts
	// already stored must stay at this ID.
	const aliceDocID = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
	snap, err := c.Collection(registry.Collection).Doc(aliceDocID).Get(ctx)
	if err != nil {
		t.Fatalf("the account is not at %s/%s: %v", registry.Collection, aliceDocID, err)
	}
	data := snap.Data()
	if data["email"] != alice || data["status"] != "connected" {
		t.Errorf("email, status = %#v, %#v; want %q, connected", data["email"], data["status"], alice)
	}
	for _, field := range []string{"connected_at", "token_issued_at", "last_refresh_at", "updated_at"} {
		if _, ok := data[field].(time.Time); !ok {
			t.Errorf("%s = %#v, want a timestamp", field, data[field])
		}
	}
	if scopes, ok := data["scopes"].([]any); !ok || len(scopes) != 3 {
		t.Errorf("scopes = %#v, want an array of 3", data["scopes"])
	}
	for _, field := range []string{"last_error", "last_error_at"} {
		if _, ok := data[field]; ok {
			t.Errorf("field %s is stored though empty", field)
		}
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

func TestFirestoreMapsGRPCCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code codes.Code
		want error // nil: neither sentinel
	}{
		{codes.Unavailable, registry.ErrUnavailable},
		{codes.ResourceExhausted, registry.ErrUnavailable},
		{codes.Internal, registry.ErrUnavailable},
		{codes.Aborted, registry.ErrUnavailable},
		{codes.DeadlineExceeded, registry.ErrUnavailable},
		{codes.NotFound, registry.ErrNotFound},
		{codes.PermissionDenied, nil},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			t.Parallel()
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			firestorepb.RegisterFirestoreServer(srv, &failingFirestore{code: tc.code})
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
			s := registry.NewFirestore(c)

			// The client retries some codes until the context ends.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err = s.Upsert(ctx, account(alice, registry.StatusConnected))
			if err == nil {
				t.Fatal("no error from a failing server")
			}
			for _, sentinel := range []error{registry.ErrUnavailable, registry.ErrNotFound} {
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
