package e2e

import (
	"cmp"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
)

// byzantineCase is one behaviour of the byzantine build and the verdict
// every correct node must reach.
type byzantineCase struct {
	// behaviour is the value of TANDEM_BYZANTINE for node4; the node logs
	// "byzantine: <behaviour>" when it acts.
	behaviour string
	// quarantine: every correct node quarantines node4 with evidence of
	// this kind: irrefutable, or (KindAccusation) signed accusations of
	// metric accused from at least f+1 distinct correct members. Zero: no
	// one is quarantined anywhere.
	quarantine evidence.Kind
	accused    evidence.Metric
	// warn: node4 ends with a warning (a positive score below the anomaly
	// threshold, from accusations of metric accused) and nothing more.
	warn bool
	// escalate: node4 ends with a score at the escalate level (at least
	// the anomaly threshold, below the quarantine threshold) from
	// accusations of metric accused by at least f+1 distinct correct
	// members, and is not quarantined.
	escalate bool
	// within is how long the correct nodes have to reach the verdict
	// (default 20 s).
	within time.Duration
	// writers, when set, is how many clients write concurrently beside the
	// polling loop until every correct node reached its verdict, each
	// through one correct node (in turn), so that every correct node hands
	// requests over.
	writers int
	// observed, for verdicts without quarantine, reports whether correct
	// node id shows the behaviour was seen (and nothing more): counters,
	// records. Polled with writes running until it holds on every correct
	// node.
	observed func(t *testing.T, b *byzantineRun, id string) bool
}

// byzantineRun is the running cluster of one case.
type byzantineRun struct {
	c       *cluster
	adm     *adminHTTP
	cl      *client.Client
	correct []string
	watch   *actWatch
	members *evidence.Members
}

// run returns the handles a Byzantine case checks the cluster of s with.
func (s *byzantineSetup) run(t *testing.T) *byzantineRun {
	return &byzantineRun{
		c: s.c, correct: s.correct, watch: s.watch, members: memberKeys(t, s.layout),
		cl:  s.c.newClient(s.c.admin, s.endpoints()...),
		adm: s.admin(),
	}
}

// requireEscalated checks node id's verdict on node4: escalate (score in
// [0.7, 0.9) and threat level at least 0.7, no member quarantined) on
// accusations of metric by at least f+1 = 2 distinct correct members,
// every record verifying against the member keys. Accusations of other
// metrics are logged (the load of a case can make a correct node's votes
// or heartbeats late, which stays a warning).
func (b *byzantineRun) requireEscalated(ctx context.Context, t *testing.T, id string, metric evidence.Metric) {
	t.Helper()
	if q := metricFloat(t, b, id, "tandem_quarantined_members"); q != 0 {
		t.Fatalf("%s: tandem_quarantined_members is %v, want 0", id, q)
	}
	score := metricFloat(t, b, id, `tandem_detector_score{member="node4"}`)
	if threat := metricFloat(t, b, id, "tandem_detector_threat_level"); score < 0.7 || score >= 0.9 || threat < 0.7 {
		t.Fatalf("%s: node4's score %v, threat level %v; want escalate in [0.7, 0.9)", id, score, threat)
	}
	if accusers := accusersOf(ctx, t, b, id, metric, true); len(accusers) < 2 {
		t.Fatalf("%s: node4's score rests on the accusations of %v: fewer than f+1 = 2", id, accusers)
	}
}

