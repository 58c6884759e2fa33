package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/tandem-consensus/tandem/config"
)

// Sources of a configuration value, lowest precedence first.
const (
	sourceDefault = "default"
	sourceFile    = "file"
	sourceEnv     = "env"
	sourceFlag    = "flag"
)

// envConfigFile names the config file when --config is not given.
const envConfigFile = "TANDEM_CONFIG"

// configFlag binds one command-line flag to one configuration key.
type configFlag struct {
	name  string
	key   string
	usage string
}

// configFlags lists the flags bindConfigFlags defines. loadConfig binds any
// of these names it finds in the flag set, so a command may also define a
// subset of them itself (with the same name and type).
func configFlags() []configFlag {
	return []configFlag{
		{"node-id", "node_id", "node ID"},
		{"data-dir", "data_dir", "data directory"},
		{"api-addr", "api_addr", "client API listen address (host:port)"},
		{"peer-addr", "peer_addr", "peer (raft) listen address (host:port)"},
		{"gossip-addr", "gossip_addr", "gossip listen address (host:port)"},
		{"join", "join", "gossip address of a node to join (repeatable)"},
		{"bootstrap-expect", "bootstrap_expect", "bootstrap once this many servers are discovered"},
		{"initial-member", "initial_members", "initial member id=host:port (repeatable)"},
		{"tls-ca", "tls.ca_file", "cluster CA certificate file"},
		{"tls-cert", "tls.cert_file", "node certificate file"},
		{"tls-key", "tls.key_file", "node certificate key file"},
		{"bootstrap-admin-key", "bootstrap_admin_keys", "admin client public key, 64 hex digits (repeatable)"},
		{"consensus-mode", "consensus_mode", "consensus mode: auto, cft or bft"},
		// Defined by the root command as a persistent flag.
		{"log-level", "log.level", "log level: debug, info, warn or error"},
	}
}

// bindConfigFlags defines the flags of the commonly set keys on fs. Their
// values override the file and the environment only when given. The global
// --log-level flag is defined by the root command, not here.
func bindConfigFlags(fs *pflag.FlagSet) {
	def := config.Default()
	for _, f := range configFlags() {
		if f.name == "log-level" {
			continue
		}
		p, _ := def.Field(f.key)
		usage := fmt.Sprintf("%s (key %s)", f.usage, f.key)
		if d, _ := def.Format(f.key); d != "" {
			usage = fmt.Sprintf("%s (key %s, default %s)", f.usage, f.key, d)
		}
		switch p.(type) {
		case *[]string:
			fs.StringSlice(f.name, nil, usage)
		case *int:
			fs.Int(f.name, 0, usage)
		default:
			fs.String(f.name, "", usage)
		}
	}
}

// loadConfig builds the configuration from, in increasing precedence, the
// built-in defaults, the YAML file (if file is not empty), the environment
// (TANDEM_<KEY>, '.' as '_', lists comma-separated) and the flags of fs that
// were given (fs may be nil), and validates it. It returns the
// configuration and, for every key, where its value came from (default,
// file, env or flag). A validation failure is returned as a
// *configProblemsError together with the configuration and sources; any
// other error (missing or unparsable file, unknown key, wrong type) comes
// with a zero Config.
func loadConfig(file string, fs *pflag.FlagSet) (config.Config, map[string]string, error) {
	l, err := readConfig(file, fs)
	if err != nil {
		return config.Config{}, nil, err
	}
	if err := l.cfg.Validate(); err != nil {
		return l.cfg, l.sources, &configProblemsError{file: file, problems: config.Problems(err), origins: l.origins}
	}
	return l.cfg, l.sources, nil
}

// loaded is a configuration read by readConfig, not yet validated.
type loaded struct {
	cfg     config.Config
	sources map[string]string // key -> default|file|env|flag
	origins map[string]string // key -> human-readable origin, for messages
}

