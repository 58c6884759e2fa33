package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// datasetScenario is the dataset test run on a cluster of real processes
// in either consensus mode. There is one SDK agent per node, agent i
// preferring node i, and one more agent that works through the tandem
// binary's `dataset` verbs. The modes differ only in how a client reaches
// the cluster and which node is stopped.
type datasetScenario struct {
	c *cluster
	// connect returns a client signing with key; with prefer >= 0 it
	// prefers node prefer (asks it first, or asks it to propose).
	connect func(key ed25519.PrivateKey, prefer int) *client.Client
	// down picks the node stopped while the agents keep syncing.
	down func() string
}

const (
	datasetName     = "shared"
	datasetCells    = 8
	contendedCell   = datasetCells - 1
	datasetRounds   = 3 // before the stop, while a node is down, after it restarts
	datasetCellSize = 16
)

// run creates the dataset and plays the rounds, the attacks and the final
// convergence checks.
func (s datasetScenario) run(t *testing.T) {
	c := s.c
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	admin := s.connect(c.admin, -1)

	agents := len(c.layout.Nodes)
	keys := make([]ed25519.PrivateKey, agents)
	spec := client.DatasetSpec{Name: datasetName, Cells: datasetCells, CellSize: datasetCellSize, StepLimit: 100}
	for i := range keys {
		keys[i] = newKey(t)
		spec.Agents = append(spec.Agents, smr.FormatKey(keys[i].Public().(ed25519.PublicKey)))
	}
	if _, err := admin.CreateDataset(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// The cluster's admin invites the CLI agent with the CLI.
	cli := newCLIAgent(t, c)
	cli.run(ctx, false, "invite", datasetName, cli.agent)
	spec.Agents = append(spec.Agents, cli.agent)

	clients := make([]*client.Client, agents)
	reps := make([]*client.Replica, agents)
	for i, k := range keys {
		clients[i] = s.connect(k, i)
		r, err := client.FetchReplica(ctx, clients[i], spec.Name, k)
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = r
	}

	// edit makes agent i's offline changes of round: its own cell, and
	// the contended cell at the same global seq as everyone else.
	edit := func(i, round int) {
		if _, err := reps[i].Set(i, fmt.Appendf(nil, "agent%d-r%d", i, round)); err != nil {
			t.Fatal(err)
		}
		if _, err := reps[i].SetAt(contendedCell, fmt.Appendf(nil, "contended-%d", i), uint64(round+1)); err != nil {
			t.Fatal(err)
		}
	}
	syncAll := func() {
		var wg sync.WaitGroup
		errs := make([]error, agents)
		for i := range reps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = reps[i].Sync(ctx, clients[i])
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("agent %d sync: %v", i, err)
			}
		}
	}
	round := func(r int) {
		for i := range reps {
			edit(i, r)
		}
		cli.set(ctx, agents, fmt.Sprintf("cli-r%d", r))
		syncAll()
		cli.sync(ctx)
	}

	round(0)
	// A node goes down; agents keep editing and syncing (the one that
	// prefers it fails over to the other nodes).
	down := s.down()
	t.Logf("stopping %s", down)
	if err := c.Stop(down, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	round(1)
	if err := c.Start(down); err != nil {
		t.Fatal(err)
	}
	round(2)

	attackDataset(ctx, t, c, admin, clients[0], s.connect, spec, keys)

	// Everyone syncs twice (the second pulls what the others pushed).
	syncAll()
	syncAll()
	cli.sync(ctx)
	hash := c.waitConverged(c.ids(), 30*time.Second)
	final := readDataset(ctx, t, admin, spec.Name)
	for _, n := range c.layout.Nodes {
		got, _, err := c.newClient(nil, n.Endpoint()).GetDataset(ctx, spec.Name)
		if err != nil {
			t.Fatalf("read through %s: %v", n.ID, err)
		}
		if !sameDataset(got, final) {
			t.Fatalf("%s serves another dataset", n.ID)
		}
	}
	for _, opt := range []string{"", "--fast", "--stale"} {
		if got := cli.getRemote(ctx, opt); !sameDataset(got, final) {
			t.Fatalf("`tandem dataset get --remote %s` shows another dataset:\n%+v\n%+v", opt, got, final)
		}
	}
	if got := cli.list(ctx); len(got) != 1 || got[0].Name != datasetName || got[0].Version != final.Version || got[0].AgentCount != agents+1 {
		t.Fatalf("`tandem dataset list` shows %+v", got)
	}
	want := reps[0].Cells()
	for i, r := range reps {
		if got := r.Cells(); !sameCellList(got, want) || len(r.Pending()) != 0 {
			t.Fatalf("replica %d differs or has pending changes", i)
		}
	}
	if r := cli.replica(); !sameCellList(r.Cells(), want) || len(r.Pending()) != 0 {
		t.Fatalf("the CLI agent's replica differs or has pending changes")
	}
	if got := want[agents]; !bytes.HasPrefix(got.Value, fmt.Appendf(nil, "cli-r%d", datasetRounds-1)) {
		t.Fatalf("cell %d (the CLI agent's) = %d %q", agents, got.GlobalSeq, got.Value)
	}
	// The contended cell: every agent wrote the last round's global seq;
	// the greatest value won, whoever wrote it.
	if got := want[contendedCell]; got.GlobalSeq != datasetRounds || !bytes.HasPrefix(got.Value, fmt.Appendf(nil, "contended-%d", agents-1)) {
		t.Fatalf("cell %d = %d %q", contendedCell, got.GlobalSeq, got.Value)
	}
	t.Logf("converged: version %d, state hash %s", final.Version, hash)
}

