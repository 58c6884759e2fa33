package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
)

var soakSeed = flag.Uint64("tandem.seed", 0,
	"seed of TestNoFalsePositives's fault schedule and load (0: one from the clock, logged)")

// soakShort is how long TestNoFalsePositives runs each mode without
// -tandem.long.
const soakShort = 45 * time.Second

// soakAnomaly is the default anomaly_threshold: a threat level at or above
// it escalates (docs/detector.md, Scoring). The soak keeps the default.
const soakAnomaly = 0.7

// soakMaxGap bounds the time without an acknowledged write: with at most
// f nodes down or paused at a time, the others commit within elections,
// view changes and catch-up.
const soakMaxGap = 20 * time.Second

// TestNoFalsePositives: no correct node is ever quarantined (DESIGN
// invariants 7–9). Four processes of the default build, in bft mode and in
// consensus_mode auto (Raft with the detector's leader attestations),
// under a steady SDK write load, take random faults from a seeded
// schedule, one at a time so that at most f = 1 node is out: SIGKILL and
// restart of a node (the leader half the time), SIGSTOP of a node for
// 0.2–2 s then SIGCONT (a stalled node or a slow link), and bursts of
// extra writers on top. After every fault and at the end, on every node:
// nothing is quarantined, the threat level and every member's score stay
// below anomaly_threshold, no escalation was asked for, and in auto mode
// the cluster still runs epoch 1 in cft. Accusations may be signed (a
// killed or stopped node's votes are late) and are reported by kind,
// accuser and accused; none reaches an action. Writes keep being
// acknowledged (no gap over soakMaxGap), every acknowledged write reads
// back, and the nodes converge to one state hash.
//
// Each mode runs 45 s, or -tandem.long; -tandem.seed replays a schedule.
func TestNoFalsePositives(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	for _, mode := range []string{"bft", "auto"} {
		t.Run(mode, func(t *testing.T) { runSoak(t, mode) })
	}
}

// soak is one mode's run.
type soak struct {
	t    *testing.T
	c    *cluster
	mode string
	adm  *adminHTTP
	// admin signs the epoch queries (auto mode).
	admin *client.Client
	rng   *rand.Rand

	began  time.Time
	faults map[string]int
	paused time.Duration

	// What the detector showed, over every check.
	accusations map[string]soakAccusation // evidence ID → accusation
	proofs      map[string]api.EvidenceSummary
	maxThreat   float64
	maxScore    map[string]float64
	checks      int
	// attestations: the leader attestations peers sent, summed over the
	// nodes at the final check (auto: the detector was watching Raft).
	attestations float64
}

type soakAccusation struct {
	accuser, accused, metric string
	value                    int64
}

func runSoak(t *testing.T, mode string) {
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	duration := soakShort
	if *longRun > 0 {
		duration = *longRun
	}
	extra := map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms"}
	if mode == "auto" {
		extra["raft"] = fastRaft
	}
	c := launch(t, devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: mode, Extra: extra})
	if mode == "auto" {
		c.waitLeader(nil, 30*time.Second)
	}
	c.waitReady(30 * time.Second)
	t.Logf("soak %s: 4 nodes, %s, seed %d (replay with -tandem.seed=%d)", mode, duration, seed, seed)

	s := &soak{
		t: t, c: c, mode: mode,
		adm:         &adminHTTP{key: c.admin, http: &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 3 * time.Second}},
		admin:       c.newClient(c.admin),
		rng:         rand.New(rand.NewPCG(seed, 0x50a4)),
		faults:      map[string]int{},
		accusations: map[string]soakAccusation{},
		proofs:      map[string]api.EvidenceSummary{},
		maxScore:    map[string]float64{},
	}
	defer s.adm.http.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), duration+3*time.Minute)
	defer cancel()

	// The detector runs on every node in both modes (auto lists the member
	// keys in initial_members).
	for _, id := range c.ids() {
		var list api.EvidenceListView
		if err := s.adm.get(ctx, c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
			t.Fatalf("%s runs no detector: %v", id, err)
		}
	}

	const base, burst = 3, 6
	sdks := c.linzClients(ctx, base+burst, func(i int, key ed25519.PrivateKey) *client.Client { return s.client(key, i) })
	load := &soakLoad{ctx: ctx}
	defer load.stop() // also when a check fails midway
	for i := range base {
		load.writer(sdks[i], i)
	}

	s.began = time.Now()
	end := s.began.Add(duration)
	for step := 1; time.Now().Before(end); step++ {
		switch r := s.rng.IntN(100); {
		case r < 35:
			s.killRestart(step)
		case r < 80:
			s.pause(step)
		default:
			s.burst(step, load, sdks[base:])
		}
		// A quiet spell between faults.
		time.Sleep(time.Duration(500+s.rng.IntN(2500)) * time.Millisecond)
		s.check(ctx, false)
	}
	load.stop()

	// Every node is up (the fault steps restart and resume what they
	// took down); they converge, and the detector's verdict is final.
	hash := c.waitConverged(c.ids(), 60*time.Second)
	s.check(ctx, true)
	s.report(load, hash)
	s.readBack(ctx, load)
}

