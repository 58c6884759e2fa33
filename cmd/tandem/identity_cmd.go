package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// File names inside a CA directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// keyOutput is the JSON output of init and keygen.
type keyOutput struct {
	PublicKey string `json:"public_key"`
	KeyFile   string `json:"key_file"`
}

func printKey(cmd *cobra.Command, g *globalOptions, label, keyFile string, pub ed25519.PublicKey) error {
	format, err := g.format()
	if err != nil {
		return err
	}
	out := keyOutput{PublicKey: smr.FormatKey(pub), KeyFile: keyFile}
	if format == outputJSON {
		return writeJSON(cmd.OutOrStdout(), out)
	}
	return writeFields(cmd.OutOrStdout(), [2]string{label, out.KeyFile}, [2]string{"Public key", out.PublicKey})
}

func newInitCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create this node's signing key in the data directory",
		Long: `Create data_dir/node.key, the node's Ed25519 signing key (mode 0600), and print
its public key. The data directory comes from --data-dir, TANDEM_DATA_DIR or
the --config file. An existing key is never replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := readConfig(g.configPath(), cmd.Flags())
			if err != nil {
				return err
			}
			if l.cfg.DataDir == "" {
				return errors.New("init: data_dir is empty; give --data-dir")
			}
			path := filepath.Join(l.cfg.DataDir, identity.NodeKeyFileName)
			k, err := identity.GenerateKey()
			if err != nil {
				return err
			}
			if err := identity.WriteKeyFile(path, k); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			return printKey(cmd, g, "Node key", path, k.Public().(ed25519.PublicKey))
		},
	}
	cmd.Flags().String("data-dir", "", "data directory (key data_dir)")
	return cmd
}

func newKeygenCmd(g *globalOptions) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create a client signing key and print its public key",
		Long: `Write a new Ed25519 client private key to --out (mode 0600) and print its
public key (64 hex digits), the value that goes into bootstrap_admin_keys or an
ACL. An existing file is never replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("keygen: --out is required")
			}
			k, err := identity.GenerateKey()
			if err != nil {
				return err
			}
			if err := identity.WriteKeyFile(out, k); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			return printKey(cmd, g, "Key file", out, k.Public().(ed25519.PublicKey))
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (required)")
	return cmd
}

func newCACmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage the cluster certificate authority",
	}
	var (
		dir      string
		name     string
		validity time.Duration
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the cluster CA (ca.pem, ca-key.pem) in a directory",
		Long: `Create a self-signed Ed25519 CA: DIR/ca.pem (distribute it as tls.ca_file)
and DIR/ca-key.pem (keep it offline). Both files get mode 0600; existing
files are never replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			if dir == "" {
				return errors.New("ca create: --dir is required")
			}
			certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
			ca, err := identity.CreateCA(certPath, keyPath, name, validity)
			if err != nil {
				return err
			}
			return printCert(cmd, format, certPath, keyPath, ca.Cert.Subject.CommonName, ca.Cert.NotAfter)
		},
	}
	create.Flags().StringVar(&dir, "dir", "", "directory for ca.pem and ca-key.pem (required)")
	create.Flags().StringVar(&name, "name", "tandem-ca", "CA common name")
	create.Flags().DurationVar(&validity, "validity", identity.DefaultCAValidity, "how long the CA is valid")
	cmd.AddCommand(create)
	return cmd
}

func newCertCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Issue node and client certificates from the cluster CA",
	}
	var (
		caDir    string
		outDir   string
		node     string
		client   string
		hosts    []string
		validity time.Duration
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Issue a node (--node ID) or client (--client NAME) certificate",
		Long: `Issue a certificate from the CA in --ca-dir and write OUT/<name>.pem and
OUT/<name>-key.pem (mode 0600; OUT defaults to --ca-dir). A node certificate
(--node ID) is usable as TLS server and client and gets one SAN per --host
(default 127.0.0.1, ::1, localhost); a client certificate (--client NAME) is
for the client API only. Existing files are never replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			if caDir == "" {
				return errors.New("cert create: --ca-dir is required")
			}
			if (node == "") == (client == "") {
				return errors.New("cert create: give exactly one of --node ID or --client NAME")
			}
			if client != "" && len(hosts) > 0 {
				return errors.New("cert create: --host applies to node certificates only")
			}
			ca, err := identity.LoadCA(filepath.Join(caDir, caCertFile), filepath.Join(caDir, caKeyFile))
			if err != nil {
				return err
			}
			var certPEM, keyPEM []byte
			name := node
			if node != "" {
				certPEM, keyPEM, err = ca.IssueNode(node, hosts, validity)
			} else {
				name = client
				certPEM, keyPEM, err = ca.IssueClient(client, validity)
			}
			if err != nil {
				return err
			}
			dir := outDir
			if dir == "" {
				dir = caDir
			}
			certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
			if err := identity.WriteCertPair(certPath, keyPath, certPEM, keyPEM); err != nil {
				return err
			}
			block, _ := pem.Decode(certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("cert create: parse issued certificate: %w", err)
			}
			return printCert(cmd, format, certPath, keyPath, name, cert.NotAfter)
		},
	}
	f := create.Flags()
	f.StringVar(&caDir, "ca-dir", "", "directory holding ca.pem and ca-key.pem (required)")
	f.StringVar(&outDir, "out-dir", "", "directory for the new files (default --ca-dir)")
	f.StringVar(&node, "node", "", "issue a node certificate for this node ID")
	f.StringVar(&client, "client", "", "issue a client certificate with this name")
	f.StringSliceVar(&hosts, "host", nil, "IP address or DNS name of the node (repeatable)")
	f.DurationVar(&validity, "validity", identity.DefaultCertValidity, "how long the certificate is valid (capped at the CA's expiry)")
	cmd.AddCommand(create)
	return cmd
}

func printCert(cmd *cobra.Command, format, certPath, keyPath, name string, notAfter time.Time) error {
	if format == outputJSON {
		return writeJSON(cmd.OutOrStdout(), struct {
			Name     string    `json:"name"`
			CertFile string    `json:"cert_file"`
			KeyFile  string    `json:"key_file"`
			NotAfter time.Time `json:"not_after"`
		}{name, certPath, keyPath, notAfter.UTC().Truncate(time.Second)})
	}
	return writeFields(cmd.OutOrStdout(),
		[2]string{"Name", name},
		[2]string{"Certificate", certPath},
		[2]string{"Key", keyPath},
		[2]string{"Expires", notAfter.UTC().Format(time.RFC3339)},
	)
}
