package secretfake

import (
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file implements the subset of the list-filter language
// (https://cloud.google.com/secret-manager/docs/filtering, AIP-160) that
// Secret Manager documents for secrets and versions:
//
//	name:mysecret  name:APIKEY*production  labels.environment=production
//	labels.environment:*  create_time<2021-01-01T06:00:00Z
//	replication.automatic:*  replication.user_managed.replicas.location:us-east1
//	state:ENABLED (versions)
//
// combined with AND, OR, NOT, "-" and parentheses. As in AIP-160, OR binds
// tighter than AND, and juxtaposed terms are ANDed. Anything else is rejected
// with InvalidArgument rather than silently matching, so that code relying on
// an unsupported form fails here before it fails against Google.

type resourceKind int

const (
	kindSecret resourceKind = iota
	kindVersion
)

// filterTarget is the flattened view of one resource that restrictions test.
type filterTarget struct {
	id          string // secret ID, or version number
	fullName    string
	createTime  time.Time
	labels      map[string]string
	automatic   bool
	userManaged bool
	locations   []string
	state       string
}

func secretTarget(s *secretmanagerpb.Secret) filterTarget {
	t := filterTarget{
		fullName:   s.GetName(),
		id:         s.GetName()[strings.LastIndex(s.GetName(), "/")+1:],
		createTime: s.GetCreateTime().AsTime(),
		labels:     s.GetLabels(),
	}
	switch r := s.GetReplication().GetReplication().(type) {
	case *secretmanagerpb.Replication_Automatic_:
		t.automatic = true
	case *secretmanagerpb.Replication_UserManaged_:
		t.userManaged = true
		for _, rep := range r.UserManaged.GetReplicas() {
			t.locations = append(t.locations, rep.GetLocation())
		}
	}
	return t
}

func versionTarget(v *secretmanagerpb.SecretVersion) filterTarget {
	return filterTarget{
		fullName:   v.GetName(),
		id:         v.GetName()[strings.LastIndex(v.GetName(), "/")+1:],
		createTime: v.GetCreateTime().AsTime(),
		state:      v.GetState().String(),
	}
}

type filterNode func(filterTarget) bool

func matchAll(filterTarget) bool { return true }

// parseFilter compiles a filter string; the empty filter matches everything.
func parseFilter(s string, kind resourceKind) (filterNode, error) {
	p := &filterParser{src: s, kind: kind}
	p.skipSpace()
	if p.eof() {
		return matchAll, nil
	}
	n, err := p.expression()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		return nil, p.errorf("unexpected %q", p.src[p.pos:])
	}
	return n, nil
}

type filterParser struct {
	src  string
	pos  int
	kind resourceKind
}

func (p *filterParser) errorf(format string, args ...any) error {
	args = append([]any{p.src, p.pos}, args...)
	return status.Errorf(codes.InvalidArgument, "Invalid filter [%s] at offset %d: "+format, args...)
}

func (p *filterParser) eof() bool { return p.pos >= len(p.src) }

func (p *filterParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *filterParser) skipSpace() {
	for !p.eof() && isSpace(p.src[p.pos]) {
		p.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// keyword consumes kw when it stands alone at the cursor.
func (p *filterParser) keyword(kw string) bool {
	if !strings.HasPrefix(p.src[p.pos:], kw) {
		return false
	}
	end := p.pos + len(kw)
	if end < len(p.src) && !isSpace(p.src[end]) && p.src[end] != '(' {
		return false
	}
	p.pos = end
	return true
}

func (p *filterParser) atKeyword(kw string) bool {
	save := p.pos
	ok := p.keyword(kw)
	p.pos = save
	return ok
}

// expression := sequence { "AND" sequence }
func (p *filterParser) expression() (filterNode, error) {
	left, err := p.sequence()
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		if !p.keyword("AND") {
			return left, nil
		}
		right, err := p.sequence()
		if err != nil {
			return nil, err
		}
		left = and(left, right)
	}
}

// sequence := factor { factor }
func (p *filterParser) sequence() (filterNode, error) {
	left, err := p.factor()
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		if p.eof() || p.peek() == ')' || p.atKeyword("AND") {
			return left, nil
		}
		right, err := p.factor()
		if err != nil {
			return nil, err
		}
		left = and(left, right)
	}
}

// factor := term { "OR" term }
func (p *filterParser) factor() (filterNode, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		if !p.keyword("OR") {
			return left, nil
		}
		right, err := p.term()
		if err != nil {
			return nil, err
		}
		left = or(left, right)
	}
}

// term := [ "NOT" | "-" ] simple
func (p *filterParser) term() (filterNode, error) {
	p.skipSpace()
	negate := false
	if p.keyword("NOT") {
		negate = true
	} else if p.peek() == '-' {
		p.pos++
		negate = true
	}
	n, err := p.simple()
	if err != nil {
		return nil, err
	}
	if negate {
		return not(n), nil
	}
	return n, nil
}

// simple := "(" expression ")" | restriction
func (p *filterParser) simple() (filterNode, error) {
	p.skipSpace()
	if p.eof() {
		return nil, p.errorf("expected a restriction")
	}
	if p.peek() == '(' {
		p.pos++
		n, err := p.expression()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.peek() != ')' {
			return nil, p.errorf("expected )")
		}
		p.pos++
		return n, nil
	}
	if p.atKeyword("AND") || p.atKeyword("OR") {
		return nil, p.errorf("expected a restriction")
	}
	return p.restriction()
}

