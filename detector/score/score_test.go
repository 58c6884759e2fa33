package score

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"half-life zero":             func(c *Config) { c.HalfLife = 0 },
		"max age zero":               func(c *Config) { c.MaxAge = 0 },
		"skew negative":              func(c *Config) { c.MaxClockSkew = -1 },
		"anomaly zero":               func(c *Config) { c.AnomalyThreshold = 0 },
		"anomaly above one":          func(c *Config) { c.AnomalyThreshold = 1.1 },
		"quarantine equals anomaly":  func(c *Config) { c.QuarantineThreshold = c.AnomalyThreshold },
		"quarantine above one":       func(c *Config) { c.QuarantineThreshold = 1.5 },
		"warning ceiling at anomaly": func(c *Config) { c.WarningCeiling = c.AnomalyThreshold },
		"escalate below anomaly":     func(c *Config) { c.EscalateCeiling = 0.6 },
		"escalate at quarantine":     func(c *Config) { c.EscalateCeiling = c.QuarantineThreshold },
		"min accusers zero":          func(c *Config) { c.MinAccusers = 0 },
		"max per pair zero":          func(c *Config) { c.MaxPerPair = 0 },
		"max proofs zero":            func(c *Config) { c.MaxProofsPerNode = 0 },
		"negative threshold":         func(c *Config) { c.LogConflicts.Threshold = -1 },
		"zero weight":                func(c *Config) { c.SelectiveOmission.Weight = 0 },
		"weight above one":           func(c *Config) { c.StateDivergence.Weight = 2 },
		"level none":                 func(c *Config) { c.DuplicateVote.Level = LevelNone },
		"NaN anomaly":                func(c *Config) { c.AnomalyThreshold = math.NaN() },
	}
	for name, mut := range cases {
		c := Default()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

func TestNeeded(t *testing.T) {
	c := Default()
	for n, want := range map[int]int{1: 2, 3: 2, 4: 2, 6: 2, 7: 3, 10: 4, 13: 5} {
		if got := c.Needed(n); got != want {
			t.Errorf("Needed(%d) = %d, want %d", n, got, want)
		}
	}
	c.MinAccusers = 1
	if got := c.Needed(3); got != 1 {
		t.Errorf("Needed(3) with MinAccusers 1 = %d, want f+1 = 1", got)
	}
}

func TestDecay(t *testing.T) {
	h := 10 * time.Minute
	cases := []struct {
		age  time.Duration
		want float64
	}{{0, 0.8}, {-time.Hour, 0.8}, {h, 0.4}, {2 * h, 0.2}, {h / 2, 0.8 / math.Sqrt2}}
	for _, c := range cases {
		if got := Decay(0.8, c.age, h); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Decay(0.8, %v) = %v, want %v", c.age, got, c.want)
		}
	}
}

// TestContribution: the seed's thresholds are strict (> 500 ms, > 3 per
// hour, > 0), and the time window bounds what counts.
func TestContribution(t *testing.T) {
	c := Default()
	cases := []struct {
		name  string
		m     evidence.Metric
		value int64
		at    time.Time
		want  float64
		level Level
	}{
		{"latency at 500ms", evidence.MetricVoteLatencyP99, latencyAt, t0, 0, LevelNone},
		{"latency over 500ms", evidence.MetricVoteLatencyP99, latencyOver, t0, 0.25, LevelWarning},
		{"heartbeat over 500ms", evidence.MetricHeartbeatLatencyP99, latencyOver, t0, 0.25, LevelWarning},
		{"3 conflicts", evidence.MetricLogConflicts, 3, t0, 0, LevelNone},
		{"4 conflicts", evidence.MetricLogConflicts, 4, t0, 0.8, LevelEscalate},
		{"no signature failure", evidence.MetricSignatureFailure, 0, t0, 0, LevelNone},
		{"one signature failure", evidence.MetricSignatureFailure, 1, t0, 1, LevelQuarantine},
		{"duplicate vote", evidence.MetricDuplicateVote, 1, t0, 1, LevelQuarantine},
		{"omission", evidence.MetricSelectiveOmission, 1, t0, 0.8, LevelEscalate},
		{"divergence", evidence.MetricStateDivergence, 1, t0, 0.5, LevelQuarantine},
		{"one half-life old", evidence.MetricSelectiveOmission, 1, t0.Add(-c.HalfLife), 0.4, LevelEscalate},
		{"older than max age", evidence.MetricSelectiveOmission, 1, t0.Add(-c.MaxAge - 1), 0, LevelNone},
		{"within skew ahead", evidence.MetricSelectiveOmission, 1, t0.Add(c.MaxClockSkew), 0.8, LevelEscalate},
		{"beyond skew ahead", evidence.MetricSelectiveOmission, 1, t0.Add(c.MaxClockSkew + 1), 0, LevelNone},
	}
	for _, tc := range cases {
		e := accuse(t, "m0", "m1", tc.m, tc.value, tc.at)
		w, l := c.Contribution(e.Accusation, t0)
		if math.Abs(w-tc.want) > 1e-12 || l != tc.level {
			t.Errorf("%s: Contribution = %v %s, want %v %s", tc.name, w, l, tc.want, tc.level)
		}
	}
}

