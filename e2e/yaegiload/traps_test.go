package yaegiload

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
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
	i := interp.New(interp.Options{})
	if err := i.Use(stdlib.Symbols); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Eval(trapProgram); err != nil {
		t.Fatal(err)
	}
	v, err := i.Eval("main.Run()")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.String(); got != "sid," {
		t.Fatalf("yaegi assigned %q (compiled Go: \"sub,x\"): the multiple-assignment defect is gone", got)
	}
}

// TestInterpretedSourceAvoidsMultipleAssignmentTrap: no "a, b = call(), x" in the code
// Traefik interprets (the plugin package and natsclient, tests included: they run
// under yaegi too).
func TestInterpretedSourceAvoidsMultipleAssignmentTrap(t *testing.T) {
	var found []string
	for _, dir := range []string{RepoRoot(), filepath.Join(RepoRoot(), "natsclient")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, multipleAssignmentTraps(fset, af)...)
		}
	}
	if len(found) > 0 {
		t.Fatalf("multiple assignments mixing a call with a plain value (yaegi drops the plain values; split them):\n%s", strings.Join(found, "\n"))
	}
	// The check itself finds the shape.
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, "trap.go", trapProgram, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(multipleAssignmentTraps(fset, af)); n != 2 {
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
