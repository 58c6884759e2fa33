// Package devcluster lays out and runs a local Tandem cluster of real
// `tandem serve` processes on loopback: a cluster CA, node certificates and
// keys, an admin client key and certificate, a gossip key and one config
// file per node. `tandem dev` and the multi-process tests use it.
package devcluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// Options describe the cluster to lay out.
type Options struct {
	// Dir holds everything; it is created if missing and reused if it
	// already holds a layout with the same number of nodes.
	Dir string
	// Nodes is the number of servers (default 4).
	Nodes int
	// BasePort numbers the ports: node i (1-based) gets api BasePort+i,
	// peer BasePort+100+i and gossip BasePort+200+i. Zero picks free
	// ephemeral ports (tests).
	BasePort int
	// Mode is the consensus_mode written to every node's config. In bft mode
	// the cluster forms from initial_members, which list every node's peer
	// address and node public key (a BFT committee must be static), with
	// view_change_timeout 1s and vote_timeout 300ms unless Extra sets them;
	// otherwise it forms through gossip with bootstrap_expect.
	Mode string
	// Extra keys merged into every node's config (e.g. raft timeouts).
	Extra map[string]any
}

// NodeLayout is where one node's files and addresses are.
type NodeLayout struct {
	ID         string
	ConfigPath string
	DataDir    string
	APIAddr    string
	PeerAddr   string
	GossipAddr string
}

// Endpoint is the node's API URL.
func (n NodeLayout) Endpoint() string { return "https://" + n.APIAddr }

// Layout is a prepared cluster directory.
type Layout struct {
	Dir              string
	Mode             string // consensus_mode of every node ("" in layouts written before modes: cft)
	Nodes            []NodeLayout
	CAFile           string
	AdminKeyPath     string
	AdminPublicKey   string
	ClientCertFile   string
	ClientKeyFile    string
	ClientConfigPath string
}

// Endpoints lists every node's API URL.
func (l *Layout) Endpoints() []string {
	out := make([]string, len(l.Nodes))
	for i, n := range l.Nodes {
		out[i] = n.Endpoint()
	}
	return out
}

const layoutFile = "layout.yaml"

