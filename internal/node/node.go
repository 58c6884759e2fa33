// Package node assembles a Tandem server from its parts — identity and TLS,
// the peer transport, gossip membership, the replicated state machine, the
// consensus engine and the HTTP API — and runs them until its context ends.
//
// Wiring is explicit: every part gets its dependencies from New, and Run
// owns every goroutine the node starts.
package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/membership"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// Version is reported by /v1/status; set by the binary.
var Version = "dev"

// Node is one running Tandem server.
type Node struct {
	cfg     config.Config
	log     *slog.Logger
	nodeKey ed25519.PublicKey
	signKey ed25519.PrivateKey // the node key; signs replies in bft mode

	fsm      *appliedFSM
	genesis  smr.Genesis // this node's configured genesis; the replicated one wins
	mux      *transport.Mux
	peers    peers
	verifier *verifier
	// engine is the consensus engine of consensus_mode: raft in cft mode,
	// bft in bft mode (the other one is nil).
	//
	// In auto mode they change at an epoch switch: read them through
	// eng, raftEng and bftEng (engMu guards them).
	engMu  sync.RWMutex
	mode   string // consensus mode of the running engine: cft or bft
	engine consensus.Engine
	raft   *raftengine.Engine
	bft    *hsengine.Engine
	sel    *selector // auto mode: the epochs
	// engMetrics is the running engine's collector (auto mode swaps it).
	engMetrics prometheus.Collector
	det        *detector     // evidence, scoring and quarantine (cft mode: only with member keys)
	ckpt       *checkpointer // periodic checkpoints; nil without every member's key
	resync     *resyncer     // re-sync of this node's diverged state (resync.go); nil without checkpoints
	members    *membership.Membership
	rpc        *http.Client
	reload     reloadState // the reloadable values in effect (reload.go)

	registry *prometheus.Registry
	apiLn    net.Listener
	apiSrv   *http.Server
	rpcSrv   *http.Server
}

