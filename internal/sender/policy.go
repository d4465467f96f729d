package sender

import (
	"context"

	"github.com/gmailrelay/gmailrelay/internal/account"
	"github.com/gmailrelay/gmailrelay/internal/gmail"
	"github.com/gmailrelay/gmailrelay/internal/ledger"
	"github.com/gmailrelay/gmailrelay/internal/logging"
	"github.com/gmailrelay/gmailrelay/internal/message"
	"github.com/gmailrelay/gmailrelay/internal/policy"
	"github.com/gmailrelay/gmailrelay/internal/results"
)

// authorize resolves the delivery's app into d.App and applies its policy
// and the allow-list (DESIGN §7). It runs before the ledger is touched: a
// refused request claims nothing, so a publisher cannot use requests it
// may not send to occupy keys, and a redelivery is refused the same way.
// A request that did not decode is checked on its app and account alone;
// it then fails as invalid_request.
func (s *Sender) authorize(d *Delivery, req *message.Request, acct string) *policy.Refusal {
	app, r := s.opts.Policy.App(d.Subscription, d.App)
	if r != nil {
		d.App = r.App
		return r
	}
	d.App = app.Name
	pr := policy.Request{Account: account.Normalize(acct), Recipients: -1}
	if req != nil {
		pr.Raw = len(req.Raw) > 0
		pr.Recipients = len(req.Recipients())
	}
	return s.opts.Policy.Check(app, pr)
}

// refuse reports a refused request as a permanent forbidden failure and
// acknowledges it. Nothing was claimed, so nothing is recorded.
func (j *job) refuse(ctx context.Context, r *policy.Refusal) error {
	j.rec = &ledger.Record{}
	logging.FromContext(ctx).WarnContext(ctx, "send refused by policy", "app", r.App, "rule", r.Rule, "detail", r.Message)
	return j.publish(ctx, &results.Event{Status: results.StatusFailed,
		Error: &results.Error{Code: string(gmail.CodeForbidden), Message: r.Message}})
}
