package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ToYAML renders a tree of maps, slices and scalars (anything encoding/json accepts) as
// block-style YAML. Strings are always double-quoted with JSON escaping, which YAML
// reads the same way, so no value can be mistaken for another type.
func ToYAML(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return "", err
	}
	var b strings.Builder
	switch tree.(type) {
	case map[string]any, []any:
		emitBlock(&b, tree, 0)
	default:
		b.WriteString(scalar(tree))
		b.WriteString("\n")
	}
	return b.String(), nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func yamlKey(k string) string {
	if plainKey.MatchString(k) {
		return k
	}
	q, _ := json.Marshal(k)
	return string(q)
}

func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case json.Number:
		return x.String()
	case string:
		q, _ := json.Marshal(x)
		return string(q)
	default:
		return fmt.Sprint(x)
	}
}

// emitBlock writes a map or slice whose entries start at the given indent.
func emitBlock(b *strings.Builder, v any, indent int) {
	pad := strings.Repeat(" ", indent)
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(pad + yamlKey(k) + ":")
			emitValue(b, x[k], indent)
		}
	case []any:
		for _, item := range x {
			switch it := item.(type) {
			case map[string]any:
				if len(it) == 0 {
					b.WriteString(pad + "- {}\n")
					continue
				}
				// Render the map one level deeper, then put the dash on its first line.
				var sub strings.Builder
				emitBlock(&sub, it, indent+2)
				s := sub.String()
				b.WriteString(pad + "- " + s[indent+2:])
			case []any:
				if len(it) == 0 {
					b.WriteString(pad + "- []\n")
					continue
				}
				b.WriteString(pad + "-\n")
				emitBlock(b, it, indent+2)
			default:
				b.WriteString(pad + "- " + scalar(it) + "\n")
			}
		}
	}
}

// emitValue writes what follows "key:" for an entry at the given indent.
func emitValue(b *strings.Builder, v any, indent int) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return
		}
		b.WriteString("\n")
		emitBlock(b, x, indent+2)
	case []any:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return
		}
		b.WriteString("\n")
		emitBlock(b, x, indent+2)
	default:
		b.WriteString(" " + scalar(x) + "\n")
	}
}

// mergeInto deep-merges src into dst: maps are merged key by key, anything else in src
// replaces what dst holds.
func mergeInto(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
}