// attackDataset sends invalid changes through cl (agent 0's client): each
// is rejected with its reason and the dataset does not change. An
// uninvited client cannot sync at all.
func attackDataset(ctx context.Context, t *testing.T, c *cluster, admin, cl *client.Client,
	connect func(ed25519.PrivateKey, int) *client.Client, spec client.DatasetSpec, keys []ed25519.PrivateKey) {
	t.Helper()
	// Agent 0 first signs ten more local seqs than it has used, so that its
	// next local seqs are valid.
	a0, a1 := keys[0], keys[1]
	ref := readDataset(ctx, t, admin, spec.Name).Ref()
	_, agent0 := findAgent(t, readDataset(ctx, t, admin, spec.Name), spec.Agents[0])
	st, err := smr.SignSeqStatement(a0, ref, agent0.LastSeq+10)
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := cl.SyncDataset(ctx, spec.Name, &smr.DatasetSnapshot{Statements: []smr.SeqStatement{st}}); err != nil || len(out.StatementsRejected) != 0 {
		t.Fatalf("statement sync: %+v %v", out, err)
	}
	before, last := findAgent(t, readDataset(ctx, t, admin, spec.Name), spec.Agents[0])
	if last.Available >= 100 {
		t.Fatalf("agent 0 has %d local seqs available; the attack below needs fewer than 100", last.Available)
	}
	sign := func(k ed25519.PrivateKey, l uint64, cell uint32, g uint64, v string) smr.DatasetChange {
		ch, err := smr.SignChange(k, ref, smr.DatasetChange{LocalSeq: l, Cell: cell, GlobalSeq: g, Value: bytes.Repeat([]byte(v), datasetCellSize)[:datasetCellSize]})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	forged := sign(a0, last.LastSeq+1, 3, 1, "f")
	forged.Agent = a1.Public().(ed25519.PublicKey)
	stranger := newKey(t)
	attacks := []struct {
		change smr.DatasetChange
		reason smr.SyncRejected
	}{
		{sign(a0, last.LastSeq+1, 0, math.MaxUint64, "m"), smr.RejectTooHigh},                 // a maximal global seq
		{sign(a0, last.LastSeq+2, 0, before.Values[0].GlobalSeq+100, "s"), smr.RejectTooHigh}, // within the step limit, beyond the signed seqs
		{sign(a0, last.LastSeq, 5, 1, "r"), smr.RejectReplayed},
		{forged, smr.RejectBadSignature},
		{sign(a0, last.LastSeq+3, datasetCells, 1, "o"), smr.RejectCellOutOfRange},
		{sign(stranger, 1, 6, 1, "u"), smr.RejectNotInvited},
	}
	for _, a := range attacks {
		snap := smr.DatasetSnapshot{Changes: []smr.DatasetChange{a.change}}
		out, _, err := cl.SyncDataset(ctx, spec.Name, &snap)
		if err != nil {
			t.Fatalf("attack sync: %v", err)
		}
		if len(out.Rejected) != 1 || out.Rejected[0].Reason != a.reason {
			t.Fatalf("attack %s: outcome %+v", a.reason, out)
		}
		t.Logf("rejected as %s: %s", a.reason, out.Rejected[0].Message)
	}
	if after := readDataset(ctx, t, admin, spec.Name); !sameDataset(before, after) {
		t.Fatalf("attacks changed the dataset:\n%+v\n%+v", before, after)
	}
	outsider := connect(stranger, -1)
	if _, _, err := outsider.SyncDataset(ctx, spec.Name, &smr.DatasetSnapshot{}); client.ErrorCode(err) != smr.CodeUnknownClient {
		t.Fatalf("uninvited sync: %v", err)
	}
	if after := readDataset(ctx, t, admin, spec.Name); !sameDataset(before, after) {
		t.Fatalf("the uninvited sync changed the dataset:\n%+v\n%+v", before, after)
	}
}

// cliAgent is an agent that edits and syncs through the tandem binary with
// the cluster's client config (a committee in bft mode) and its own key.
type cliAgent struct {
	t       *testing.T
	key     ed25519.PrivateKey
	agent   string
	keyFile string
	config  string // the cluster's client config (the admin's key)
	state   string
}

func newCLIAgent(t *testing.T, c *cluster) *cliAgent {
	t.Helper()
	dir := t.TempDir()
	k := newKey(t)
	keyFile := filepath.Join(dir, "agent.key")
	if err := identity.WriteKeyFile(keyFile, k); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	return &cliAgent{t: t, key: k, agent: smr.FormatKey(k.Public().(ed25519.PublicKey)), keyFile: keyFile,
		config: c.layout.ClientConfigPath, state: state}
}

// run runs `tandem -o json dataset VERB args...` with the client config,
// the agent's key (else the config's admin key) and its state directory,
// and returns the standard output.
func (a *cliAgent) run(ctx context.Context, asAgent bool, verb string, args ...string) []byte {
	a.t.Helper()
	argv := append([]string{"-o", "json", "dataset", verb}, args...)
	argv = append(argv, "--client-config", a.config, "--state-dir", a.state)
	if asAgent {
		argv = append(argv, "--key", a.keyFile)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, argv...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		a.t.Fatalf("tandem dataset %s %s: %v\n%s", verb, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func (a *cliAgent) set(ctx context.Context, cell int, value string) {
	a.t.Helper()
	a.run(ctx, true, "set", datasetName, fmt.Sprint(cell), value)
}

// sync runs `dataset sync` and checks that every change it sent was
// accepted.
func (a *cliAgent) sync(ctx context.Context) {
	a.t.Helper()
	var out struct {
		Changes []struct {
			Verdict client.Verdict `json:"verdict"`
			Reason  string         `json:"reason"`
		} `json:"changes"`
	}
	raw := a.run(ctx, true, "sync", datasetName)
	if err := json.Unmarshal(raw, &out); err != nil {
		a.t.Fatalf("dataset sync output %q: %v", raw, err)
	}
	for _, ch := range out.Changes {
		if ch.Verdict != client.VerdictAccepted {
			a.t.Fatalf("dataset sync: a change of the CLI agent was %s (%s):\n%s", ch.Verdict, ch.Reason, raw)
		}
	}
}

// getRemote reads the dataset with `dataset get --remote` and opt (a read
// option flag, or none when empty).
func (a *cliAgent) getRemote(ctx context.Context, opt string) smr.DatasetInfo {
	a.t.Helper()
	args := []string{datasetName, "--remote"}
	if opt != "" {
		args = append(args, opt)
	}
	raw := a.run(ctx, false, "get", args...)
	var info smr.DatasetInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		a.t.Fatalf("dataset get --remote %s output %q: %v", opt, raw, err)
	}
	return info
}

func (a *cliAgent) list(ctx context.Context) []smr.DatasetInfo {
	a.t.Helper()
	raw := a.run(ctx, false, "list")
	var out []smr.DatasetInfo
	if err := json.Unmarshal(raw, &out); err != nil {
		a.t.Fatalf("dataset list output %q: %v", raw, err)
	}
	return out
}

// replica loads the CLI agent's local replica file.
func (a *cliAgent) replica() *client.Replica {
	a.t.Helper()
	r, err := client.OpenReplica(filepath.Join(a.state, datasetName+"@"+a.agent+".json"), a.key)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// findAgent returns info and the record of agent in it.
func findAgent(t *testing.T, info smr.DatasetInfo, agent string) (smr.DatasetInfo, smr.AgentInfo) {
	t.Helper()
	i := slices.IndexFunc(info.Agents, func(a smr.AgentInfo) bool { return a.Agent == agent })
	if i < 0 {
		t.Fatalf("agent %s is not in dataset %s", agent, info.Name)
	}
	return info, info.Agents[i]
}

func readDataset(ctx context.Context, t *testing.T, cl *client.Client, name string) smr.DatasetInfo {
	t.Helper()
	info, _, err := cl.GetDataset(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func sameDataset(a, b smr.DatasetInfo) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func sameCellList(a, b []smr.Cell) bool {
	return slices.EqualFunc(a, b, func(x, y smr.Cell) bool { return smr.CompareCells(x, y) == 0 })
}
