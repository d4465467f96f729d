package message

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// recipientHeaders are the fields Gmail's users.messages.send reads
// recipients from ("Sends the specified message to the recipients in the To,
// Cc, and Bcc headers", Gmail API discovery document).
var recipientHeaders = []string{"To", "Cc", "Bcc"}

// singletonHeaders may occur at most once (RFC 5322 §3.6). A second From or
// To is a classic way to show one thing to a filter and another to a reader.
var singletonHeaders = []string{
	"Date", "From", "Reply-To", "To", "Cc", "Bcc",
	"Message-Id", "In-Reply-To", "References", "Subject",
}

// rawHeaders are the fields a raw message may carry besides the custom
// headers a composed request may set (allowedHeader) and the MIME fields
// (Content-*): what the composed path writes, plus Bcc. Anything else is
// refused rather than passed through, because a raw message's publisher
// is an app, not the mailbox's owner: Sender and Resent-* would present
// the message as sent or re-sent by someone else, and headers such as
// Received, Return-Path or DKIM-Signature would forge a trace that
// Gmail's own is meant to be.
var rawHeaders = []string{
	"From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-Id",
	"In-Reply-To", "References", "Mime-Version",
}

// rawHeadersText lists them for messages.
const rawHeadersText = "From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID, In-Reply-To, References, MIME-Version, Content-*, List-Unsubscribe, List-Unsubscribe-Post and X-*"

// CheckRaw checks a complete RFC 5322 message supplied as raw: it is at most
// MaxMessageSize bytes; its header section parses, holds no NUL, no bare CR
// and no space before a colon, has at most one of each RFC 5322 singleton
// field, and only the fields of rawHeaders, Content-* and the composed
// path's custom headers (so no Sender and no Resent-*); From is exactly one
// address, equal to account or one of aliases (its registered send-as
// aliases), ignoring case, with no address in its display name; and To, Cc
// and Bcc hold between one and MaxRecipients addresses in total. It returns
// a *SizeError or a *ValidationError whose problems name "raw". These
// refusals are invalid_request, not forbidden: no app's policy allows them,
// and the publisher, not the operator, must change the message (or, for an
// alias, have it registered).
func CheckRaw(raw []byte, account string, aliases ...string) error {
	if len(raw) > MaxMessageSize {
		return &SizeError{What: "raw message", Size: int64(len(raw)), Limit: MaxMessageSize}
	}
	var p problems
	checkRawInto(&p, raw, &senders{account: account, aliases: aliases})
	return p.err()
}

// checkRawInto adds the problems of raw to p. With s nil the From address is
// parsed but not compared: Validate has no aliases to compare it with.
func checkRawInto(p *problems, raw []byte, s *senders) {
	h, err := readRawHeader(raw)
	if err != nil {
		p.add("raw", "%v", err)
		return
	}
	for _, key := range singletonHeaders {
		if n := len(h.Values(key)); n > 1 {
			p.add("raw", "the %s header appears %d times; RFC 5322 allows it once", key, n)
		}
	}

	p.rawFields(h)

	if !h.Has("From") {
		p.add("raw", "a From header is required")
	} else {
		p.sender(h, "From", s)
	}

	total := 0
	for _, key := range recipientHeaders {
		if !h.Has(key) {
			continue
		}
		list, err := parseRawAddressList(h.Get(key))
		if err != nil {
			p.add("raw", "the %s header does not parse (%v)", key, err)
			continue
		}
		total += len(list)
	}
	switch {
	case total == 0:
		p.add("raw", "no recipients: the message needs a To, Cc or Bcc header with an address")
	case total > MaxRecipients:
		p.add("raw", "%d recipients across To, Cc and Bcc; Gmail allows at most %d per message", total, MaxRecipients)
	}
}

// sender checks that the From header names exactly one address, one that s
// allows unless s is nil, under a display name that does not show another
// address.
func (p *problems) sender(h textproto.Header, key string, s *senders) {
	list, err := parseRawAddressList(h.Get(key))
	if err != nil {
		p.add("raw", "the %s header does not parse (%v)", key, err)
		return
	}
	if len(list) != 1 {
		p.add("raw", "the %s header must hold exactly one address, not %d", key, len(list))
		return
	}
	if s != nil {
		p.sentAs("raw", "the "+key+" address", list[0].Address, *s)
	}
	// Mail clients show the display name, often alone: "CEO
	// (ceo@example.com)" <alice@…> reads as mail from the CEO. The
	// full-width and small at signs look the same to a reader.
	if name := list[0].Name; strings.ContainsAny(name, "@\uff20\ufe6b") {
		p.add("raw", "the %s display name %s contains an address, which readers take for the sender's; use a plain name such as \"Alice at Acme\"", key, quote(name))
	}
}

