package yaegiload

import (
	"fmt"

	"github.com/traefik/paerser/file"
)

// dynamicFile is the part of Traefik's dynamic configuration (pkg/config/dynamic) that
// PluginConfig reads. Routers and services are kept raw; a middleware's plugin
// configuration has the type Traefik gives it (dynamic.PluginConf, map[string]any), so
// the decoder hands over the same map Traefik does.
type dynamicFile struct {
	HTTP *struct {
		Routers     map[string]interface{}
		Services    map[string]interface{}
		Middlewares map[string]*struct {
			Plugin map[string]map[string]interface{}
		}
	}
}

// PluginConfig decodes a Traefik dynamic configuration (text, in the format its file
// extension ext names: ".yml", ".yaml" or ".toml") with the decoder of Traefik's file
// provider (github.com/traefik/paerser, the version Traefik v3.6.12 uses) and returns the
// configuration of plugin in middleware: the map Traefik decodes into the value the
// plugin's CreateConfig returned (see Plugin.New).
func PluginConfig(text, ext, middleware, plugin string) (map[string]interface{}, error) {
	var cfg dynamicFile
	if err := file.DecodeContent(text, ext, &cfg); err != nil {
		return nil, err
	}
	if cfg.HTTP == nil || cfg.HTTP.Middlewares[middleware] == nil {
		return nil, fmt.Errorf("no middleware %q", middleware)
	}
	conf, ok := cfg.HTTP.Middlewares[middleware].Plugin[plugin]
	if !ok {
		return nil, fmt.Errorf("middleware %q has no plugin %q", middleware, plugin)
	}
	return conf, nil
}