// readConfig is loadConfig without validation, for commands that need only
// some keys (init needs data_dir, not node_id).
func readConfig(file string, fs *pflag.FlagSet) (*loaded, error) {
	v := viper.New()
	v.SetEnvPrefix(strings.TrimSuffix(config.EnvPrefix, "_"))
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	keys := config.Keys()
	def := config.Default()
	for _, k := range keys {
		p, _ := def.Field(k.Name)
		v.SetDefault(k.Name, reflect.ValueOf(p).Elem().Interface())
	}

	var fileLines map[string]int
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("config file %s does not exist", file)
			}
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		m, lines, err := parseConfigYAML(file, data)
		if err != nil {
			return nil, err
		}
		if err := v.MergeConfigMap(m); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		fileLines = lines
	}

	flags := map[string]*pflag.Flag{}
	if fs != nil {
		for _, cf := range configFlags() {
			if f := fs.Lookup(cf.name); f != nil {
				if err := v.BindPFlag(cf.key, f); err != nil {
					return nil, fmt.Errorf("bind flag --%s: %w", cf.name, err)
				}
				flags[cf.key] = f
			}
		}
	}

	l := &loaded{cfg: config.Default(), sources: map[string]string{}, origins: map[string]string{}}
	var errs []error
	for _, k := range keys {
		src, origin := sourceDefault, "default"
		if f, ok := flags[k.Name]; ok && f.Changed {
			src, origin = sourceFlag, "flag --"+f.Name
		} else if val, ok := os.LookupEnv(config.EnvName(k.Name)); ok && val != "" {
			// viper ignores empty variables; so do we.
			src, origin = sourceEnv, "env "+config.EnvName(k.Name)
		} else if line, ok := fileLines[k.Name]; ok {
			src, origin = sourceFile, fmt.Sprintf("file %s line %d", file, line)
		}
		l.sources[k.Name], l.origins[k.Name] = src, origin
		if src == sourceDefault {
			continue // l.cfg already holds the default
		}
		p, _ := l.cfg.Field(k.Name)
		raw := v.Get(k.Name)
		if err := assign(p, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %v (from %s)", k.Name, describe(raw), err, origin))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// parseConfigYAML decodes a config file, checking that every key is known
// and every section is a mapping. It returns the decoded mapping and the
// line of every key that has a non-null value.
func parseConfigYAML(file string, data []byte) (map[string]any, map[string]int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("config file %s: invalid YAML: %v", file, err)
	}
	lines := map[string]int{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, lines, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Tag == "!!null" {
			return map[string]any{}, lines, nil
		}
		return nil, nil, fmt.Errorf("config file %s line %d: the top level must be a mapping of keys, not %s", file, root.Line, nodeKind(root))
	}
	var errs []error
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			name := prefix + kn.Value
			switch {
			case config.IsSection(name):
				if vn.Kind == yaml.MappingNode {
					walk(vn, name+".")
				} else if vn.Tag != "!!null" {
					errs = append(errs, fmt.Errorf("config file %s line %d: %s must be a mapping of %s.* keys, not %s", file, kn.Line, name, name, nodeKind(vn)))
				}
			case isKey(name):
				if vn.Tag != "!!null" {
					lines[name] = kn.Line
				}
			default:
				msg := fmt.Sprintf("config file %s line %d: unknown key %q", file, kn.Line, name)
				if s := suggestKey(name); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				errs = append(errs, errors.New(msg))
			}
		}
	}
	walk(root, "")
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var m map[string]any
	if err := root.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("config file %s: %v", file, err)
	}
	return m, lines, nil
}

func isKey(name string) bool {
	c := config.Default()
	_, ok := c.Field(name)
	return ok
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return fmt.Sprintf("the value %q", n.Value)
	}
}