// client returns an SDK client for key: in bft mode one configured with
// the committee (writes accepted on f+1 signed replies), otherwise one
// over every endpoint, starting at node i.
func (s *soak) client(key ed25519.PrivateKey, i int) *client.Client {
	t, c := s.t, s.c
	if s.mode != "bft" {
		eps := c.layout.Endpoints()
		k := i % len(eps)
		return c.newClient(key, append(slices.Clone(eps[k:]), eps[:k]...)...)
	}
	committee, err := c.layout.Committee()
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.clientConfig(key)
	cfg.Committee = committee
	cfg.Retry.MaxAttempts = 10
	return c.clientWith(cfg)
}

// at is the time since the run began, for the fault log.
func (s *soak) at() string { return time.Since(s.began).Round(100 * time.Millisecond).String() }

// leader is the leader a live node reports (Raft leader or the current
// view's), or "" when none answers.
func (s *soak) leader() string {
	for _, id := range s.c.ids() {
		if st, err := s.c.status(id); err == nil && st.LeaderID != "" {
			return st.LeaderID
		}
	}
	return ""
}

// victim picks the node a fault hits: the leader half the time.
func (s *soak) victim() (string, bool) {
	if s.rng.IntN(2) == 0 {
		if l := s.leader(); l != "" {
			return l, true
		}
	}
	ids := s.c.ids()
	return ids[s.rng.IntN(len(ids))], false
}

// killRestart crashes a node with SIGKILL, keeps it down 1–5 s, restarts
// it and waits until every node is ready again, so that the next fault
// never takes a second node out.
func (s *soak) killRestart(step int) {
	t, c := s.t, s.c
	v, isLeader := s.victim()
	down := time.Duration(1000+s.rng.IntN(4000)) * time.Millisecond
	t.Logf("%s step %d: SIGKILL %s (leader %v), down %s", s.at(), step, v, isLeader, down)
	if err := c.Kill(v); err != nil {
		t.Fatal(err)
	}
	s.faults["kill"]++
	if isLeader {
		s.faults["kill-leader"]++
	}
	time.Sleep(down)
	if err := c.Start(v); err != nil {
		t.Fatal(err)
	}
	c.waitReady(60 * time.Second)
}

// pause stops a node with SIGSTOP for 0.2–2 s, then SIGCONT: its timers,
// votes, heartbeats and replies all stall, as behind a slow link.
func (s *soak) pause(step int) {
	t, c := s.t, s.c
	v, isLeader := s.victim()
	d := time.Duration(200+s.rng.IntN(1800)) * time.Millisecond
	pid := c.Pid(v)
	if pid == 0 {
		t.Fatalf("%s is not running", v)
	}
	t.Logf("%s step %d: SIGSTOP %s (leader %v) for %s", s.at(), step, v, isLeader, d)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", v, err)
	}
	s.faults["pause"]++
	if isLeader {
		s.faults["pause-leader"]++
	}
	s.paused += d
	time.Sleep(d)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", v, err)
	}
}

// burst runs extra writers for 2–4 s on top of the steady load.
func (s *soak) burst(step int, load *soakLoad, sdks []*client.Client) {
	d := time.Duration(2000+s.rng.IntN(2000)) * time.Millisecond
	s.t.Logf("%s step %d: burst of %d writers for %s", s.at(), step, len(sdks), d)
	s.faults["burst"]++
	var halt atomic.Bool
	var wg sync.WaitGroup
	for i, sdk := range sdks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			load.run(sdk, 100*step+i, &halt)
		}()
	}
	time.Sleep(d)
	halt.Store(true)
	wg.Wait()
}

