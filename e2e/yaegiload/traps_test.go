package yaegiload

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// yaegi v0.16.1 drops part of a plain multiple assignment ("a, b = f(), x"): when one
// right-hand side is a function or method call, the other sides that are an identifier,
// a literal, a selector or an index expression are not assigned (a binary expression or
// a conversion is). A refresh-token rule written that way came out as a session rule
// keyed by the subject under yaegi, and right natively.

// yaegi v0.16.1 also keeps Go's loop variables as they were before Go 1.22: one
// variable for the whole loop, not one per iteration. A closure or a pointer that
// outlives an iteration sees the last value under Traefik, while the same code compiled
// with this module's Go version sees its own iteration's value.
const loopProgram = `package main

func Run() int {
	var fns []func() int
	for i := 0; i < 3; i++ {
		fns = append(fns, func() int { return i })
	}
	return fns[0]() + 10*fns[1]() + 100*fns[2]()
}
`

const trapProgram = `package main

func n() int { return 8 }

type C struct{ Sub string }

func Run() string {
	k, s := 0, "sid"
	k, s = n(), "sub"
	c := C{Sub: "x"}
	var t string
	k, t = n(), c.Sub
	return s + "," + t
}
`

// TestMultipleAssignmentTrapIsReal shows the interpreter the plugin runs in still has
// the defect (if a later yaegi fixes it, this fails and the rule below can go).
func TestMultipleAssignmentTrapIsReal(t *testing.T) {
	if got := evalProgram(t, trapProgram, "main.Run()").String(); got != "sid," {
		t.Fatalf("yaegi assigned %q (compiled Go: \"sub,x\"): the multiple-assignment defect is gone", got)
	}
}

// evalProgram evaluates program in an interpreter set up as Traefik's (standard library
// symbols only), then expr.
func evalProgram(tb testing.TB, program, expr string) reflect.Value {
	tb.Helper()
	i := interp.New(interp.Options{})
	if err := i.Use(stdlib.Symbols); err != nil {
		tb.Fatal(err)
	}
	if _, err := i.Eval(program); err != nil {
		tb.Fatal(err)
	}
	v, err := i.Eval(expr)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// TestLoopVariableTrapIsReal shows the shared loop variable in the interpreter.
func TestLoopVariableTrapIsReal(t *testing.T) {
	if got := evalProgram(t, loopProgram, "main.Run()").Int(); got != 333 {
		t.Fatalf("yaegi gave %d (compiled Go 1.22+: 210, one variable per iteration; 333: one for the loop): the loop-variable difference is gone", got)
	}
}

// TestInterpretedSourceAvoidsLoopVariableCapture: in the code Traefik interprets, no
// closure in plugin code captures a loop variable, and neither plugin code nor tests
// take a loop variable's address or capture it in a go or defer statement (tests may
// capture one in a t.Run body or a helper called within the iteration).
func TestInterpretedSourceAvoidsLoopVariableCapture(t *testing.T) {
	found := scanInterpreted(t, func(fset *token.FileSet, f *ast.File, name string) []string {
		return loopCaptures(fset, f, !strings.HasSuffix(name, "_test.go"))
	})
	if len(found) > 0 {
		t.Fatalf("loop variables that outlive their iteration (under yaegi every iteration shares one; copy the value first):\n%s", strings.Join(found, "\n"))
	}
	if n := len(scanSource(t, loopProgram, func(fset *token.FileSet, f *ast.File) []string { return loopCaptures(fset, f, true) })); n != 1 {
		t.Fatalf("the check found %d of the 1 capture in the sample", n)
	}
}

// scanInterpreted runs check on every Go file Traefik interprets: the plugin package
// and natsclient, tests included (they run under yaegi too).
func scanInterpreted(t *testing.T, check func(fset *token.FileSet, f *ast.File, name string) []string) []string {
	t.Helper()
	var found []string
	for _, dir := range []string{RepoRoot(), filepath.Join(RepoRoot(), "natsclient")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		fset := token.NewFileSet()
		for _, name := range files {
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, check(fset, f, name)...)
		}
	}
	return found
}

// scanSource runs check on one source text (a sample the check must catch).
func scanSource(t *testing.T, src string, check func(fset *token.FileSet, f *ast.File) []string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "sample.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	return check(fset, f)
}

