package infracheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Module is the parsed configuration of one Terraform directory.
type Module struct {
	// Dir is the directory the .tf files were read from.
	Dir    string
	files  map[string]*hclsyntax.Body
	blocks []*Block
	locals map[string]hclsyntax.Expression
}

// Block is a top-level block (resource, variable, output, ...) of a file.
type Block struct {
	*hclsyntax.Block
	File string
}

// Load parses every .tf file in dir. A syntax error is an error: a file HCL
// cannot read would make every check meaningless.
func Load(dir string) (*Module, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no .tf files in %s", dir)
	}
	slices.Sort(paths)
	p := hclparse.NewParser()
	m := &Module{Dir: dir, files: map[string]*hclsyntax.Body{}, locals: map[string]hclsyntax.Expression{}}
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f, diags := p.ParseHCL(src, path)
		if diags.HasErrors() {
			return nil, fmt.Errorf("parsing %s: %s", path, diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		name := filepath.Base(path)
		m.files[name] = body
		for _, b := range body.Blocks {
			m.blocks = append(m.blocks, &Block{Block: b, File: name})
			if b.Type == "locals" {
				for n, a := range b.Body.Attributes {
					if _, dup := m.locals[n]; dup {
						return nil, fmt.Errorf("%s: local.%s is defined twice", name, n)
					}
					m.locals[n] = a.Expr
				}
			}
		}
	}
	return m, nil
}