// TestAccuserScoreCeilings: signals of one level add up to that level's
// ceiling only, so warnings never escalate and escalate-level signals never
// quarantine, however many are repeated.
func TestAccuserScoreCeilings(t *testing.T) {
	c := Default()
	many := func(m evidence.Metric, v int64, k int) []*evidence.Accusation {
		var out []*evidence.Accusation
		for i := range k {
			out = append(out, accuse(t, "m0", "m1", m, v, t0.Add(-time.Duration(i)*time.Second)).Accusation)
		}
		return out
	}
	if got := c.AccuserScore(many(evidence.MetricVoteLatencyP99, latencyOver, 20), t0); got != c.WarningCeiling {
		t.Errorf("20 latency reports: %v, want the warning ceiling %v", got, c.WarningCeiling)
	}
	if got := c.AccuserScore(many(evidence.MetricSelectiveOmission, 5, 20), t0); got != c.EscalateCeiling {
		t.Errorf("20 omission reports: %v, want the escalate ceiling %v", got, c.EscalateCeiling)
	}
	if got := c.AccuserScore(many(evidence.MetricStateDivergence, 1, 1), t0); got != 0.5 {
		t.Errorf("one divergence: %v, want 0.5", got)
	}
	if got := c.AccuserScore(many(evidence.MetricStateDivergence, 1, 2), t0); got < c.QuarantineThreshold {
		t.Errorf("two recent divergences: %v, want ≥ %v", got, c.QuarantineThreshold)
	}
	if got := c.AccuserScore(many(evidence.MetricSignatureFailure, 1, 5), t0); got != 1 {
		t.Errorf("signature failures: %v, want 1", got)
	}
	mixed := append(many(evidence.MetricVoteLatencyP99, latencyOver, 1), many(evidence.MetricSelectiveOmission, 1, 1)...)
	if got := c.AccuserScore(mixed, t0); got != c.EscalateCeiling {
		t.Errorf("latency + omission: %v, want %v", got, c.EscalateCeiling)
	}
}

