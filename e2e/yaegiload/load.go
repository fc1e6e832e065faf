// Package yaegiload loads the tokenrevoke plugin the way Traefik v3.6 does: a yaegi
// v0.16.1 interpreter with only the standard library symbols (no unsafe, no syscall),
// the plugin imported from a GOPATH-style tree, New and CreateConfig obtained through
// Eval, and the configuration map decoded with mapstructure (WeaklyTypedInput, the
// comma StringToSlice hook and nothing else).
package yaegiload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"

	"github.com/mitchellh/mapstructure"
	"github.com/tokenrevoke/tokenrevoke/e2e/harness"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// Module is the plugin's module path.
const Module = "github.com/tokenrevoke/tokenrevoke"

// RepoRoot returns the repository root (the plugin module), found from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CopyPlugin copies what Traefik would get from the catalog or plugins-local into
// gopath/src/<module> (see harness.CopyPluginSource).
func CopyPlugin(srcRoot, gopath string) error {
	return harness.CopyPluginSource(srcRoot, filepath.Join(gopath, "src", filepath.FromSlash(Module)))
}

// Plugin is one interpreter holding the plugin, as one Traefik process would.
type Plugin struct {
	Interp       *interp.Interpreter
	fnNew        reflect.Value
	fnCreate     reflect.Value
	gopath       string
	moduleImport string
}

// Options tune Load.
type Options struct {
	// Stdout and Stderr receive what the plugin writes to os.Stdout / os.Stderr (Traefik
	// routes them to its log at DEBUG and ERROR level).
	Stdout, Stderr io.Writer
}

// Load copies the plugin into a fresh GOPATH under dir and imports it into a new
// interpreter.
func Load(dir string, opts Options) (*Plugin, error) {
	if err := CopyPlugin(RepoRoot(), dir); err != nil {
		return nil, fmt.Errorf("copy plugin: %w", err)
	}
	return LoadFrom(dir, Module, "tokenrevoke", opts)
}

// LoadFrom imports the plugin module imp (package basePkg) from GOPATH dir.
func LoadFrom(gopath, imp, basePkg string, opts Options) (*Plugin, error) {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	i := interp.New(interp.Options{GoPath: gopath, Env: os.Environ(), Stdout: opts.Stdout, Stderr: opts.Stderr})
	if err := i.Use(stdlib.Symbols); err != nil {
		return nil, err
	}
	if _, err := i.Eval(fmt.Sprintf("import %q", imp)); err != nil {
		return nil, fmt.Errorf("import %s: %w", imp, err)
	}
	fnNew, err := i.Eval(basePkg + ".New")
	if err != nil {
		return nil, fmt.Errorf("eval New: %w", err)
	}
	fnCreate, err := i.Eval(basePkg + ".CreateConfig")
	if err != nil {
		return nil, fmt.Errorf("eval CreateConfig: %w", err)
	}
	return &Plugin{Interp: i, fnNew: fnNew, fnCreate: fnCreate, gopath: gopath, moduleImport: imp}, nil
}

// New builds a handler from a dynamic-configuration map, as Traefik does for a router.
func (p *Plugin) New(ctx context.Context, next http.Handler, config map[string]interface{}, name string) (http.Handler, error) {
	res := p.fnCreate.Call(nil)
	if len(res) != 1 {
		return nil, fmt.Errorf("CreateConfig returned %d values", len(res))
	}
	cfg := res[0]
	if len(config) > 0 {
		dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			DecodeHook:       mapstructure.StringToSliceHookFunc(","),
			WeaklyTypedInput: true,
			Result:           cfg.Interface(),
		})
		if err != nil {
			return nil, err
		}
		if err := dec.Decode(config); err != nil {
			return nil, fmt.Errorf("failed to decode configuration: %w", err)
		}
	}
	out := p.fnNew.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(next), cfg, reflect.ValueOf(name)})
	if len(out) > 1 && out[1].Interface() != nil {
		if err, ok := out[1].Interface().(error); ok {
			return nil, err
		}
		return nil, fmt.Errorf("New returned a non-error: %v", out[1].Interface())
	}
	h, ok := out[0].Interface().(http.Handler)
	if !ok {
		return nil, fmt.Errorf("New returned %T, not an http.Handler", out[0].Interface())
	}
	return h, nil
}