// check asks every node for its quarantine list, detector metrics,
// evidence and (auto) epoch, and fails on any action against a member.
// Between faults a node may still be starting; at the end (final) every
// node must answer.
func (s *soak) check(ctx context.Context, final bool) {
	t, c := s.t, s.c
	s.checks++
	for _, id := range c.ids() {
		if err := s.checkNode(ctx, id, final); err != nil {
			if final || !errors.Is(err, errUnreachable) {
				t.Fatalf("%s: %v", id, err)
			}
			t.Logf("%s: %v", id, err)
		}
	}
}

var errUnreachable = errors.New("unreachable")

func (s *soak) checkNode(ctx context.Context, id string, final bool) error {
	ep := s.c.endpoint(id)
	var q api.QuarantineView
	if err := s.adm.get(ctx, ep, "/v1/admin/quarantine", &q); err != nil {
		return fmt.Errorf("%w: quarantine list: %v", errUnreachable, err)
	}
	if len(q.Quarantined) > 0 {
		s.logAccusations()
		return fmt.Errorf("a correct node is quarantined: %+v", q.Quarantined)
	}
	metrics, err := s.metrics(ep)
	if err != nil {
		return fmt.Errorf("%w: metrics: %v", errUnreachable, err)
	}
	if final {
		s.attestations += metrics["tandem_detector_peer_attestations_total"]
	}
	threat := metrics["tandem_detector_threat_level"]
	s.maxThreat = max(s.maxThreat, threat)
	if threat >= soakAnomaly {
		s.logAccusations()
		return fmt.Errorf("threat level %v reaches anomaly_threshold %v", threat, soakAnomaly)
	}
	if n := metrics["tandem_quarantined_members"]; n != 0 {
		return fmt.Errorf("tandem_quarantined_members is %v", n)
	}
	if n := metrics["tandem_detector_escalations_total"]; n != 0 {
		s.logAccusations()
		return fmt.Errorf("the detector asked to escalate %v times", n)
	}
	for _, m := range s.c.ids() {
		score := metrics[`tandem_detector_score{member="`+m+`"}`]
		s.maxScore[m] = max(s.maxScore[m], score)
		if score >= soakAnomaly {
			s.logAccusations()
			return fmt.Errorf("%s's score is %v", m, score)
		}
	}
	if s.mode == "auto" {
		st, err := s.c.epochOf(ctx, s.admin, id)
		if err != nil {
			return fmt.Errorf("%w: epoch: %v", errUnreachable, err)
		}
		if st.Epoch != 1 || st.Mode != "cft" || st.Switching {
			return fmt.Errorf("left epoch 1 (cft): epoch %d %s switching=%v, reason %q", st.Epoch, st.Mode, st.Switching, st.Reason)
		}
	}
	var list api.EvidenceListView
	if err := s.adm.get(ctx, ep, "/v1/admin/evidence", &list); err != nil {
		return fmt.Errorf("%w: evidence: %v", errUnreachable, err)
	}
	for _, e := range list.Evidence {
		if e.Irrefutable {
			s.proofs[e.ID] = e
			s.logAccusations()
			return fmt.Errorf("holds a proof against a correct node: %+v", e)
		}
		if _, ok := s.accusations[e.ID]; ok || e.Kind != evidence.KindAccusation.String() {
			continue
		}
		var raw json.RawMessage
		if err := s.adm.get(ctx, ep, "/v1/admin/evidence/"+e.ID, &raw); err != nil {
			return fmt.Errorf("%w: evidence %s: %v", errUnreachable, e.ID, err)
		}
		var ev evidence.Evidence
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("evidence %s: %w", e.ID, err)
		}
		a := ev.Accusation
		s.accusations[e.ID] = soakAccusation{accuser: string(a.Accuser), accused: string(a.Accused), metric: a.Metric.String(), value: a.Value}
	}
	return nil
}