func TestDecide(t *testing.T) {
	now := t0
	old := now.Add(-2 * time.Hour)
	acc := func(from, to NodeID, m evidence.Metric, v int64) *evidence.Evidence {
		return accuse(t, from, to, m, v, now)
	}
	cases := []struct {
		name       string
		n          int
		evs        []*evidence.Evidence
		escalate   bool
		quarantine []NodeID
		resync     []NodeID
		warn       []NodeID
		rejected   int
	}{
		{name: "nothing", n: 4},
		{name: "one liar cannot quarantine", n: 4,
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricSignatureFailure, 9), acc("m0", "m1", evidence.MetricDuplicateVote, 9)}},
		{name: "f+1 accusers quarantine", n: 4, escalate: true, quarantine: []NodeID{"m1"},
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricSignatureFailure, 1), acc("m2", "m1", evidence.MetricSignatureFailure, 1)}},
		{name: "duplicate votes from f+1 quarantine", n: 4, escalate: true, quarantine: []NodeID{"m3"},
			evs: []*evidence.Evidence{acc("m0", "m3", evidence.MetricDuplicateVote, 1), acc("m1", "m3", evidence.MetricDuplicateVote, 2)}},
		{name: "self accusation and a second one do not make two accusers", n: 4, rejected: 1,
			evs: []*evidence.Evidence{acc("m1", "m1", evidence.MetricSignatureFailure, 1), acc("m2", "m1", evidence.MetricSignatureFailure, 1)}},
		{name: "n=7 needs 3", n: 7,
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricSignatureFailure, 1), acc("m2", "m1", evidence.MetricSignatureFailure, 1)}},
		{name: "n=7 with 3", n: 7, escalate: true, quarantine: []NodeID{"m1"},
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricSignatureFailure, 1), acc("m2", "m1", evidence.MetricSignatureFailure, 1), acc("m3", "m1", evidence.MetricSignatureFailure, 1)}},
		{name: "n=3 needs 2 even though f=0", n: 3,
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricSignatureFailure, 1)}},
		{name: "log conflicts above 3/hour escalate", n: 4, escalate: true,
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricLogConflicts, 4), acc("m2", "m1", evidence.MetricLogConflicts, 5)}},
		{name: "3 log conflicts do nothing", n: 4,
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricLogConflicts, 3), acc("m2", "m1", evidence.MetricLogConflicts, 3)}},
		{name: "selective omission escalates", n: 4, escalate: true,
			evs: []*evidence.Evidence{acc("m0", "m2", evidence.MetricSelectiveOmission, 1), acc("m3", "m2", evidence.MetricSelectiveOmission, 1)}},
		{name: "latency only warns", n: 4, warn: []NodeID{"m1"},
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricVoteLatencyP99, latencyOver), acc("m2", "m1", evidence.MetricVoteLatencyP99, latencyOver),
				acc("m3", "m1", evidence.MetricHeartbeatLatencyP99, latencyOver), acc("m0", "m1", evidence.MetricHeartbeatLatencyP99, latencyOver)}},
		{name: "one divergence report each re-syncs", n: 4, resync: []NodeID{"m1"},
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricStateDivergence, 1), acc("m2", "m1", evidence.MetricStateDivergence, 1)}},
		{name: "persisting divergence quarantines", n: 4, escalate: true, quarantine: []NodeID{"m1"},
			evs: []*evidence.Evidence{acc("m0", "m1", evidence.MetricStateDivergence, 1), acc("m2", "m1", evidence.MetricStateDivergence, 1),
				accuse(t, "m0", "m1", evidence.MetricStateDivergence, 1, now.Add(-time.Minute)), accuse(t, "m2", "m1", evidence.MetricStateDivergence, 1, now.Add(-time.Minute))}},
		{name: "old accusations decayed", n: 4, warn: []NodeID{"m1"},
			evs: []*evidence.Evidence{accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, old), accuse(t, "m2", "m1", evidence.MetricSignatureFailure, 1, old)}},
		{name: "proof quarantines alone", n: 4, escalate: true, quarantine: []NodeID{"m2"},
			evs: []*evidence.Evidence{proof(t, "m2", 1)}},
		{name: "a proven liar's accusations count for nothing", n: 4, escalate: true, quarantine: []NodeID{"m2"},
			evs: []*evidence.Evidence{proof(t, "m2", 1), acc("m2", "m1", evidence.MetricSignatureFailure, 1), acc("m0", "m1", evidence.MetricSignatureFailure, 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, tc.n, now, tc.evs...)
			if d.Escalate != tc.escalate {
				t.Errorf("Escalate = %v, want %v (threat %v)", d.Escalate, tc.escalate, d.Threat)
			}
			for _, c := range []struct {
				what      string
				got, want []NodeID
			}{{"Quarantine", d.Quarantine, tc.quarantine}, {"Resync", d.Resync, tc.resync}, {"Warn", d.Warn, tc.warn}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if len(d.Rejected) != tc.rejected {
				t.Errorf("Rejected = %v", d.Rejected)
			}
			// Every reason is justified by its own evidence alone.
			for _, r := range d.Reasons {
				if err := Justify(Default(), cluster(t, tc.n), r.Node, r.Action, r.Evidence, nil, now); err != nil {
					t.Errorf("reason %s for %s: %v", r.Action, r.Node, err)
				}
			}
		})
	}
}

