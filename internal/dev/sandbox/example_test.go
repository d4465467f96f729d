package sandbox_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"net/http/httptest"
	"os"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailrelay/gmailrelay/internal/dev/sandbox"
)

// The whole connect-and-send path against the sandbox, with the same client
// libraries the relay uses against Google.
func Example() {
	dir, err := os.MkdirTemp("", "sandbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sb, err := sandbox.New(sandbox.Options{StateDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()

	redirect := "http://localhost:8080/confirm"
	if err := sb.RegisterClient(sandbox.Client{ID: sandbox.DevClientID, Secret: sandbox.DevClientSecret, RedirectURIs: []string{redirect}}); err != nil {
		log.Fatal(err)
	}
	cfg := &oauth2.Config{
		ClientID:     sandbox.DevClientID,
		ClientSecret: sandbox.DevClientSecret,
		RedirectURL:  redirect,
		Scopes:       []string{"openid", "email", sandbox.ScopeGmailSend},
		Endpoint:     oauth2.Endpoint{AuthURL: srv.URL + sandbox.AuthPath, TokenURL: srv.URL + sandbox.TokenPath, AuthStyle: oauth2.AuthStyleInParams},
	}

	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("state-1", oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier))
	loc, err := sandbox.Consent(ctx, srv.Client(), authURL, "alice@example.com")
	if err != nil {
		log.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		log.Fatal(err)
	}

	svc, err := gmail.NewService(ctx, option.WithEndpoint(srv.URL+"/"), option.WithHTTPClient(cfg.Client(ctx, tok)))
	if err != nil {
		log.Fatal(err)
	}
	raw := "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: Hello\r\n\r\nHi Bob.\r\n"
	if _, err := svc.Users.Messages.Send("me", &gmail.Message{Raw: base64.URLEncoding.EncodeToString([]byte(raw))}).Do(); err != nil {
		log.Fatal(err)
	}

	out := sb.Outbox()
	fmt.Println(loc.Query().Get("state"), tok.RefreshToken != "", len(out), out[0].Email, out[0].Size)
	// Output: state-1 true 1 alice@example.com 73
}