// metrics reads the node's detector metrics (name with labels → value).
func (s *soak) metrics(endpoint string) (map[string]float64, error) {
	resp, err := s.adm.http.Get(endpoint + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "tandem_detector_") && !strings.HasPrefix(line, "tandem_quarantined") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// accusationTable groups the accusations seen by metric, accuser and
// accused: "metric accuser→accused ×n (values v1..v2)", sorted.
func (s *soak) accusationTable() []string {
	type group struct {
		n      int
		lo, hi int64
	}
	groups := map[string]*group{}
	for _, a := range s.accusations {
		k := fmt.Sprintf("%s %s→%s", a.metric, a.accuser, a.accused)
		g, ok := groups[k]
		if !ok {
			g = &group{lo: a.value, hi: a.value}
			groups[k] = g
		}
		g.n++
		g.lo, g.hi = min(g.lo, a.value), max(g.hi, a.value)
	}
	var out []string
	for k, g := range groups {
		out = append(out, fmt.Sprintf("%s ×%d (values %d..%d)", k, g.n, g.lo, g.hi))
	}
	sort.Strings(out)
	return out
}

func (s *soak) logAccusations() {
	s.t.Logf("accusations so far: %d: %s", len(s.accusations), strings.Join(s.accusationTable(), "; "))
}

// report logs the faults, the accusations and the load.
func (s *soak) report(load *soakLoad, hash string) {
	t := s.t
	acked, failed, gap := load.summary()
	t.Logf("faults: %d SIGKILL+restart (%d of the leader), %d SIGSTOP/SIGCONT (%d of the leader, %s stopped in all), %d bursts; %d detector checks",
		s.faults["kill"], s.faults["kill-leader"], s.faults["pause"], s.faults["pause-leader"], s.paused.Round(100*time.Millisecond), s.faults["burst"], s.checks)
	t.Logf("detector: 0 quarantined, 0 proofs, max threat level %.3f, max score per member %v; %d accusations signed: %s",
		s.maxThreat, s.maxScore, len(s.accusations), strings.Join(s.accusationTable(), "; "))
	t.Logf("load: %d writes acknowledged, %d failed or unknown; longest gap without an acknowledgement %s; converged on state hash %s",
		acked, failed, gap.Round(time.Millisecond), hash)
	if s.mode == "auto" {
		t.Logf("leader attestations exchanged between the nodes: %.0f", s.attestations)
		if s.attestations == 0 {
			t.Errorf("no leader attestation was exchanged: the detector did not watch Raft")
		}
	}
	if acked < 50 {
		t.Errorf("only %d writes acknowledged", acked)
	}
	if gap > soakMaxGap {
		t.Errorf("no write acknowledged for %s (bound %s)", gap.Round(time.Millisecond), soakMaxGap)
	}
}

// readBack checks that every acknowledged write reads back, with its
// value, through a linearizable read.
func (s *soak) readBack(ctx context.Context, load *soakLoad) {
	t := s.t
	reader := s.client(s.c.admin, 0)
	found := map[string]string{}
	for attempt := 0; ; attempt++ {
		es, _, err := reader.ListConfig(ctx)
		if err == nil {
			for _, e := range es {
				found[e.Key] = e.Value
			}
			break
		}
		if attempt == 20 || ctx.Err() != nil {
			t.Fatalf("read back the config: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	missing := 0
	for k, v := range load.ackedWrites() {
		if got, ok := found[k]; !ok || got != v {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged write %s=%s reads back as %q (present %v)", k, v, got, ok)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged writes missing", missing)
	}
}

// soakLoad is the write load: each writer sets a fresh key per write.
type soakLoad struct {
	ctx context.Context

	halt atomic.Bool
	wg   sync.WaitGroup

	mu     sync.Mutex
	acks   []time.Time
	acked  map[string]string
	failed int
}

// writer starts a steady writer on sdk until stop.
func (l *soakLoad) writer(sdk *client.Client, i int) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(sdk, i, &l.halt)
	}()
}

// run writes "soak-<i>-<j>" keys until halt or the load stops.
func (l *soakLoad) run(sdk *client.Client, i int, halt *atomic.Bool) {
	for j := 0; !halt.Load() && !l.halt.Load() && l.ctx.Err() == nil; j++ {
		key, val := fmt.Sprintf("soak-%d-%d", i, j), fmt.Sprintf("w%d", j)
		opCtx, cancel := context.WithTimeout(l.ctx, 8*time.Second)
		_, err := sdk.SetConfig(opCtx, key, val)
		cancel()
		l.mu.Lock()
		if err == nil {
			if l.acked == nil {
				l.acked = map[string]string{}
			}
			l.acked[key] = val
			l.acks = append(l.acks, time.Now())
		} else {
			l.failed++
		}
		l.mu.Unlock()
	}
}

func (l *soakLoad) stop() {
	l.halt.Store(true)
	l.wg.Wait()
}

// summary returns the acknowledged and failed writes and the longest time
// between two consecutive acknowledgements.
func (l *soakLoad) summary() (acked, failed int, gap time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acks := slices.Clone(l.acks)
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i].Sub(acks[i-1]))
	}
	return len(acks), l.failed, gap
}

func (l *soakLoad) ackedWrites() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.acked))
	for k, v := range l.acked {
		out[k] = v
	}
	return out
}