// suggestKey returns the known key closest to an unknown one, or "".
func suggestKey(name string) string {
	best, bestDist := "", 4 // suggest only within edit distance 3
	leaf := name[strings.LastIndex(name, ".")+1:]
	for _, k := range config.Keys() {
		kLeaf := k.Name[strings.LastIndex(k.Name, ".")+1:]
		if kLeaf == leaf {
			return k.Name // right name, wrong section
		}
		if d := editDistance(name, k.Name); d < bestDist {
			best, bestDist = k.Name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe formats a raw value for an error message.
func describe(raw any) string {
	if s, ok := raw.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", raw)
}

// assign converts raw (from viper: a YAML-decoded value, an environment
// string or a flag value) into the field p points to. Its errors complete
// the sentence "<key>: <value> ...".
func assign(p any, raw any) error {
	switch dst := p.(type) {
	case *string:
		s, err := toScalarString(raw)
		if err != nil {
			return err
		}
		*dst = s
	case *bool:
		switch x := raw.(type) {
		case bool:
			*dst = x
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return errors.New("is not a boolean (want true or false)")
			}
			*dst = b
		default:
			return errors.New("is not a boolean (want true or false)")
		}
	case *time.Duration:
		d, err := toDuration(raw)
		if err != nil {
			return err
		}
		*dst = d
	case *int:
		n, err := toInt(raw, math.MinInt, math.MaxInt)
		if err != nil {
			return err
		}
		*dst = int(n)
	case *int64:
		n, err := toInt(raw, math.MinInt64, math.MaxInt64)
		if err != nil {
			return err
		}
		*dst = n
	case *uint64:
		n, err := toUint(raw)
		if err != nil {
			return err
		}
		*dst = n
	case *float64:
		f, err := toFloat(raw)
		if err != nil {
			return err
		}
		*dst = f
	case *[]string:
		l, err := toList(raw)
		if err != nil {
			return err
		}
		*dst = l
	default:
		return fmt.Errorf("has an unsupported field type %T", p)
	}
	return nil
}

func toScalarString(raw any) (string, error) {
	switch x := raw.(type) {
	case string:
		return x, nil
	case nil:
		return "", nil
	case []any, []string, map[string]any:
		return "", errors.New("is not a single value (want a string)")
	default:
		return fmt.Sprint(x), nil
	}
}

func toDuration(raw any) (time.Duration, error) {
	switch x := raw.(type) {
	case time.Duration:
		return x, nil
	case string:
		x = strings.TrimSpace(x)
		d, err := time.ParseDuration(x)
		if err != nil {
			if _, nerr := strconv.ParseFloat(x, 64); nerr == nil {
				return 0, fmt.Errorf(`is not a duration: give a unit (e.g. "%ss" or "%sms")`, x, x)
			}
			return 0, errors.New(`is not a duration (want e.g. "500ms", "2s", "1m30s")`)
		}
		return d, nil
	}
	if n, err := toInt(raw, math.MinInt64, math.MaxInt64); err == nil && n == 0 {
		return 0, nil
	}
	return 0, errors.New(`is not a duration: give a unit (e.g. "500ms", "2s")`)
}

func toInt(raw any, lo, hi int64) (int64, error) {
	var n int64
	rv := reflect.ValueOf(raw)
	switch {
	case raw == nil:
		return 0, errors.New("is not an integer")
	case rv.CanInt():
		n = rv.Int()
	case rv.CanUint():
		u := rv.Uint()
		if u > math.MaxInt64 {
			return 0, errors.New("is out of range")
		}
		n = int64(u)
	case rv.CanFloat():
		f := rv.Float()
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, errors.New("is not an integer")
		}
		n = int64(f)
	case rv.Kind() == reflect.String:
		var err error
		n, err = strconv.ParseInt(strings.TrimSpace(rv.String()), 10, 64)
		if err != nil {
			return 0, errors.New("is not an integer")
		}
	default:
		return 0, errors.New("is not an integer")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("is out of range [%d, %d]", lo, hi)
	}
	return n, nil
}

func toUint(raw any) (uint64, error) {
	rv := reflect.ValueOf(raw)
	if raw != nil && rv.CanUint() {
		return rv.Uint(), nil
	}
	if raw != nil && rv.Kind() == reflect.String {
		u, err := strconv.ParseUint(strings.TrimSpace(rv.String()), 10, 64)
		if err != nil {
			return 0, errors.New("is not a non-negative integer")
		}
		return u, nil
	}
	n, err := toInt(raw, 0, math.MaxInt64)
	if err != nil {
		return 0, errors.New("is not a non-negative integer")
	}
	return uint64(n), nil
}

func toFloat(raw any) (float64, error) {
	rv := reflect.ValueOf(raw)
	switch {
	case raw == nil:
	case rv.CanFloat():
		return rv.Float(), nil
	case rv.CanInt():
		return float64(rv.Int()), nil
	case rv.CanUint():
		return float64(rv.Uint()), nil
	case rv.Kind() == reflect.String:
		if f, err := strconv.ParseFloat(strings.TrimSpace(rv.String()), 64); err == nil {
			return f, nil
		}
	}
	return 0, errors.New("is not a number")
}

// toList accepts a YAML list of scalars, a []string (flags) or a
// comma-separated string (environment). Items are trimmed; empty items are
// dropped.
func toList(raw any) ([]string, error) {
	var items []string
	switch x := raw.(type) {
	case nil:
	case []string:
		items = x
	case string:
		items = strings.Split(x, ",")
	case []any:
		for i, it := range x {
			s, err := toScalarString(it)
			if err != nil {
				return nil, fmt.Errorf("has item %d that is not a single value", i)
			}
			items = append(items, s)
		}
	default:
		return nil, errors.New("is not a list (want a YAML list, or comma-separated in the environment)")
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out, nil
}

// configProblemsError is a configuration that was read but does not
// validate. Its message lists every problem, each with the origin of the
// value when that is not the default.
type configProblemsError struct {
	file     string
	problems []*config.FieldError
	origins  map[string]string
}

func (e *configProblemsError) Error() string {
	var b strings.Builder
	what := "configuration"
	if e.file != "" {
		what = "config file " + e.file
	}
	noun := "problems"
	if len(e.problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "%s has %d %s:", what, len(e.problems), noun)
	for _, p := range e.problems {
		b.WriteString("\n  - " + p.Msg)
		if o := e.origins[p.Key]; o != "" && o != "default" {
			b.WriteString(" [" + o + "]")
		}
	}
	return b.String()
}

// Unwrap exposes the *config.FieldError values (config.Problems works).
func (e *configProblemsError) Unwrap() []error {
	out := make([]error, len(e.problems))
	for i, p := range e.problems {
		out[i] = p
	}
	return out
}