func TestDecideRejectsInvalidEvidence(t *testing.T) {
	bad := accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0)
	bad.Accusation.Value = 2 // signature no longer matches
	d := decide(t, 4, t0, bad, accuse(t, "m2", "m1", evidence.MetricSignatureFailure, 1, t0))
	if len(d.Rejected) != 1 || !errors.Is(d.Rejected[0].Err, evidence.ErrInvalidEvidence) {
		t.Fatalf("Rejected = %v", d.Rejected)
	}
	if len(d.Quarantine) != 0 {
		t.Fatalf("quarantined on a forged accusation: %v", d.Quarantine)
	}
	// Duplicates of one accusation are one accuser.
	a := accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0)
	if d := decide(t, 4, t0, a, a, a); len(d.Quarantine) != 0 {
		t.Fatalf("duplicates counted: %v", d.Quarantine)
	}
}

func TestDecideForgiveness(t *testing.T) {
	m := cluster(t, 4)
	p1 := proof(t, "m1", 1)
	lift := Forgiveness{Node: "m1", At: t0, Offenses: []string{p1.OffenseKey()}}
	in := Input{Members: m, Evidence: []*evidence.Evidence{p1,
		accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0), accuse(t, "m2", "m1", evidence.MetricSignatureFailure, 1, t0)},
		Forgiven: []Forgiveness{lift}, Now: t0.Add(time.Second)}
	d := Decide(Default(), in)
	if len(d.Quarantine) != 0 || d.Escalate || d.Forgiven != 3 {
		t.Fatalf("after lift: quarantine %v escalate %v forgiven %d", d.Quarantine, d.Escalate, d.Forgiven)
	}
	// A new offence, or accusations after the lift, count again.
	in.Evidence = append(in.Evidence, proof(t, "m1", 2))
	if d := Decide(Default(), in); !slices.Equal(d.Quarantine, []NodeID{"m1"}) {
		t.Fatalf("new offence after lift: %v", d.Quarantine)
	}
	in.Evidence = append(in.Evidence[:3], accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0.Add(time.Second)),
		accuse(t, "m3", "m1", evidence.MetricSignatureFailure, 1, t0.Add(time.Second)))
	if d := Decide(Default(), in); !slices.Equal(d.Quarantine, []NodeID{"m1"}) {
		t.Fatalf("accusations after lift: %v", d.Quarantine)
	}
}

func TestJustifyRejectsInsufficient(t *testing.T) {
	m := cluster(t, 4)
	one := []*evidence.Evidence{accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0)}
	err := Justify(Default(), m, "m1", ActionQuarantine, one, nil, t0)
	if !errors.Is(err, ErrNotJustified) || !strings.Contains(err.Error(), "2 accusers needed") {
		t.Fatalf("Justify = %v", err)
	}
	if err := Justify(Default(), m, "m1", ActionQuarantine, []*evidence.Evidence{proof(t, "m1", 1)}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if err := Justify(Default(), m, "m0", ActionEscalate, []*evidence.Evidence{proof(t, "m1", 1)}, nil, t0); err != nil {
		t.Fatalf("a proof against anyone justifies escalation: %v", err)
	}
	if err := Justify(Default(), m, "m0", ActionQuarantine, []*evidence.Evidence{proof(t, "m1", 1)}, nil, t0); !errors.Is(err, ErrNotJustified) {
		t.Fatalf("a proof against m1 justified quarantining m0: %v", err)
	}
}

func TestDecideThreatAndScores(t *testing.T) {
	d := decide(t, 4, t0, accuse(t, "m0", "m1", evidence.MetricSelectiveOmission, 1, t0), accuse(t, "m2", "m1", evidence.MetricSelectiveOmission, 1, t0),
		accuse(t, "m0", "m3", evidence.MetricSelectiveOmission, 1, t0))
	if d.Threat != 0.8 {
		t.Fatalf("Threat = %v, want 0.8", d.Threat)
	}
	if len(d.Scores) != 2 || d.Scores[0].Node != "m1" || d.Scores[0].Accusers != 2 || d.Scores[0].Action != ActionEscalate ||
		d.Scores[1].Node != "m3" || d.Scores[1].Score != 0 || d.Scores[1].Accusers != 1 {
		t.Fatalf("Scores = %+v", d.Scores)
	}
	if d.Needed != 2 || len(d.Reasons) != 1 || !slices.Equal(d.Reasons[0].Accusers, []NodeID{"m0", "m2"}) {
		t.Fatalf("Needed %d Reasons %+v", d.Needed, d.Reasons)
	}
}