// New opens the node's storage and listeners. Nothing runs until Run.
// On error everything opened so far is closed again.
func New(cfg config.Config, logger *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("node", cfg.NodeID)
	n := &Node{cfg: cfg, log: logger, registry: prometheus.NewRegistry()}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	nodeKeyPath := filepath.Join(cfg.DataDir, identity.NodeKeyFileName)
	key, err := identity.LoadKeyFile(nodeKeyPath)
	if err != nil {
		return nil, fmt.Errorf("node key: %w (create it with `tandem init --data-dir %s`)", err, cfg.DataDir)
	}
	n.nodeKey = key.Public().(ed25519.PublicKey)
	n.signKey = key

	admins := make([]ed25519.PublicKey, 0, len(cfg.BootstrapAdminKeys))
	for _, s := range cfg.BootstrapAdminKeys {
		k, err := identity.ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap_admin_keys: %q: %w", s, err)
		}
		admins = append(admins, k)
	}
	// The genesis (admin keys and the limits that change how commands
	// execute) is replicated state: the first leader proposes it from its
	// config, and every replica executes with the replicated values.
	n.genesis = smr.Genesis{AdminKeys: admins, ResultWindow: cfg.Limits.ResultWindow, MaxCommandBytes: cfg.Limits.MaxCommandBytes}.WithDefaults()
	if err := n.genesis.Validate(); err != nil {
		return nil, fmt.Errorf("genesis from bootstrap_admin_keys and limits: %w", err)
	}
	n.fsm = newAppliedFSM(smr.NewUninitialized())

	if cfg.TLS.CAFile == "" || cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "" {
		return nil, errors.New("tls.ca_file, tls.cert_file and tls.key_file are required: node-to-node traffic is always mutual TLS")
	}
	peerServer, peerClient, err := identity.PeerTLS(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	n.mux, err = transport.ListenConfig(transport.Config{
		Addr:         cfg.PeerAddr,
		ServerTLS:    peerServer,
		ClientTLS:    peerClient,
		Logger:       logger,
		PeerID:       identity.PeerNodeID,
		ExpectedPeer: n.peers.expected,
	})
	if err != nil {
		return nil, fmt.Errorf("peer_addr %s: %w", cfg.PeerAddr, err)
	}
	closers = append(closers, func() { _ = n.mux.Close() })
	n.rpc = n.mux.RPCHTTPClient()
	n.verifier = &verifier{mux: n.mux}
	if ms, err := cfg.Members(); err == nil && len(ms) > 0 {
		initial := make([]consensus.Member, 0, len(ms))
		for _, m := range ms {
			initial = append(initial, consensus.Member{ID: m.ID, Address: m.Addr})
		}
		n.peers.set(initial)
	}

	if err := raftengine.SetupMetrics(n.registry); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tandem_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": Version},
	})
	buildInfo.Set(1)
	n.registry.MustRegister(buildInfo)

	if n.ckpt, err = n.newCheckpointer(key); err != nil {
		return nil, err
	}
	n.fsm.ckpt = n.ckpt
	n.fsm.tamper = n.corruptState()

	wantsJoin := false
	if n.autoMode() {
		// The detector watches the Raft epochs through leader
		// attestations (their settings are kept for each Raft epoch's
		// engine) and the HotStuff epochs through the engine's proofs.
		if n.det, err = n.newCFTDetector(key, logger); err != nil {
			return nil, err
		}
		if n.det == nil {
			return nil, errors.New("consensus_mode auto needs every member's node public key in initial_members")
		}
		if n.sel, err = n.newSelector(); err != nil {
			return nil, err
		}
		rec := n.sel.record()
		var base []byte
		if base, err = n.epochBase(rec); err != nil {
			return nil, err
		}
		if err := n.startEpoch(rec, base); err != nil {
			return nil, err
		}
		closers = append(closers, func() { _ = n.eng().Stop() })
	} else if n.cfg.ConsensusMode == config.ModeBFT {
		if n.det, err = n.newDetector(key, logger); err != nil {
			return nil, err
		}
		b, err := n.newBFTEngine(key, logger)
		if err != nil {
			return nil, err
		}
		n.swapEngine(b, nil)
		n.det.attach(b)
		closers = append(closers, func() { _ = n.eng().Stop() }) // a re-sync may replace b
	} else {
		if n.det, err = n.newCFTDetector(key, logger); err != nil { // nil without member keys
			return nil, err
		}
		r, err := n.startRaft(n.cftRaftConfig())
		if err != nil {
			return nil, fmt.Errorf("raft engine: %w", err)
		}
		n.attachRaft(r)
		closers = append(closers, func() { _ = r.Stop() })

		hasState, err := r.HasState()
		if err != nil {
			return nil, fmt.Errorf("raft state: %w", err)
		}
		wantsJoin = !hasState && len(cfg.InitialMembers) == 0 && cfg.BootstrapExpect == 0
	}

	if n.resync, err = n.newResyncer(); err != nil {
		return nil, err
	}

	var evGossip membership.Gossip
	if n.det != nil {
		if n.det.gossip, err = newEvidenceGossip(n.det, cfg.NodeID, filepath.Join(cfg.DataDir, "detector"), n.registry); err != nil {
			return nil, err
		}
		closers = append(closers, func() { _ = n.det.gossip.close() })
		evGossip = n.det.gossip
	}
	var gossipKey []byte
	if cfg.GossipKeyFile != "" {
		gossipKey, err = readGossipKey(cfg.GossipKeyFile)
		if err != nil {
			return nil, err
		}
	}
	n.members, err = membership.Start(context.Background(), membership.Config{
		NodeID:        cfg.NodeID,
		BindAddr:      cfg.GossipAddr,
		AdvertiseAddr: cfg.GossipAdvertiseAddr(),
		Join:          cfg.Join,
		SecretKey:     gossipKey,
		Meta:          membership.Meta{ID: cfg.NodeID, PeerAddr: cfg.PeerAdvertiseAddr(), APIAddr: cfg.APIAddr, Join: wantsJoin},
		Logger:        logger,
		Gossip:        evGossip,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip on %s: %w", cfg.GossipAddr, err)
	}
	closers = append(closers, func() { _ = n.members.Shutdown() })
	if n.det != nil {
		n.det.gossip.attach(n.members)
	}

	apiHandler, err := api.New(api.Config{Backend: n, Logger: logger, Registry: n.registry, MaxRequestBytes: cfg.Limits.MaxRequestBytes, EnableDebug: cfg.EnableDebug})
	if err != nil {
		return nil, err
	}
	n.apiLn, err = net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("api_addr %s: %w", cfg.APIAddr, err)
	}
	closers = append(closers, func() { _ = n.apiLn.Close() })
	tlsCfg, err := identity.APIServerTLS(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.RequireMTLS)
	if err != nil {
		return nil, fmt.Errorf("api TLS: %w", err)
	}
	n.apiSrv = &http.Server{
		Handler:           apiHandler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	n.rpcSrv = &http.Server{
		Handler:           n.withCheckpointRPC(n.rpcHandler()),
		ConnContext:       transport.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return n, nil
}

func readGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip_key_file: %w", err)
	}
	key, err := decodeGossipKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("gossip_key_file %s: %w", path, err)
	}
	return key, nil
}

