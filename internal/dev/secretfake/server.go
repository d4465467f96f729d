package secretfake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// EmulatorHostEnv is the environment variable that points production
// configuration at a running fake (host:port), in the manner of
// PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST.
const EmulatorHostEnv = "SECRET_MANAGER_EMULATOR_HOST"

// ClientOptions returns the options that point a Secret Manager client at a
// fake listening on addr: plaintext gRPC and no credentials, which is safe
// only because the fake listens on a local address.
func ClientOptions(addr string) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Server is a Fake served over gRPC on a TCP listener. The embedded Fake
// gives tests its knobs (FailNext, Calls, CorruptVersion).
type Server struct {
	*Fake

	lis       net.Listener
	grpc      *grpc.Server
	served    chan struct{}
	serveErr  error
	closeOnce sync.Once
}

// Start creates a Fake with opts and serves it on addr; "127.0.0.1:0" picks
// a free port. ctx bounds only the setup: the server runs until Close.
func Start(ctx context.Context, addr string, opts Options) (*Server, error) {
	f, err := New(opts)
	if err != nil {
		return nil, fmt.Errorf("secretfake.Start: %w", err)
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("secretfake.Start: listening on %s: %w", addr, err)
	}
	gs := grpc.NewServer()
	secretmanagerpb.RegisterSecretManagerServiceServer(gs, f)
	s := &Server{Fake: f, lis: lis, grpc: gs, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.serveErr = gs.Serve(lis)
	}()
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// NewClient returns a real Secret Manager client connected to the server.
// The caller closes it.
func (s *Server) NewClient(ctx context.Context) (*secretmanager.Client, error) {
	c, err := secretmanager.NewClient(ctx, ClientOptions(s.Addr())...)
	if err != nil {
		return nil, fmt.Errorf("secretfake.NewClient: %w", err)
	}
	return c, nil
}

// Close stops accepting calls, waits for calls in flight, and releases the
// listener. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(s.grpc.GracefulStop)
	<-s.served
	if s.serveErr != nil && !errors.Is(s.serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("secretfake.Close: %w", s.serveErr)
	}
	return nil
}