// blocksOf returns the top-level blocks of a type ("variable", "output", ...).
func (m *Module) blocksOf(typ string) []*Block {
	var out []*Block
	for _, b := range m.blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// resources returns the resource blocks of one resource type.
func (m *Module) resources(typ string) []*Block {
	var out []*Block
	for _, b := range m.blocksOf("resource") {
		if len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

// resource returns the resource typ.name, or nil.
func (m *Module) resource(typ, name string) *Block {
	for _, b := range m.resources(typ) {
		if b.Labels[1] == name {
			return b
		}
	}
	return nil
}

// where names a block's position for messages.
func (b *Block) where() string {
	return fmt.Sprintf("%s:%d %s", b.File, b.DefRange().Start.Line, strings.Join(append([]string{b.Type}, b.Labels...), "."))
}

// attr returns the expression of the attribute name in body, or nil.
func attr(body *hclsyntax.Body, name string) hclsyntax.Expression {
	if body == nil {
		return nil
	}
	if a, ok := body.Attributes[name]; ok {
		return a.Expr
	}
	return nil
}

// children returns the nested blocks of one type.
func children(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	if body == nil {
		return nil
	}
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// nested follows a path of nested block types, taking the first block of
// each type, and returns the innermost body or nil.
func nested(body *hclsyntax.Body, path ...string) *hclsyntax.Body {
	for _, typ := range path {
		bs := children(body, typ)
		if len(bs) == 0 {
			return nil
		}
		body = bs[0].Body
	}
	return body
}

// literal evaluates an expression that refers to nothing.
func literal(e hclsyntax.Expression) (cty.Value, bool) {
	if e == nil || len(e.Variables()) > 0 {
		return cty.NilVal, false
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() {
		return cty.NilVal, false
	}
	return v, true
}

// literalString returns the value of a constant string expression.
func literalString(e hclsyntax.Expression) (string, bool) {
	v, ok := literal(e)
	if !ok || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

// literalNumber returns the value of a constant number or numeric string.
func literalNumber(e hclsyntax.Expression) (float64, bool) {
	v, ok := literal(e)
	if !ok {
		return 0, false
	}
	if v.Type() == cty.String {
		var f float64
		if _, err := fmt.Sscanf(v.AsString(), "%g", &f); err != nil {
			return 0, false
		}
		return f, true
	}
	if v.Type() != cty.Number {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

// steps returns a traversal as its root name followed by its attribute
// names; index steps appear as "[]".
func steps(t hcl.Traversal) []string {
	var out []string
	for _, s := range t {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			out = append(out, s.Name)
		case hcl.TraverseAttr:
			out = append(out, s.Name)
		default:
			out = append(out, "[]")
		}
	}
	return out
}

// referenced returns the names of the resources of type typ that e refers to.
func referenced(e hclsyntax.Expression, typ string) []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, t := range e.Variables() {
		s := steps(t)
		if len(s) >= 2 && s[0] == typ && !slices.Contains(out, s[1]) {
			out = append(out, s[1])
		}
	}
	return out
}

// referencedInBody returns the names of the resources of type typ that any
// attribute of body (or of its nested blocks) refers to.
func referencedInBody(body *hclsyntax.Body, typ string) []string {
	var out []string
	for _, a := range body.Attributes {
		for _, n := range referenced(a.Expr, typ) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	for _, b := range body.Blocks {
		for _, n := range referencedInBody(b.Body, typ) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// stringsIn returns every string literal in e, including those inside
// templates, following references to locals.
func (m *Module) stringsIn(e hclsyntax.Expression) []string {
	var out []string
	m.collectStrings(e, &out, 0)
	return out
}

func (m *Module) collectStrings(e hclsyntax.Expression, out *[]string, depth int) {
	if e == nil || depth > 10 {
		return
	}
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		switch n := n.(type) {
		case *hclsyntax.LiteralValueExpr:
			if n.Val.Type() == cty.String && n.Val.IsKnown() && !n.Val.IsNull() {
				*out = append(*out, n.Val.AsString())
			}
		case *hclsyntax.ScopeTraversalExpr:
			s := steps(n.Traversal)
			if len(s) >= 2 && s[0] == "local" {
				m.collectStrings(m.locals[s[1]], out, depth+1)
			}
		}
		return nil
	})
}

// objectKeys returns the keys of an object built from object literals,
// merge() and references to locals, without evaluating anything else.
func (m *Module) objectKeys(e hclsyntax.Expression) ([]string, error) {
	var keys []string
	err := m.eachItem(e, func(key string, _ hclsyntax.Expression) { keys = append(keys, key) })
	return keys, err
}

// objectValue returns the expression that key has in such an object, the
// last one winning as in merge(); nil if key is not there.
func (m *Module) objectValue(e hclsyntax.Expression, key string) (hclsyntax.Expression, error) {
	var found hclsyntax.Expression
	err := m.eachItem(e, func(k string, v hclsyntax.Expression) {
		if k == key {
			found = v
		}
	})
	return found, err
}

// eachItem calls f on every key and value of such an object, in merge()
// order.
func (m *Module) eachItem(e hclsyntax.Expression, f func(key string, value hclsyntax.Expression)) error {
	return m.eachItemDepth(e, f, 0)
}

func (m *Module) eachItemDepth(e hclsyntax.Expression, f func(string, hclsyntax.Expression), depth int) error {
	if depth > 10 {
		return fmt.Errorf("locals nest too deeply")
	}
	switch e := e.(type) {
	case *hclsyntax.ObjectConsExpr:
		for _, item := range e.Items {
			v, diags := item.KeyExpr.Value(nil)
			if diags.HasErrors() || v.Type() != cty.String {
				return fmt.Errorf("object key at %s is not a constant", item.KeyExpr.Range())
			}
			f(v.AsString(), item.ValueExpr)
		}
		return nil
	case *hclsyntax.FunctionCallExpr:
		if e.Name != "merge" {
			return fmt.Errorf("%s(...) at %s cannot be read without evaluating it", e.Name, e.Range())
		}
		for _, a := range e.Args {
			if err := m.eachItemDepth(a, f, depth+1); err != nil {
				return err
			}
		}
		return nil
	case *hclsyntax.ScopeTraversalExpr:
		s := steps(e.Traversal)
		if len(s) == 2 && s[0] == "local" {
			local, ok := m.locals[s[1]]
			if !ok {
				return fmt.Errorf("local.%s is not defined", s[1])
			}
			return m.eachItemDepth(local, f, depth+1)
		}
		return fmt.Errorf("%s at %s cannot be read without evaluating it", strings.Join(s, "."), e.Range())
	case *hclsyntax.ParenthesesExpr:
		return m.eachItemDepth(e.Expression, f, depth+1)
	case *hclsyntax.ConditionalExpr:
		// Both branches: every key a deployment may get (local.delegation_env
		// is empty without delegated_domains).
		if err := m.eachItemDepth(e.TrueResult, f, depth+1); err != nil {
			return err
		}
		return m.eachItemDepth(e.FalseResult, f, depth+1)
	}
	return fmt.Errorf("expression at %s is not an object literal, merge(), a conditional or a local", e.Range())
}

// render writes an expression as text: literal parts as they are, topic
// names resolved to their literal name, locals expanded, and any other
// reference as {reference}.
func (m *Module) render(e hclsyntax.Expression) string {
	return m.renderDepth(e, 0)
}

func (m *Module) renderDepth(e hclsyntax.Expression, depth int) string {
	if depth > 10 {
		return "{...}"
	}
	switch e := e.(type) {
	case *hclsyntax.TemplateExpr:
		var b strings.Builder
		for _, p := range e.Parts {
			b.WriteString(m.renderDepth(p, depth+1))
		}
		return b.String()
	case *hclsyntax.TemplateWrapExpr:
		return m.renderDepth(e.Wrapped, depth+1)
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type() == cty.String {
			return e.Val.AsString()
		}
	case *hclsyntax.ScopeTraversalExpr:
		s := steps(e.Traversal)
		if len(s) == 2 && s[0] == "local" {
			if local, ok := m.locals[s[1]]; ok {
				return m.renderDepth(local, depth+1)
			}
		}
		if len(s) == 3 && s[0] == "google_pubsub_topic" && s[2] == "name" {
			if t := m.resource(s[0], s[1]); t != nil {
				if name, ok := literalString(attr(t.Body, "name")); ok {
					return name
				}
			}
		}
		return "{" + traversalString(e.Traversal) + "}"
	}
	return "{expression}"
}

// objectItem returns the expression that an object built from object
// literals, merge() and locals holds under key (merge's last argument wins).
func (m *Module) objectItem(e hclsyntax.Expression, key string) (hclsyntax.Expression, bool) {
	return m.objectItemDepth(e, key, 0)
}

func (m *Module) objectItemDepth(e hclsyntax.Expression, key string, depth int) (hclsyntax.Expression, bool) {
	if depth > 10 {
		return nil, false
	}
	switch e := e.(type) {
	case *hclsyntax.ObjectConsExpr:
		var found hclsyntax.Expression
		for _, item := range e.Items {
			if v, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String && v.AsString() == key {
				found = item.ValueExpr
			}
		}
		return found, found != nil
	case *hclsyntax.FunctionCallExpr:
		if e.Name != "merge" {
			return nil, false
		}
		for i := len(e.Args) - 1; i >= 0; i-- {
			if v, ok := m.objectItemDepth(e.Args[i], key, depth+1); ok {
				return v, true
			}
		}
	case *hclsyntax.ScopeTraversalExpr:
		if s := steps(e.Traversal); len(s) == 2 && s[0] == "local" {
			return m.objectItemDepth(m.locals[s[1]], key, depth+1)
		}
	case *hclsyntax.ParenthesesExpr:
		return m.objectItemDepth(e.Expression, key, depth+1)
	}
	return nil, false
}

// traversalString writes a traversal the way it appears in source, with
// index steps as [].
func traversalString(t hcl.Traversal) string {
	var b strings.Builder
	for i, s := range steps(t) {
		switch {
		case s == "[]":
			b.WriteString(s)
		case i > 0:
			b.WriteString("." + s)
		default:
			b.WriteString(s)
		}
	}
	return b.String()
}