// waitEscalated polls every correct node every 50 ms until node4's score
// there reaches the escalate level (0.7), calling each (when set) before
// every round. A quarantine anywhere (the verdict on what) fails the test
// at once, and so do 60 s without every correct node there, with
// progress() in the message. It returns when each correct node got there.
func (b *byzantineRun) waitEscalated(t *testing.T, what string, each func(), progress func() string) map[string]time.Time {
	t.Helper()
	at := map[string]time.Time{}
	deadline := time.Now().Add(60 * time.Second)
	for len(at) < len(b.correct) {
		if each != nil {
			each()
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s only %v reached the verdict (%s)", at, progress())
		}
		for _, id := range b.correct {
			if _, done := at[id]; done {
				continue
			}
			if q := metricFloat(t, b, id, "tandem_quarantined_members"); q > 0 {
				t.Fatalf("%s quarantined %v members on %s", id, q, what)
			}
			if score := metricFloat(t, b, id, `tandem_detector_score{member="node4"}`); score >= 0.7 {
				at[id] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return at
}

// TestBFTByzantineBehaviours: for each behaviour of the byzantine build,
// four processes in bft mode, node4 the byzantine build told to misbehave
// that way, writes through the correct nodes; every correct node must
// reach the verdict of the seed's detector table (docs/detector.md,
// "Byzantine behaviours and verdicts"):
//
//   - forge-signature (a leader-signed block with an invalid client
//     signature) and double-vote (two signed votes in one view) are
//     irrefutable: quarantine, with evidence of that kind that verifies
//     against the member keys alone;
//   - garbage (malformed, unknown and oversized frames, votes whose
//     signature fails): the frames are dropped and counted; a bad
//     signature received over a channel proves nothing to a third party,
//     so each correct node signs a signature-failure accusation, and with
//     f+1 distinct accusers node4 is quarantined (the table: signature
//     failure → quarantine);
//   - withhold-votes: the others form quorums without node4; each
//     collector counts its missing votes as late ones and signs
//     vote-latency accusations, which with f+1 accusers give node4 a
//     warning (the table: vote latency → warning) and never a quarantine;
//   - omit-requests: node4 never queues the client requests the others
//     forward to it, so its proposals leave them out although they have
//     room; each correct node that forwarded requests to it and saw such
//     a proposal made after they reached it signs a selective-omission
//     accusation, and with f+1 distinct accusers node4's score reaches
//     the escalate level (the table: selective omission → escalate), never
//     a quarantine;
//   - false-accuse: node4's signed accusations against node1 verify and are
//     kept, but one lying accuser is below f+1: no one is quarantined and
//     the threat level stays 0.
//
// Each case logs its detection latency: from node4's first act (its own
// log) to the verdict on the last correct node.
func TestBFTByzantineBehaviours(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	cases := []byzantineCase{
		{behaviour: "forge-signature", quarantine: evidence.KindInvalidClientSignature},
		{behaviour: "double-vote", quarantine: evidence.KindDoubleVote},
		{behaviour: "garbage", quarantine: evidence.KindAccusation, accused: evidence.MetricSignatureFailure},
		{behaviour: "withhold-votes", warn: true, accused: evidence.MetricVoteLatencyP99, observed: func(t *testing.T, b *byzantineRun, id string) bool {
			return metricFloat(t, b, id, `tandem_detector_score{member="node4"}`) > 0
		}},
		// omit-requests: each correct replica holds one of its writers'
		// requests at a time as a probe for the next peer in turn, so it
		// has one node4 alone could order within three probes of a few
		// views each (each held at most view_change_timeout/2); measured
		// 0.2–0.5 s from node4's first act alone on a 2-core machine, the
		// default 20 s window leaves a wide margin for a loaded one.
		{behaviour: "omit-requests", escalate: true, writers: 6, accused: evidence.MetricSelectiveOmission, observed: func(t *testing.T, b *byzantineRun, id string) bool {
			return metricFloat(t, b, id, `tandem_detector_score{member="node4"}`) >= 0.7
		}},
		{behaviour: "false-accuse", observed: func(t *testing.T, b *byzantineRun, id string) bool {
			var list api.EvidenceListView
			if err := b.adm.get(context.Background(), b.c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
				t.Logf("%s: evidence list: %v", id, err)
				return false
			}
			for _, s := range list.Evidence {
				if s.Kind != evidence.KindAccusation.String() || s.Offender != "node1" || !s.Verified {
					t.Fatalf("%s keeps unexpected evidence: %+v", id, s)
				}
			}
			return len(list.Evidence) > 0
		}},
	}
	for _, tc := range cases {
		t.Run(tc.behaviour, func(t *testing.T) { runByzantineCase(t, byzBinary, tc) })
	}
}

func runByzantineCase(t *testing.T, byzBinary string, tc byzantineCase) {
	s := newByzantineSetup(t, byzBinary, "bft", map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms"},
		tc.behaviour, "byzantine: "+tc.behaviour, "TANDEM_BYZANTINE_TARGET=node1")
	c, correct, watch := s.c, s.correct, s.watch
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	writes := 0
	write := func() {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		if _, err := b.cl.SetConfig(wctx, "k-"+strconv.Itoa(writes), "v"); err == nil {
			writes++
		}
	}

	// Concurrent writers, when the case has them: a replica holds a probe
	// only while other commands keep the chain busy (one write at a time is
	// never held, and is ordered by the next correct leader before the
	// omitting one leads again). Each has a key of its own (one client key
	// has one sequence) and writes through one correct node.
	var writers []*client.Client
	for w := range tc.writers {
		writers = append(writers, c.allowWriter(ctx, b.cl, s.endpoints()[w%len(correct)]))
	}
	load := startWriters(ctx, writers, "load-", 2*time.Second, 0)
	defer load.stop()

	// Poll every correct node until each reached its verdict, writing
	// meanwhile; a quarantine anywhere that the case does not expect
	// fails at once.
	at := map[string]time.Time{}
	within := cmp.Or(tc.within, 20*time.Second)
	deadline := time.Now().Add(within)
	for len(at) < len(correct) {
		if time.Now().After(deadline) {
			t.Fatalf("within %s only %v reached the verdict (node4 acted: %v; %d writes)", within, at, !watch.first().IsZero(), writes)
		}
		write()
		for _, id := range correct {
			var v api.QuarantineView
			if err := b.adm.get(ctx, c.endpoint(id), "/v1/admin/quarantine", &v); err != nil {
				t.Logf("%s: quarantine list: %v", id, err)
				continue
			}
			for _, q := range v.Quarantined {
				if tc.quarantine == 0 || q.Node != byzantineNode {
					t.Fatalf("%s quarantined %s: %+v", id, q.Node, q)
				}
				if _, ok := at[id]; !ok {
					at[id] = q.Since
				}
			}
			if _, ok := at[id]; !ok && tc.quarantine == 0 && !watch.first().IsZero() && tc.observed(t, b, id) {
				at[id] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := watch.first()
	if first.IsZero() {
		t.Fatalf("node4 reached a verdict but never logged %q", watch.marker)
	}
	last := latest(at)
	verdict := "observed"
	switch {
	case tc.quarantine != 0:
		verdict = "quarantine"
	case tc.warn:
		verdict = "warning"
	case tc.escalate:
		verdict = "escalate"
	}
	load.stop()
	t.Logf("%s: detection latency %s from node4's first act (%s) to %s on the last correct node; per node: %v; %d writes meanwhile (%d by %d concurrent writers)",
		tc.behaviour, last.Sub(first).Round(time.Millisecond), first.Format(time.RFC3339Nano), verdict, at, writes+int(load.ok.Load()), load.ok.Load(), tc.writers)

	// The verdict itself, on every correct node.
	for _, id := range correct {
		if tc.quarantine == evidence.KindAccusation {
			// Accusations of node4 from f+1 distinct correct members, each
			// verifying against the member keys.
			accusers := map[evidence.NodeID]bool{}
			for _, e := range quarantineEvidence(ctx, t, c, b.adm, id, b.members) {
				if e.Kind != evidence.KindAccusation || e.Offender != byzantineNode || e.Accusation.Metric != tc.accused || e.Accusation.Accuser == byzantineNode {
					t.Fatalf("%s evidence %s: %s %s", id, e.ID(), e.Kind, e.Summary())
				}
				accusers[e.Accusation.Accuser] = true
			}
			if len(accusers) < 2 {
				t.Fatalf("%s quarantined node4 on the accusations of %v: fewer than f+1 = 2", id, accusers)
			}
			continue
		}
		if tc.quarantine != 0 {
			// Every proof names node4; one of them is of the case's kind.
			// (A forging leader also signed the original block of the
			// view, which it serves to peers that fetch it: an
			// equivocation proof may join the first.)
			kinds := map[evidence.Kind]bool{}
			for _, e := range quarantineEvidence(ctx, t, c, b.adm, id, b.members) {
				if !e.Irrefutable() || e.Offender != byzantineNode {
					t.Fatalf("%s evidence %s: %s %s", id, e.ID(), e.Kind, e.Summary())
				}
				kinds[e.Kind] = true
			}
			if !kinds[tc.quarantine] {
				t.Fatalf("%s quarantined node4 on %v, without %s evidence", id, kinds, tc.quarantine)
			}
			continue
		}
		if tc.escalate {
			b.requireEscalated(ctx, t, id, tc.accused)
			continue
		}
		if got := metricFloat(t, b, id, "tandem_quarantined_members"); got != 0 {
			t.Fatalf("%s: tandem_quarantined_members is %v, want 0", id, got)
		}
		threat := metricFloat(t, b, id, "tandem_detector_threat_level")
		if tc.warn {
			// A warning: positive, below the anomaly threshold (0.7).
			if score := metricFloat(t, b, id, `tandem_detector_score{member="node4"}`); score <= 0 || score >= 0.7 || threat >= 0.7 {
				t.Fatalf("%s: node4's score %v, threat level %v; want a warning in (0, 0.7)", id, score, threat)
			}
			var list api.EvidenceListView
			if err := b.adm.get(ctx, c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
				t.Fatal(err)
			}
			// Accusations of node4 by anyone, or accusations by node4
			// itself: a Byzantine member's own reports of the others
			// (its timings, whatever they are) count for nothing without
			// f+1 accusers, which the threat level above checks. No
			// correct member accuses a correct one.
			for _, s := range list.Evidence {
				if s.Kind != evidence.KindAccusation.String() || !s.Verified {
					t.Fatalf("%s keeps unexpected evidence: %+v", id, s)
				}
				if s.Offender == byzantineNode {
					continue
				}
				if e := verifiedEvidence(ctx, t, b.adm, c.endpoint(id), s.ID, b.members); e.Accusation.Accuser != byzantineNode {
					t.Fatalf("%s keeps an accusation of a correct member by a correct member: %s", id, e.Summary())
				}
				t.Logf("%s keeps node4's own accusation: %s", id, s.Summary)
			}
			continue
		}
		if threat != 0 {
			t.Fatalf("%s: tandem_detector_threat_level is %v, want 0", id, threat)
		}
		if tc.behaviour != "false-accuse" {
			var list api.EvidenceListView
			if err := b.adm.get(ctx, c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Evidence) != 0 {
				t.Fatalf("%s keeps evidence: %+v", id, list.Evidence)
			}
		}
	}

	// Writes keep committing through every correct node.
	b.requireWritesCommit(ctx, t, 10, 20*time.Second)
}

// metricFloat returns the value of the metric line name on correct node
// id, or -1 when it has none.
func metricFloat(t *testing.T, b *byzantineRun, id, name string) float64 {
	t.Helper()
	s := metricLine(t, b.adm.http, b.c.endpoint(id), name)
	if s == "" {
		return -1
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: metric %s = %q: %v", id, name, s, err)
	}
	return v
}