// APIAddr is the address the API listens on (useful with port 0).
func (n *Node) APIAddr() string { return n.apiLn.Addr().String() }

// Run serves until ctx ends, then shuts everything down. It returns the
// first error that stopped the node, or nil after a clean shutdown.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := n.apiSrv.ServeTLS(n.apiLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := n.rpcSrv.Serve(n.mux.RPCListener()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("forwarding server: %w", err)
		}
		return nil
	})
	switch {
	case n.autoMode():
		g.Go(func() error { return n.det.run(gctx) })
		g.Go(func() error { return n.sel.run(gctx) })
	case n.bftMode():
		// The committee is static and the engine queues the genesis itself:
		// nothing to bootstrap or reconcile.
		g.Go(func() error { n.watchGenesis(gctx); return nil })
		g.Go(func() error { return n.watchEngine(gctx) })
		g.Go(func() error { return n.det.run(gctx) })
	default:
		g.Go(func() error { return n.bootstrap(gctx) })
		g.Go(func() error { n.reconcileMembers(gctx); return nil })
		g.Go(func() error { n.ensureGenesis(gctx); return nil })
		if n.det != nil {
			g.Go(func() error { return n.det.run(gctx) })
		}
	}
	if n.det != nil {
		g.Go(func() error { n.det.gossip.run(gctx); return nil })
	}
	if n.ckpt != nil {
		g.Go(func() error { return n.ckpt.run(gctx) })
	}
	if n.resync != nil {
		g.Go(func() error { return n.resync.run(gctx) })
	}
	n.log.Info("node started", "api", n.APIAddr(), "peer", n.cfg.PeerAddr, "gossip", n.cfg.GossipAddr, "mode", n.cfg.ConsensusMode)

	<-gctx.Done()
	n.log.Info("node stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Stop taking requests and let the in-flight ones finish, then hand
	// leadership over so the cluster does not wait for an election timeout.
	_ = n.apiSrv.Shutdown(shutdownCtx)
	_ = n.rpcSrv.Shutdown(shutdownCtx)
	if !n.bftMode() && n.eng().Status().Role == "leader" {
		tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := n.eng().TransferLeadership(tctx, ""); err != nil {
			n.log.Info("leadership not handed over before stopping", "err", err)
		}
		tcancel()
	}
	var errs []error
	if err := n.members.Leave(time.Second); err != nil {
		n.log.Debug("gossip leave", "err", err)
	}
	if err := n.members.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("gossip shutdown: %w", err))
	}
	if err := n.eng().Stop(); err != nil {
		errs = append(errs, fmt.Errorf("%s engine shutdown: %w", n.currentMode(), err))
	}
	if err := n.mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, fmt.Errorf("peer transport: %w", err))
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, err)
	}
	if n.det != nil {
		_ = n.det.gossip.close()
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// bootstrap forms the cluster on a node without Raft state: from the static
// initial_members, or from the first bootstrap_expect servers discovered
// through gossip. A node with neither waits to be added by the leader.
func (n *Node) bootstrap(ctx context.Context) error {
	has, err := n.raftEng().HasState()
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	if has {
		return nil
	}
	var members []consensus.Member
	switch {
	case len(n.cfg.InitialMembers) > 0:
		ms, err := n.cfg.Members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			members = append(members, consensus.Member{ID: m.ID, Address: m.Addr, Voter: true})
		}
	case n.cfg.BootstrapExpect > 0:
		n.log.Info("waiting for servers to bootstrap", "bootstrap_expect", n.cfg.BootstrapExpect)
		ms, err := n.discoverExpected(ctx, n.cfg.BootstrapExpect)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bootstrap_expect: %w", err)
		}
		members = ms
	default:
		n.log.Info("no Raft state and no bootstrap configuration: waiting to be added to a cluster")
		return nil
	}
	if err := n.raftEng().Bootstrap(members); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	n.log.Info("cluster bootstrapped", "members", len(members))
	return nil
}

