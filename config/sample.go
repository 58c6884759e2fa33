package config

import (
	"strconv"
	"strings"
)

// SampleYAML returns a complete YAML configuration file with every key at
// its default, each preceded by its description as a comment. Keys that
// have no usable default (node_id, tls.*, bootstrap_admin_keys) are empty
// and must be filled in before the file validates.
func SampleYAML() string {
	var b strings.Builder
	b.WriteString("# Tandem node configuration. Every key is shown with its default.\n")
	b.WriteString("# Environment variables override the file (TANDEM_<KEY>, '.' -> '_',\n")
	b.WriteString("# lists comma-separated) and flags override both.\n")
	section := ""
	for _, k := range Keys() {
		name, indent := k.Name, ""
		if sec, leaf, ok := strings.Cut(k.Name, "."); ok {
			if sec != section {
				b.WriteString("\n" + sec + ":\n")
				section = sec
			}
			name, indent = leaf, "  "
		} else if section != "" {
			section = ""
		}
		b.WriteString("\n" + indent + "# " + k.Description + "\n")
		b.WriteString(indent + name + ": " + yamlValue(k) + "\n")
	}
	return b.String()
}

func yamlValue(k Key) string {
	switch k.Type {
	case "string", "duration":
		return strconv.Quote(k.Default)
	case "list":
		if k.Default == "" {
			return "[]"
		}
		items := strings.Split(k.Default, ",")
		for i, it := range items {
			items[i] = strconv.Quote(it)
		}
		return "[" + strings.Join(items, ", ") + "]"
	default:
		return k.Default
	}
}