// Prepare creates (or reuses) the layout in opts.Dir.
func Prepare(opts Options) (*Layout, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 4
	}
	if opts.Nodes < 1 || opts.Nodes > 9 {
		return nil, fmt.Errorf("nodes: %d is out of range (1..9)", opts.Nodes)
	}
	if opts.Mode == "" {
		opts.Mode = "cft"
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dir %s: %w", opts.Dir, err)
	}
	if l, err := load(dir); err == nil {
		if len(l.Nodes) != opts.Nodes {
			return nil, fmt.Errorf("%s holds a %d-node cluster, not %d: use another --dir or --fresh", dir, len(l.Nodes), opts.Nodes)
		}
		if l.Mode == "" {
			l.Mode = "cft"
		}
		if l.Mode != opts.Mode {
			return nil, fmt.Errorf("%s holds a %s cluster, not %s: its configs and data are for that mode; use another --dir or --fresh", dir, l.Mode, opts.Mode)
		}
		return l, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	l := &Layout{
		Dir:              dir,
		Mode:             opts.Mode,
		CAFile:           filepath.Join(dir, "ca", "ca.pem"),
		AdminKeyPath:     filepath.Join(dir, "admin.key"),
		ClientCertFile:   filepath.Join(dir, "ca", "admin-client.pem"),
		ClientKeyFile:    filepath.Join(dir, "ca", "admin-client-key.pem"),
		ClientConfigPath: filepath.Join(dir, "client.yaml"),
	}
	ports, err := pickPorts(opts.BasePort, opts.Nodes)
	if err != nil {
		return nil, err
	}
	ca, err := identity.CreateCA(l.CAFile, filepath.Join(dir, "ca", "ca-key.pem"), "Tandem dev CA", 5*365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	adminKey, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := identity.WriteKeyFile(l.AdminKeyPath, adminKey); err != nil {
		return nil, err
	}
	l.AdminPublicKey = smr.FormatKey(adminKey.Public().(ed25519.PublicKey))
	certPEM, keyPEM, err := ca.IssueClient("admin", 5*365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if err := identity.WriteCertPair(l.ClientCertFile, l.ClientKeyFile, certPEM, keyPEM); err != nil {
		return nil, err
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return nil, err
	}
	gossipKeyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(gossipKeyFile, []byte(base64.StdEncoding.EncodeToString(gossipKey)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}

	var joins []string
	for i := range opts.Nodes {
		joins = append(joins, ports[i][2])
	}
	// Keys and certificates first: a bft config lists every member's key.
	members := make([]string, opts.Nodes)
	var committee []map[string]string
	for i := range opts.Nodes {
		id := "node" + strconv.Itoa(i+1)
		n := NodeLayout{
			ID:         id,
			ConfigPath: filepath.Join(dir, id+".yaml"),
			DataDir:    filepath.Join(dir, id),
			APIAddr:    ports[i][0],
			PeerAddr:   ports[i][1],
			GossipAddr: ports[i][2],
		}
		cp, kp, err := ca.IssueNode(id, []string{"127.0.0.1", "::1", "localhost"}, 5*365*24*time.Hour)
		if err != nil {
			return nil, fmt.Errorf("certificate for %s: %w", id, err)
		}
		if err := identity.WriteCertPair(nodeCertFile(dir, id), nodeCertKeyFile(dir, id), cp, kp); err != nil {
			return nil, err
		}
		nk, err := identity.GenerateKey()
		if err != nil {
			return nil, err
		}
		if err := identity.WriteKeyFile(filepath.Join(n.DataDir, identity.NodeKeyFileName), nk); err != nil {
			return nil, err
		}
		members[i] = id + "=" + n.PeerAddr + "/" + smr.FormatKey(nk.Public().(ed25519.PublicKey))
		committee = append(committee, map[string]string{"id": id, "endpoint": n.Endpoint(), "public_key": smr.FormatKey(nk.Public().(ed25519.PublicKey))})
		l.Nodes = append(l.Nodes, n)
	}
	for _, n := range l.Nodes {
		cfg := map[string]any{
			"node_id":              n.ID,
			"data_dir":             n.DataDir,
			"api_addr":             n.APIAddr,
			"peer_addr":            n.PeerAddr,
			"gossip_addr":          n.GossipAddr,
			"join":                 joins,
			"gossip_key_file":      gossipKeyFile,
			"bootstrap_admin_keys": []string{l.AdminPublicKey},
			"consensus_mode":       opts.Mode,
			"tls":                  map[string]any{"ca_file": l.CAFile, "cert_file": nodeCertFile(dir, n.ID), "key_file": nodeCertKeyFile(dir, n.ID)},
		}
		if opts.Mode == "bft" || opts.Mode == "auto" {
			// A static committee with node keys: bft from the start,
			// auto from its first BFT epoch on.
			cfg["initial_members"] = members
			cfg["view_change_timeout"] = "1s"
			cfg["vote_timeout"] = "300ms"
		} else {
			cfg["bootstrap_expect"] = opts.Nodes
		}
		for k, v := range opts.Extra {
			cfg[k] = v
		}
		if err := writeYAML(n.ConfigPath, cfg); err != nil {
			return nil, err
		}
	}
	clientCfg := map[string]any{
		"endpoints":     l.Endpoints(),
		"key_file":      l.AdminKeyPath,
		"ca_file":       l.CAFile,
		"cert_file":     l.ClientCertFile,
		"cert_key_file": l.ClientKeyFile,
	}
	if opts.Mode == "bft" {
		// Every client verb then uses the BFT protocol: signed replies
		// from f+1 members.
		clientCfg["committee"] = committee
	}
	if err := writeYAML(l.ClientConfigPath, clientCfg); err != nil {
		return nil, err
	}
	if err := writeYAML(filepath.Join(dir, layoutFile), l); err != nil {
		return nil, err
	}
	return l, nil
}

func nodeCertFile(dir, id string) string    { return filepath.Join(dir, "ca", id+".pem") }
func nodeCertKeyFile(dir, id string) string { return filepath.Join(dir, "ca", id+"-key.pem") }

func load(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, layoutFile))
	if err != nil {
		return nil, err
	}
	var l Layout
	if err := yaml.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: %w (remove the directory or use --fresh)", filepath.Join(dir, layoutFile), err)
	}
	return &l, nil
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// pickPorts returns [api, peer, gossip] host:port triples.
func pickPorts(base, n int) ([][3]string, error) {
	out := make([][3]string, n)
	if base > 0 {
		for i := range n {
			for j, off := range []int{0, 100, 200} {
				addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+off+i+1))
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return nil, fmt.Errorf("port %s is not free (choose another --base-port): %w", addr, err)
				}
				_ = ln.Close()
				out[i][j] = addr
			}
		}
		return out, nil
	}
	// Ephemeral: hold all listeners until every port is chosen so that no
	// two picks collide. Gossip needs the same port free for UDP too.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for i := range n {
		for j := range 3 {
			for {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return nil, fmt.Errorf("picking a free port: %w", err)
				}
				addr := ln.Addr().String()
				if j == 2 {
					udp, err := net.ListenPacket("udp", addr)
					if err != nil {
						_ = ln.Close()
						continue
					}
					_ = udp.Close()
				}
				held = append(held, ln)
				out[i][j] = addr
				break
			}
		}
	}
	return out, nil
}

// Committee returns the members of a bft cluster as the client's
// Config.Committee lists them: node ID, API endpoint and the public half
// of the node key in the node's data directory.
func (l *Layout) Committee() ([]client.CommitteeMember, error) {
	out := make([]client.CommitteeMember, 0, len(l.Nodes))
	for _, n := range l.Nodes {
		k, err := identity.LoadKeyFile(filepath.Join(n.DataDir, identity.NodeKeyFileName))
		if err != nil {
			return nil, fmt.Errorf("node key of %s: %w", n.ID, err)
		}
		out = append(out, client.CommitteeMember{ID: n.ID, Endpoint: n.Endpoint(), PublicKey: k.Public().(ed25519.PublicKey)})
	}
	return out, nil
}

// Exists reports whether dir holds a layout from an earlier Prepare.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, layoutFile))
	return err == nil
}
