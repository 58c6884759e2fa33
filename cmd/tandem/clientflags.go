package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// Environment variables of the client connection flags.
const (
	envEndpoints    = "TANDEM_ENDPOINTS" // comma-separated
	envKey          = "TANDEM_KEY"
	envCA           = "TANDEM_CA"
	envCert         = "TANDEM_CERT"
	envCertKey      = "TANDEM_CERT_KEY"
	envClientConfig = "TANDEM_CLIENT_CONFIG"
)

// defaultClientTimeout bounds a whole client or admin command.
const defaultClientTimeout = 30 * time.Second

// clientFile is the YAML file named by --client-config (written by
// `tandem dev`). Relative paths in it are relative to the file's directory.
type clientFile struct {
	Endpoints []string `yaml:"endpoints"`
	// Committee, for a consensus_mode bft cluster, lists every member; the
	// client then uses the BFT protocol (docs/operations.md).
	Committee   []committeeEntry `yaml:"committee"`
	KeyFile     string           `yaml:"key_file"`
	CAFile      string           `yaml:"ca_file"`
	CertFile    string           `yaml:"cert_file"`
	CertKeyFile string           `yaml:"cert_key_file"`
}

// committeeEntry is one member of committee in a client config file.
type committeeEntry struct {
	ID        string `yaml:"id"`
	Endpoint  string `yaml:"endpoint"`
	PublicKey string `yaml:"public_key"` // node public key, 64 lowercase hex digits
}

// clientOptions are the connection flags shared by every client and admin
// verb. Each value comes from its flag, else its environment variable, else
// the --client-config file.
type clientOptions struct {
	endpoints    []string
	keyFile      string
	caFile       string
	certFile     string
	certKeyFile  string
	clientConfig string
	timeout      time.Duration

	// lookupEnv reads the environment (os.LookupEnv; replaced in tests).
	lookupEnv func(string) (string, bool)
}

func newClientOptions() *clientOptions {
	return &clientOptions{lookupEnv: os.LookupEnv}
}

// bind defines the connection flags on fs.
func (o *clientOptions) bind(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.endpoints, "endpoints", nil, "API endpoints of the cluster, comma-separated, e.g. https://127.0.0.1:7001 (env "+envEndpoints+")")
	fs.StringVar(&o.keyFile, "key", "", "client signing key file (env "+envKey+")")
	fs.StringVar(&o.caFile, "ca", "", "cluster CA certificate file (env "+envCA+")")
	fs.StringVar(&o.certFile, "cert", "", "client TLS certificate file (env "+envCert+")")
	fs.StringVar(&o.certKeyFile, "cert-key", "", "client TLS certificate key file (env "+envCertKey+")")
	fs.StringVar(&o.clientConfig, "client-config", "", "client connection file (YAML: endpoints, key_file, ca_file, cert_file, cert_key_file); flags and env override it (env "+envClientConfig+")")
	fs.DurationVar(&o.timeout, "timeout", defaultClientTimeout, "give up after this long (writes then report an unknown outcome if a node may have received them)")
}

// setting is one resolved connection value and where it came from, for
// error messages.
type setting struct {
	value  string
	source string // "--key", "TANDEM_KEY", "key_file in /path/client.yaml"
}

// connSettings are the resolved connection values.
type connSettings struct {
	endpoints              []setting
	endpointsSource        string
	key, ca, cert, certKey setting
	committee              []committeeEntry
	committeeSource        string
}

// resolve merges the client config file, the environment and the flags of
// fs (flags win, then the environment, then the file).
func (o *clientOptions) resolve(fs *pflag.FlagSet) (connSettings, error) {
	var s connSettings
	changed := func(name string) bool { f := fs.Lookup(name); return f != nil && f.Changed }
	env := func(name string) (string, bool) {
		v, ok := o.lookupEnv(name)
		return strings.TrimSpace(v), ok && strings.TrimSpace(v) != ""
	}

	path, pathSrc := o.clientConfig, "--client-config"
	if !changed("client-config") {
		path, pathSrc = "", ""
		if v, ok := env(envClientConfig); ok {
			path, pathSrc = v, envClientConfig
		}
	}
	var file clientFile
	if path != "" {
		f, err := readClientFile(path)
		if err != nil {
			return s, fmt.Errorf("%s: %w", pathSrc, err)
		}
		file = f
	}
	fromFile := func(field, v string) setting {
		if v == "" {
			return setting{}
		}
		if !filepath.IsAbs(v) {
			v = filepath.Join(filepath.Dir(path), v)
		}
		return setting{v, field + " in " + path}
	}
	pick := func(flag, envName, field, flagVal, fileVal string) setting {
		if changed(flag) {
			return setting{flagVal, "--" + flag}
		}
		if v, ok := env(envName); ok {
			return setting{v, envName}
		}
		return fromFile(field, fileVal)
	}
	if len(file.Committee) > 0 {
		s.committee, s.committeeSource = file.Committee, "committee in "+path
	}
	s.key = pick("key", envKey, "key_file", o.keyFile, file.KeyFile)
	s.ca = pick("ca", envCA, "ca_file", o.caFile, file.CAFile)
	s.cert = pick("cert", envCert, "cert_file", o.certFile, file.CertFile)
	s.certKey = pick("cert-key", envCertKey, "cert_key_file", o.certKeyFile, file.CertKeyFile)

	var eps []string
	switch {
	case changed("endpoints"):
		eps, s.endpointsSource = o.endpoints, "--endpoints"
	default:
		if v, ok := env(envEndpoints); ok {
			eps, s.endpointsSource = strings.Split(v, ","), envEndpoints
		} else if len(file.Endpoints) > 0 {
			eps, s.endpointsSource = file.Endpoints, "endpoints in "+path
		}
	}
	for _, e := range eps {
		if e = strings.TrimSpace(e); e != "" {
			s.endpoints = append(s.endpoints, setting{e, s.endpointsSource})
		}
	}
	return s, nil
}