// reconcileMembers runs on every node. It keeps the peer directory current
// and, while this node leads, adds as voters the servers that gossip knows,
// that ask to join (they started with no state and no bootstrap
// configuration), that prove their identity on the peer port, and that Raft
// does not know. Servers leave only by an operator's remove-member, and a
// removed server is not added back by gossip.
func (n *Node) reconcileMembers(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-n.members.Notify():
		}
		n.refreshPeers(ctx)
		if n.eng().Status().Role != "leader" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		current, err := n.eng().Members(cctx)
		if err != nil {
			cancel()
			continue
		}
		known := make(map[string]bool, len(current))
		for _, m := range current {
			known[m.ID] = true
		}
		for _, m := range n.members.Members() {
			if known[m.ID] || !m.Join || m.PeerAddr == "" {
				continue
			}
			if err := n.verifier.verify(cctx, m); err != nil {
				n.log.Warn("not adding gossip member", "err", err)
				continue
			}
			n.log.Info("adding server discovered through gossip", "id", m.ID, "address", m.PeerAddr)
			if err := n.raftEng().AddMember(cctx, consensus.Member{ID: m.ID, Address: m.PeerAddr, Voter: true}); err != nil {
				n.log.Warn("adding server failed", "id", m.ID, "err", err)
			}
		}
		cancel()
	}
}

