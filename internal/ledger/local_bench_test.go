package ledger_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gmailrelay/gmailrelay/internal/ledger"
)

// BenchmarkLocalClaimFinish is the ledger's share of one message in make
// dev: a Claim of a fresh key, then its Finish, both persisted.
func BenchmarkLocalClaimFinish(b *testing.B) {
	ctx := context.Background()
	l, err := ledger.NewLocal(filepath.Join(b.TempDir(), "sends.json"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := "bench/" + strconv.Itoa(i)
		i++
		if _, _, err := l.Claim(ctx, id(key), ledger.ClaimRequest{PubSubMessageID: key, Lease: time.Minute, Now: now}); err != nil {
			b.Fatal(err)
		}
		if err := l.Finish(ctx, id(key), ledger.Finish{State: ledger.StateSent, GmailMessageID: "g-" + key, GmailThreadID: "t-" + key, Now: now}); err != nil {
			b.Fatal(err)
		}
	}
}