// readClientFile reads and strictly decodes a --client-config file.
func readClientFile(path string) (clientFile, error) {
	var f clientFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("read client config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("client config %s: %w (known keys: endpoints, committee, key_file, ca_file, cert_file, cert_key_file)", path, err)
	}
	return f, nil
}

// sdkConfig builds the SDK configuration. needKey says whether the verb
// signs (writes and admin requests); reads do not load the key.
func (o *clientOptions) sdkConfig(fs *pflag.FlagSet, needKey bool) (client.Config, error) {
	s, err := o.resolve(fs)
	if err != nil {
		return client.Config{}, err
	}
	cfg := client.DefaultConfig()
	for i, m := range s.committee {
		k, err := smr.ParseKey(m.PublicKey)
		if err != nil {
			return cfg, fmt.Errorf("%s: entry %d (%s): public_key: %w", s.committeeSource, i, m.ID, err)
		}
		u, err := client.ParseEndpoint(m.Endpoint)
		if err != nil {
			return cfg, fmt.Errorf("%s: entry %d (%s): %w", s.committeeSource, i, m.ID, err)
		}
		cfg.Committee = append(cfg.Committee, client.CommitteeMember{ID: m.ID, Endpoint: u, PublicKey: k})
	}
	anyHTTPS := false
	for _, m := range cfg.Committee {
		anyHTTPS = anyHTTPS || strings.HasPrefix(m.Endpoint, "https://")
	}
	if len(s.endpoints) == 0 && len(cfg.Committee) == 0 {
		return cfg, fmt.Errorf("no endpoints: set --endpoints, %s or endpoints in a --client-config file", envEndpoints)
	}
	for _, e := range s.endpoints {
		u, err := client.ParseEndpoint(e.value)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", e.source, err)
		}
		anyHTTPS = anyHTTPS || strings.HasPrefix(u, "https://")
		cfg.Endpoints = append(cfg.Endpoints, u)
	}
	if needKey {
		if s.key.value == "" {
			return cfg, fmt.Errorf("no client key: this command is signed; set --key, %s or key_file in a --client-config file", envKey)
		}
		k, err := identity.LoadKeyFile(s.key.value)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", s.key.source, err)
		}
		cfg.Key = k
	}
	if anyHTTPS {
		tlsCfg, err := o.tlsConfig(s)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

// tlsConfig builds the client TLS configuration from the CA and the
// optional client certificate.
func (o *clientOptions) tlsConfig(s connSettings) (*tls.Config, error) {
	if s.ca.value == "" {
		return nil, fmt.Errorf("no cluster CA: the endpoints use https; set --ca, %s or ca_file in a --client-config file", envCA)
	}
	if (s.cert.value == "") != (s.certKey.value == "") {
		return nil, fmt.Errorf("client certificate: give both --cert and --cert-key (or %s and %s) or neither; got certificate %q (%s) and key %q (%s)",
			envCert, envCertKey, s.cert.value, orNone(s.cert.source), s.certKey.value, orNone(s.certKey.source))
	}
	cfg, err := identity.ClientTLS(s.ca.value, s.cert.value, s.certKey.value)
	if err != nil {
		return nil, fmt.Errorf("%s / %s / %s: %w", orNone(s.ca.source), orNone(s.cert.source), orNone(s.certKey.source), err)
	}
	return cfg, nil
}

func orNone(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

// connect builds a client for cmd. The caller must Close it.
func (o *clientOptions) connect(cmd *cobra.Command, needKey bool) (*client.Client, error) {
	cfg, err := o.sdkConfig(cmd.Flags(), needKey)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// context returns the command's context bounded by --timeout.
func (o *clientOptions) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, o.timeout)
}