// ensureGenesis initializes the replicated state machine: while it is not
// initialized and this node leads, it proposes the genesis built from its
// own configuration (the first genesis applied wins; the state machine
// refuses later ones). Once initialized it warns if this node's
// configuration differs from the replicated genesis, which is the one in
// effect.
func (n *Node) ensureGenesis(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if g, ok := n.fsm.Genesis(); ok {
			if !sameGenesis(g, n.genesis) {
				n.log.Warn("this node's bootstrap_admin_keys or limits differ from the cluster's genesis; the cluster's values are in effect",
					"cluster", g.Info(), "configured", n.genesis.Info())
			}
			return
		}
		if n.eng().Status().Role == "leader" {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := n.raftEng().ProposeGenesis(pctx, n.genesis)
			cancel()
			switch {
			case err != nil:
				n.log.Debug("genesis proposal did not complete", "err", err)
			case res.Code == smr.CodeOK:
				n.log.Info("cluster initialized", "index", res.Index, "genesis", n.genesis.Info())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sameGenesis(a, b smr.Genesis) bool {
	ai, bi := a.Info(), b.Info()
	return slices.Equal(ai.AdminKeys, bi.AdminKeys) && ai.ResultWindow == bi.ResultWindow && ai.MaxCommandBytes == bi.MaxCommandBytes
}

// --- api.Backend ---

var _ api.Backend = (*Node)(nil)

// Submit implements api.Backend.
func (n *Node) Submit(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	if err := n.resync.serving(); err != nil {
		return smr.Result{}, err
	}
	cached, err := n.precheck(ctx, env)
	if err != nil {
		return smr.Result{}, err
	}
	if cached != nil {
		return *cached, nil
	}
	res, err := n.proposeLocal(ctx, env)
	var nl *consensus.NotLeaderError
	if errors.As(err, &nl) {
		if nl, err = n.awaitLeader(ctx, nl); err != nil {
			return smr.Result{}, err
		}
		if nl == nil { // this node became the leader meanwhile
			return n.proposeLocal(ctx, env)
		}
		res, err := n.forwardWatched(ctx, nl, env)
		if err == nil {
			api.NoteForwardedTo(ctx, nl.LeaderID)
		}
		return res, err
	}
	return res, err
}

// precheck runs the state machine's Precheck. This replica may not have
// applied every acknowledged write yet (a follower learns of commits after
// the leader answers), and a rejection that a newer state could lift —
// the client's invitation or a permission granted through another node, or
// a seq window that moved on — is only reported after checking again at a
// linearizable read point. Other answers do not depend on newer state.
func (n *Node) precheck(ctx context.Context, env *smr.Envelope) (*smr.Result, error) {
	cached, err := n.fsm.Precheck(env)
	var se *smr.Error
	if err == nil || !errors.As(err, &se) {
		return cached, err
	}
	switch se.Code {
	case smr.CodeUnknownClient, smr.CodePermissionDenied, smr.CodeSeqTooFar:
	default:
		return nil, err
	}
	if berr := n.readBarrier(ctx); berr != nil {
		return nil, berr
	}
	return n.fsm.Precheck(env)
}

func (n *Node) proposeLocal(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	res, err := n.eng().Propose(ctx, env)
	return n.epochAnswer(res, err)
}

// awaitLeader waits (bounded) for a leader to be known. It returns nil when
// this node is the leader.
func (n *Node) awaitLeader(ctx context.Context, nl *consensus.NotLeaderError) (*consensus.NotLeaderError, error) {
	if nl.LeaderAddr != "" {
		return nl, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no leader elected yet", api.ErrUnavailable)
		case <-t.C:
		}
		st := n.eng().Status()
		if st.Role == "leader" {
			return nil, nil
		}
		if st.LeaderAddr != "" {
			return &consensus.NotLeaderError{LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr}, nil
		}
	}
}

// Query implements api.Backend.
func (n *Node) Query(ctx context.Context, q smr.Query, stale bool) (value json.RawMessage, index uint64, err error) {
	if err := n.resync.serving(); err != nil {
		return nil, 0, err
	}
	if !stale {
		if err := n.readBarrier(ctx); err != nil {
			return nil, 0, err
		}
	}
	return n.fsm.QueryAt(q)
}

// readBarrier makes the local state reflect every write committed before
// the call: on the leader through the engine, on a follower by waiting for
// the read index the leader confirmed.
func (n *Node) readBarrier(ctx context.Context) error {
	err := n.eng().ReadBarrier(ctx)
	var nl *consensus.NotLeaderError
	if !errors.As(err, &nl) {
		return err
	}
	nl, err = n.awaitLeader(ctx, nl)
	if err != nil {
		return err
	}
	if nl == nil {
		return n.eng().ReadBarrier(ctx)
	}
	idx, err := n.forwardReadIndex(ctx, nl)
	if err != nil {
		return err
	}
	return n.fsm.waitApplied(ctx, idx)
}

// Status implements api.Backend.
func (n *Node) Status(context.Context) api.NodeStatus {
	st := n.eng().Status()
	idx, sum := n.fsm.Hash()
	st.AppliedIndex = idx
	return api.NodeStatus{Status: st, StateHash: hex.EncodeToString(sum[:]), Version: Version, Tunables: n.Tunables(), Epoch: n.Epoch(), Checkpoint: n.CheckpointStatus()}
}

// Members implements api.Backend.
func (n *Node) Members(ctx context.Context) ([]consensus.Member, error) { return n.eng().Members(ctx) }

// Authorize implements api.Backend.
func (n *Node) Authorize(key ed25519.PublicKey, perm smr.Permission) error {
	return n.fsm.Authorize(key, perm)
}

// Ready implements api.Backend.
func (n *Node) Ready() error {
	st := n.eng().Status()
	if st.LeaderID == "" {
		return errors.New("no leader known")
	}
	if !n.fsm.Initialized() {
		return errors.New("the cluster has not applied its genesis entry yet")
	}
	if st.Role == "shutdown" {
		return errors.New("shutting down")
	}
	return n.resync.serving()
}

// TransferLeader implements api.Backend. In bft mode it forces a view
// change (on this node and, by request, on its peers); any node takes it.
func (n *Node) TransferLeader(ctx context.Context, id string) error {
	if err := n.checkTransferTarget(ctx, id); err != nil {
		return err
	}
	if n.bftMode() {
		return n.bftEng().TransferLeadership(ctx, id)
	}
	return n.onLeader(ctx, func() error { return n.eng().TransferLeadership(ctx, id) })
}

// SnapshotSave implements api.Backend. The Raft leader snapshots through
// its engine; a Raft follower, and every node in bft mode (all replicas
// apply the same log), snapshots its own state machine after a read barrier,
// which makes it as fresh as one taken on the leader.
func (n *Node) SnapshotSave(ctx context.Context, w io.Writer) (uint64, error) {
	if !n.bftMode() {
		idx, err := n.raftEng().SaveSnapshot(ctx, w)
		var nl *consensus.NotLeaderError
		if !errors.As(err, &nl) {
			return idx, err
		}
	}
	if err := n.readBarrier(ctx); err != nil {
		return 0, err
	}
	b, err := n.fsm.Snapshot()
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	idx, _, err := smr.SnapshotInfo(b)
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return 0, fmt.Errorf("writing snapshot: %w", err)
	}
	return idx, nil
}

// SnapshotRestore implements api.Backend.
func (n *Node) SnapshotRestore(ctx context.Context, r *smr.Restore) (smr.Result, error) {
	if err := n.fsm.PrecheckRestore(r); err != nil {
		return smr.Result{}, err
	}
	if n.bftMode() {
		return n.bftEng().ProposeRestore(ctx, r)
	}
	var res smr.Result
	err := n.onLeader(ctx, func() (err error) {
		res, err = n.raftEng().ProposeRestore(ctx, r)
		return err
	})
	return res, err
}

// AddMember implements api.Backend. In bft mode the committee is fixed.
func (n *Node) AddMember(ctx context.Context, m consensus.Member) error {
	if n.bftMode() {
		return staticCommittee("add member " + m.ID)
	}
	return n.onLeader(ctx, func() error { return n.raftEng().AddMember(ctx, m) })
}

// RemoveMember implements api.Backend. In bft mode the committee is fixed.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if n.bftMode() {
		return staticCommittee("remove member " + id)
	}
	return n.onLeader(ctx, func() error { return n.raftEng().RemoveMember(ctx, id) })
}

// onLeader runs an admin operation that the engine only accepts on the
// leader; on a follower it answers no_leader naming the leader, so the
// client can send it there.
func (n *Node) onLeader(_ context.Context, f func() error) error {
	err := f()
	var nl *consensus.NotLeaderError
	if errors.As(err, &nl) {
		// Keep nl in the chain: the API reports its LeaderID as leader_id,
		// which the SDK follows.
		return fmt.Errorf("%w: this admin operation must be sent to the leader: %w", api.ErrUnavailable, nl)
	}
	return err
}

// decodeGossipKey parses a memberlist key: base64 of 16, 24 or 32 bytes.
func decodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	default:
		return nil, fmt.Errorf("key is %d bytes; memberlist needs 16, 24 or 32", len(k))
	}
}

// registerAll registers every collector with r; an error names what (for
// example "gossip metrics").
func registerAll(r prometheus.Registerer, what string, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}
