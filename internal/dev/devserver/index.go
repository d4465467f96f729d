package devserver

import (
	"html/template"
	"net/http"
)

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gmail-relay dev</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}code{background:#eff1f3;padding:.1rem .3rem;border-radius:4px}</style>
</head><body>
<h1>gmail-relay, running locally</h1>
<p>Google here is {{if .Real}}<strong>real Google</strong>{{else}}the <strong>sandbox</strong>: consent, tokens and Gmail are simulated on this machine, and sent mail lands in the outbox as <code>.eml</code> files{{end}}.</p>
<ol>
 <li><a href="/authorize">Connect a mailbox</a>{{if not .Real}} (type any address on the sandbox consent page){{end}}.</li>
 <li>Send: <code>make send ACCOUNT=you@example.com TO=bob@example.org</code>, or publish JSON with <code>go run ./scripts/publish &lt; request.json</code> and <code>PUBSUB_EMULATOR_HOST={{.PubSub}}</code>.</li>
 {{if not .Real}}<li>Read what was sent: <a href="/sandbox/">the sandbox outbox</a>, or the files in <code>{{.Outbox}}</code>.</li>{{end}}
</ol>
</body></html>`))

func (s *Server) index(realGoogle bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = indexTmpl.Execute(w, map[string]any{"Real": realGoogle, "PubSub": s.PubSubAddr, "Outbox": s.OutboxDir})
	}
}
