package config

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestAttachments: the sender's by-reference attachment settings default
// to off, take bucket names (trimmed) and refuse anything else, each
// problem naming its variable.
func TestAttachments(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "p", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s"}
	cases := []struct {
		name string
		env  map[string]string
		want Attachments
		errs []string // problems named; none means valid
	}{
		{name: "unset: off", env: map[string]string{}},
		{name: "set", env: map[string]string{"ATTACHMENTS_BUCKET": " gmail-relay-attachments ", "ATTACHMENTS_EXTRA_BUCKETS": "acme-exports, acme.reports_2",
			"ATTACHMENTS_DELETE_AFTER_SEND": "true"},
			want: Attachments{AttachmentsBucket: "gmail-relay-attachments", AttachmentsExtraBuckets: []string{"acme-exports", "acme.reports_2"}, AttachmentsDeleteAfterSend: true}},
		{name: "gs:// prefix", env: map[string]string{"ATTACHMENTS_BUCKET": "gs://gmail-relay-attachments"}, errs: []string{"ATTACHMENTS_BUCKET"}},
		{name: "bad extra bucket", env: map[string]string{"ATTACHMENTS_BUCKET": "ok-bucket", "ATTACHMENTS_EXTRA_BUCKETS": "ok-two,Bad_Bucket"},
			errs: []string{"ATTACHMENTS_EXTRA_BUCKETS", `"Bad_Bucket"`}},
		{name: "extra without own", env: map[string]string{"ATTACHMENTS_EXTRA_BUCKETS": "acme-exports"}, errs: []string{"ATTACHMENTS_BUCKET is empty"}},
		{name: "delete not a bool", env: map[string]string{"ATTACHMENTS_DELETE_AFTER_SEND": "sometimes"}, errs: []string{"ATTACHMENTS_DELETE_AFTER_SEND"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := maps.Clone(base)
			maps.Copy(env, c.env)
			cfg, err := LoadFrom[Sender](context.Background(), MapLookuper(env))
			if len(c.errs) == 0 {
				if err != nil {
					t.Fatalf("valid settings refused: %v", err)
				}
				got := cfg.Attachments
				if got.AttachmentsBucket != c.want.AttachmentsBucket || got.AttachmentsDeleteAfterSend != c.want.AttachmentsDeleteAfterSend ||
					!slices.Equal(got.AttachmentsExtraBuckets, c.want.AttachmentsExtraBuckets) {
					t.Errorf("loaded %+v; want %+v", got, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", c.env)
			}
			for _, w := range c.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}
