// Command sample prints a sample send request as JSON, for `make send`.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	account := flag.String("account", "", "connected mailbox to send from")
	to := flag.String("to", "", "recipient")
	subject := flag.String("subject", "Hello from gmail-relay", "subject")
	flag.Parse()
	if *account == "" || *to == "" {
		fmt.Fprintln(os.Stderr, "sample: -account and -to are required")
		os.Exit(2)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	req := map[string]any{
		"account":   *account,
		"from_name": "gmail-relay sample",
		"to":        []string{*to},
		"subject":   *subject,
		"text":      "This message was sent through gmail-relay at " + now + ".",
		"html":      "<p>This message was sent through <b>gmail-relay</b> at " + now + ".</p>",
		"headers":   map[string]string{"X-Gmail-Relay-Sample": "1"},
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		fmt.Fprintln(os.Stderr, "sample:", err)
		os.Exit(1)
	}
}