func (p *filterParser) restriction() (filterNode, error) {
	start := p.pos
	for !p.eof() && !isSpace(p.peek()) && !strings.ContainsRune(":=!<>()\"", rune(p.peek())) {
		p.pos++
	}
	field := p.src[start:p.pos]
	if field == "" {
		return nil, p.errorf("expected a field name")
	}
	p.skipSpace()
	op := ""
	for _, candidate := range []string{"!=", "<=", ">=", ":", "=", "<", ">"} {
		if strings.HasPrefix(p.src[p.pos:], candidate) {
			op = candidate
			break
		}
	}
	if op == "" {
		return nil, p.errorf("bare value %q is not supported; use field:value", field)
	}
	p.pos += len(op)
	p.skipSpace()
	value, err := p.value()
	if err != nil {
		return nil, err
	}
	return p.build(field, op, value)
}

func (p *filterParser) value() (string, error) {
	if p.peek() == '"' {
		p.pos++
		var b strings.Builder
		for !p.eof() {
			c := p.src[p.pos]
			p.pos++
			switch c {
			case '\\':
				if p.eof() {
					return "", p.errorf("unterminated string")
				}
				b.WriteByte(p.src[p.pos])
				p.pos++
			case '"':
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", p.errorf("unterminated string")
	}
	start := p.pos
	for !p.eof() && !isSpace(p.peek()) && p.peek() != '(' && p.peek() != ')' {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("expected a value")
	}
	return p.src[start:p.pos], nil
}

func (p *filterParser) build(field, op, value string) (filterNode, error) {
	unsupportedOp := func() error { return p.errorf("operator %s is not supported on field %s", op, field) }
	switch {
	case field == "name":
		return stringRestriction(op, value, func(t filterTarget) []string { return []string{t.id} },
			func(t filterTarget, v string) bool { return v == t.id || v == t.fullName }, unsupportedOp)
	case field == "create_time":
		when, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			return nil, p.errorf("create_time needs an RFC 3339 timestamp, got %q", value)
		}
		return timeRestriction(op, when, unsupportedOp)
	case p.kind == kindSecret && strings.HasPrefix(field, "labels."):
		key := strings.TrimPrefix(field, "labels.")
		if key == "" {
			return nil, p.errorf("labels needs a key, as in labels.env")
		}
		get := func(t filterTarget) []string {
			if v, ok := t.labels[key]; ok {
				return []string{v}
			}
			return nil
		}
		if op == ":" && value == "*" {
			return func(t filterTarget) bool { _, ok := t.labels[key]; return ok }, nil
		}
		return stringRestriction(op, value, get, func(t filterTarget, v string) bool {
			got, ok := t.labels[key]
			return ok && got == v
		}, unsupportedOp)
	case p.kind == kindSecret && (field == "replication.automatic" || field == "replication.user_managed"):
		if op != ":" || value != "*" {
			return nil, p.errorf("%s supports only %s:*", field, field)
		}
		if field == "replication.automatic" {
			return func(t filterTarget) bool { return t.automatic }, nil
		}
		return func(t filterTarget) bool { return t.userManaged }, nil
	case p.kind == kindSecret && field == "replication.user_managed.replicas.location":
		return stringRestriction(op, value, func(t filterTarget) []string { return t.locations },
			func(t filterTarget, v string) bool {
				for _, l := range t.locations {
					if l == v {
						return true
					}
				}
				return false
			}, unsupportedOp)
	case p.kind == kindVersion && field == "state":
		want := strings.ToUpper(value)
		if _, ok := secretmanagerpb.SecretVersion_State_value[want]; !ok || want == "STATE_UNSPECIFIED" {
			return nil, p.errorf("unknown state %q; use ENABLED, DISABLED or DESTROYED", value)
		}
		switch op {
		case ":", "=":
			return func(t filterTarget) bool { return t.state == want }, nil
		case "!=":
			return func(t filterTarget) bool { return t.state != want }, nil
		}
		return nil, unsupportedOp()
	}
	return nil, p.errorf("unsupported field %q", field)
}

// stringRestriction implements ":" (case-insensitive "has", with * as a
// wildcard and a lone * meaning "present"), "=" and "!=".
func stringRestriction(op, value string, values func(filterTarget) []string,
	equals func(filterTarget, string) bool, unsupported func() error,
) (filterNode, error) {
	switch op {
	case ":":
		if value == "*" {
			return func(t filterTarget) bool {
				for _, v := range values(t) {
					if v != "" {
						return true
					}
				}
				return false
			}, nil
		}
		parts := strings.Split(value, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re := regexp.MustCompile("(?i)" + strings.Join(parts, ".*"))
		return func(t filterTarget) bool {
			for _, v := range values(t) {
				if re.MatchString(v) {
					return true
				}
			}
			return false
		}, nil
	case "=":
		return func(t filterTarget) bool { return equals(t, value) }, nil
	case "!=":
		return func(t filterTarget) bool { return !equals(t, value) }, nil
	}
	return nil, unsupported()
}

func timeRestriction(op string, when time.Time, unsupported func() error) (filterNode, error) {
	switch op {
	case "=":
		return func(t filterTarget) bool { return t.createTime.Equal(when) }, nil
	case "!=":
		return func(t filterTarget) bool { return !t.createTime.Equal(when) }, nil
	case "<":
		return func(t filterTarget) bool { return t.createTime.Before(when) }, nil
	case "<=":
		return func(t filterTarget) bool { return !t.createTime.After(when) }, nil
	case ">":
		return func(t filterTarget) bool { return t.createTime.After(when) }, nil
	case ">=":
		return func(t filterTarget) bool { return !t.createTime.Before(when) }, nil
	}
	return nil, unsupported()
}

func and(a, b filterNode) filterNode { return func(t filterTarget) bool { return a(t) && b(t) } }
func or(a, b filterNode) filterNode  { return func(t filterTarget) bool { return a(t) || b(t) } }
func not(a filterNode) filterNode    { return func(t filterTarget) bool { return !a(t) } }