// rawFields refuses every header field a raw message may not carry, each
// name once.
func (p *problems) rawFields(h textproto.Header) {
	var refused []string
	for f := h.Fields(); f.Next(); {
		key := f.Key()
		if rawFieldAllowed(key) || slices.ContainsFunc(refused, func(r string) bool { return strings.EqualFold(r, key) }) {
			continue
		}
		refused = append(refused, key)
		switch {
		case strings.EqualFold(key, "Sender"):
			p.add("raw", "the Sender header is not allowed: Gmail sends as the account itself, and a Sender names someone else as the one who sent it")
		case len(key) >= 7 && strings.EqualFold(key[:7], "Resent-"):
			p.add("raw", "the %s header is not allowed: Resent-* headers present the message as re-sent by someone else", key)
		default:
			p.add("raw", "the %s header is not allowed: a raw message may carry only %s headers (rename a custom header to X-…)", key, rawHeadersText)
		}
	}
}

func rawFieldAllowed(key string) bool {
	if allowedHeader(key) || (len(key) > 8 && strings.EqualFold(key[:8], "Content-")) {
		return true
	}
	return slices.ContainsFunc(rawHeaders, func(k string) bool { return strings.EqualFold(k, key) })
}

// readRawHeader parses the header section of a raw message. It rejects NUL
// and bare CR there: parsers disagree on where such lines end, which lets a
// message show one header to one reader and another to the next.
func readRawHeader(raw []byte) (textproto.Header, error) {
	if len(raw) == 0 {
		return textproto.Header{}, errors.New("the message is empty")
	}
	end := headerEnd(raw)
	section := raw[:end]
	if i := bytes.IndexByte(section, 0); i >= 0 {
		return textproto.Header{}, errors.New("the header section contains a NUL byte")
	}
	for i := bytes.IndexByte(section, '\r'); i >= 0; {
		if i+1 >= len(section) || section[i+1] != '\n' {
			return textproto.Header{}, errors.New("the header section contains a bare CR (a CR not followed by LF)")
		}
		next := bytes.IndexByte(section[i+1:], '\r')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(section)))
	if err != nil {
		return textproto.Header{}, errors.New("the header section does not parse (" + shorten(err.Error(), 120) + ")")
	}
	// RFC 5322's obsolete syntax allows space before the colon (§4.5.3).
	// go-message trims it and net/mail keeps it in the name, so "From :"
	// would be a From header to one and an unknown one to the other.
	for f := h.Fields(); f.Next(); {
		b, err := f.Raw()
		if err != nil {
			return textproto.Header{}, errors.New("the header section does not parse (" + shorten(err.Error(), 120) + ")")
		}
		if name, _, _ := bytes.Cut(b, []byte(":")); bytes.ContainsAny(name, " \t") {
			return textproto.Header{}, fmt.Errorf("the header field name %s has white space before its colon", quote(string(bytes.TrimSpace(name))))
		}
	}
	return h, nil
}

// headerEnd returns the length of the header section, including the blank
// line that ends it, or len(raw) for a message without a body.
func headerEnd(raw []byte) int {
	switch {
	case bytes.HasPrefix(raw, []byte("\n")):
		return 1
	case bytes.HasPrefix(raw, []byte("\r\n")):
		return 2
	}
	for i := bytes.IndexByte(raw, '\n'); i >= 0 && i+1 < len(raw); {
		rest := raw[i+1:]
		switch {
		case rest[0] == '\n':
			return i + 2
		case len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n':
			return i + 3
		}
		next := bytes.IndexByte(rest, '\n')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return len(raw)
}

// rawWordDecoder reads RFC 2047 display names in any charset as bytes: only
// the addresses matter here, and refusing an unknown charset would refuse a
// valid message.
var rawWordDecoder = &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}

func parseRawAddressList(v string) ([]*mail.Address, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	return (&mail.AddressParser{WordDecoder: rawWordDecoder}).ParseList(v)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