// loopCaptures lists uses of a loop variable (declared by the for or range statement)
// that may outlive the iteration: its address; its use in a function literal under a go
// or defer statement; and, when anyClosure, its use in any function literal.
func loopCaptures(fset *token.FileSet, f *ast.File, anyClosure bool) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		var vars []*ast.Object
		var body *ast.BlockStmt
		switch l := n.(type) {
		case *ast.ForStmt:
			if as, ok := l.Init.(*ast.AssignStmt); ok && as.Tok == token.DEFINE {
				for _, e := range as.Lhs {
					if id, ok := e.(*ast.Ident); ok && id.Obj != nil {
						vars = append(vars, id.Obj)
					}
				}
			}
			body = l.Body
		case *ast.RangeStmt:
			if l.Tok == token.DEFINE {
				for _, e := range []ast.Expr{l.Key, l.Value} {
					if id, ok := e.(*ast.Ident); ok && id.Obj != nil {
						vars = append(vars, id.Obj)
					}
				}
			}
			body = l.Body
		default:
			return true
		}
		isLoopVar := func(x ast.Expr) bool {
			id, ok := x.(*ast.Ident)
			if !ok {
				return false
			}
			for _, v := range vars {
				if id.Obj == v {
					return true
				}
			}
			return false
		}
		usesLoopVar := func(fl *ast.FuncLit) bool {
			uses := false
			ast.Inspect(fl.Body, func(k ast.Node) bool {
				if x, ok := k.(ast.Expr); ok && isLoopVar(x) {
					uses = true
				}
				return !uses
			})
			return uses
		}
		if len(vars) == 0 {
			return true
		}
		var walk func(m ast.Node, deferred bool)
		walk = func(m ast.Node, deferred bool) {
			ast.Inspect(m, func(k ast.Node) bool {
				switch e := k.(type) {
				case *ast.GoStmt:
					walk(e.Call, true)
					return false
				case *ast.DeferStmt:
					walk(e.Call, true)
					return false
				case *ast.FuncLit:
					if (deferred || anyClosure) && usesLoopVar(e) {
						out = append(out, fset.Position(e.Pos()).String()+" (closure)")
						return false
					}
				case *ast.UnaryExpr:
					if e.Op == token.AND && isLoopVar(e.X) {
						out = append(out, fset.Position(e.Pos()).String()+" (address)")
					}
				}
				return true
			})
		}
		walk(body, false)
		return true
	})
	return out
}

// TestInterpretedSourceAvoidsMultipleAssignmentTrap: no "a, b = call(), x" in the code
// Traefik interprets (the plugin package and natsclient, tests included: they run
// under yaegi too).
func TestInterpretedSourceAvoidsMultipleAssignmentTrap(t *testing.T) {
	found := scanInterpreted(t, func(fset *token.FileSet, f *ast.File, _ string) []string {
		return multipleAssignmentTraps(fset, f)
	})
	if len(found) > 0 {
		t.Fatalf("multiple assignments mixing a call with a plain value (yaegi drops the plain values; split them):\n%s", strings.Join(found, "\n"))
	}
	if n := len(scanSource(t, trapProgram, multipleAssignmentTraps)); n != 2 {
		t.Fatalf("the check found %d of the 2 traps in the sample", n)
	}
}

func multipleAssignmentTraps(fset *token.FileSet, f *ast.File) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || as.Tok != token.ASSIGN || len(as.Lhs) < 2 || len(as.Rhs) != len(as.Lhs) {
			return true
		}
		calls, plain := 0, 0
		for _, r := range as.Rhs {
			switch e := r.(type) {
			case *ast.CallExpr:
				if !isConversion(e) {
					calls++
				}
			case *ast.Ident, *ast.BasicLit, *ast.SelectorExpr, *ast.IndexExpr, *ast.ParenExpr, *ast.StarExpr, *ast.CompositeLit:
				plain++
			}
		}
		if calls > 0 && plain > 0 {
			out = append(out, fset.Position(as.Pos()).String())
		}
		return true
	})
	return out
}

// isConversion recognizes the conversions the plugin uses (to a predeclared type or a
// []byte): yaegi assigns those correctly.
func isConversion(c *ast.CallExpr) bool {
	switch fn := c.Fun.(type) {
	case *ast.Ident:
		switch fn.Name {
		case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
			"float32", "float64", "string", "byte", "rune", "bool":
			return true
		}
	case *ast.ArrayType:
		return true
	}
	return false
}
