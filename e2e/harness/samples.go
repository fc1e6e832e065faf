package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sample configurations: testdata/ at the root of the plugin repository holds the
// Traefik static and dynamic configurations an operator would copy, the ones the README
// shows. Their addresses are placeholders, replaced by the tests (testdata/README.md):
const (
	// SampleWebAddress is the web entry point's address in the static configurations.
	SampleWebAddress = ":8000"
	// SampleDynamicFile is the file provider's file in the static configurations, less
	// its extension (".yml" in traefik.yml, ".toml" in traefik.toml).
	SampleDynamicFile = "/etc/traefik/dynamic"
	// SampleNATSURL is the NATS server in the dynamic configurations.
	SampleNATSURL = "nats://nats:4222"
	// SampleBackendURL is the backend service in the dynamic configurations.
	SampleBackendURL = "http://backend:8080"
	// SampleName is the gateway's nats.name in the dynamic configurations.
	SampleName = "gw-a"
)

// SampleFile returns testdata/<name> of the plugin repository at root with each key of
// vars replaced by its value. A key that does not occur in the file is an error, so the
// files and the tests that use them cannot drift apart unnoticed.
func SampleFile(root, name string, vars map[string]string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "testdata", name))
	if err != nil {
		return "", err
	}
	text := string(b)
	for k, v := range vars {
		if !strings.Contains(text, k) {
			return "", fmt.Errorf("testdata/%s: placeholder %q not found", name, k)
		}
		text = strings.ReplaceAll(text, k, v)
	}
	return text, nil
}

// SampleConfig makes the harness run Traefik from the sample configuration files of
// testdata/ instead of the configuration it generates (TraefikOptions.Sample).
type SampleConfig struct {
	// Static and Dynamic name the files under testdata/, e.g. "traefik.yml" and
	// "dynamic-jetstream.yml". The harness puts the web entry point's address and the
	// dynamic file's path in place of SampleWebAddress and SampleDynamicFile.
	Static, Dynamic string
	// Vars are further replacements in the dynamic file (see SampleFile), e.g.
	// SampleNATSURL and SampleBackendURL; all of them must occur.
	Vars map[string]string
	// ReadyPath is a path that some router of the dynamic file serves; Traefik is ready
	// when a GET of it is answered with something other than 404 or 502. The sample
	// files enable no ping endpoint and no harness probe router, so WaitReload,
	// WriteDynamic and the admin entry point are not available.
	ReadyPath string
}

// prepareSample writes the static and dynamic configuration of tr.opts.Sample into the
// work directory.
func (tr *Traefik) prepareSample() error {
	s := tr.opts.Sample
	dynExt := filepath.Ext(s.Dynamic)
	tr.dynamicPath = filepath.Join(tr.WorkDir, "dynamic"+dynExt)
	tr.staticPath = filepath.Join(tr.WorkDir, "traefik"+filepath.Ext(s.Static))
	static, err := SampleFile(tr.opts.PluginRoot, s.Static, map[string]string{
		SampleWebAddress:           fmt.Sprintf("127.0.0.1:%d", tr.opts.WebPort),
		SampleDynamicFile + dynExt: tr.dynamicPath,
	})
	if err != nil {
		return err
	}
	dynamic, err := SampleFile(tr.opts.PluginRoot, s.Dynamic, s.Vars)
	if err != nil {
		return err
	}
	if err := os.WriteFile(tr.staticPath, []byte(static), 0o644); err != nil {
		return err
	}
	return os.WriteFile(tr.dynamicPath, []byte(dynamic), 0o644)
}
