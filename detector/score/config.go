package score

import (
	"errors"
	"fmt"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

// ErrInvalidConfig is wrapped by Config.Validate and NewBook errors.
var ErrInvalidConfig = errors.New("invalid score config")

// Level is the most severe cluster action a signal may cause: the rows of
// the seed's detector table.
type Level uint8

// Levels, in increasing severity.
const (
	LevelNone       Level = 0
	LevelWarning    Level = 1 // log and metric only
	LevelEscalate   Level = 2 // switch the cluster to BFT
	LevelQuarantine Level = 3 // quarantine the node (and escalate)
)

func (l Level) String() string {
	switch l {
	case LevelNone:
		return "none"
	case LevelWarning:
		return "warning"
	case LevelEscalate:
		return "escalate"
	case LevelQuarantine:
		return "quarantine"
	default:
		return fmt.Sprintf("level(%d)", uint8(l))
	}
}

// Signal is how one accusation metric scores. An accusation counts when its
// Value is above Threshold; it then adds Weight, decayed by its age, to
// its accuser's score of the accused, and allows that score to reach the
// ceiling of Level (see Config).
type Signal struct {
	// Threshold, in the metric's unit (evidence.Metric documents it): the
	// accusation counts only when Value > Threshold. At least 0.
	Threshold int64
	// Weight is the contribution of one fresh accusation, in (0, 1].
	Weight float64
	// Level is the most severe action the signal may cause: Warning,
	// Escalate or Quarantine.
	Level Level
}

// Defaults. The table is the seed's (DESIGN invariant 8).
const (
	DefaultHalfLife            = 10 * time.Minute
	DefaultMaxAge              = 24 * time.Hour
	DefaultMaxClockSkew        = 30 * time.Second
	DefaultAnomalyThreshold    = 0.7
	DefaultQuarantineThreshold = 0.9
	DefaultWarningCeiling      = 0.5
	DefaultEscalateCeiling     = 0.85
	DefaultMinAccusers         = 2
	DefaultMaxPerPair          = 16
	DefaultMaxProofsPerNode    = 16
	DefaultLatencyP99          = 500 * time.Millisecond
	DefaultLogConflictsPerHour = 3
)

// Config holds every threshold and weight of the scoring. Build it with
// Default and adjust; Validate before use.
type Config struct {
	// HalfLife is the time in which an accusation's contribution halves.
	HalfLife time.Duration
	// MaxAge: accusations older than this count for nothing and are
	// pruned. It also bounds memory.
	MaxAge time.Duration
	// MaxClockSkew: accusations dated later than now+MaxClockSkew are
	// ignored (an accuser cannot make its word last by dating it in the
	// future); those dated up to MaxClockSkew ahead count as fresh.
	MaxClockSkew time.Duration

	// AnomalyThreshold (config anomaly_threshold): a node whose score
	// reaches it makes the cluster escalate to BFT.
	AnomalyThreshold float64
	// QuarantineThreshold (config quarantine_threshold): a node whose
	// score reaches it is quarantined.
	QuarantineThreshold float64
	// WarningCeiling caps the score an accuser can give from warning-level
	// signals only; it must stay below AnomalyThreshold, so latency alone
	// never escalates.
	WarningCeiling float64
	// EscalateCeiling caps the score an accuser can give when no
	// quarantine-level signal is present; it must lie in
	// [AnomalyThreshold, QuarantineThreshold), so such signals escalate
	// but never quarantine.
	EscalateCeiling float64

	// MinAccusers is the least number of distinct accusers any action on
	// accusations needs, whatever f is. The rule needs f+1 (DESIGN
	// invariant 8); MinAccusers (default 2) keeps a single accuser from
	// acting in clusters where f is 0.
	MinAccusers int
	// MaxPerPair bounds the accusations a Book keeps per (accuser,
	// accused, metric); the newest are kept.
	MaxPerPair int
	// MaxProofsPerNode bounds the distinct offences a Book keeps proofs of
	// per offender (one proof per offence).
	MaxProofsPerNode int

	// The seed's table, one Signal per accusation metric.
	VoteLatencyP99      Signal // > 500 ms (ns) → warning
	HeartbeatLatencyP99 Signal // > 500 ms (ns) → warning
	SignatureFailure    Signal // > 0 → quarantine
	LogConflicts        Signal // > 3 per hour → escalate
	DuplicateVote       Signal // > 0 → quarantine
	SelectiveOmission   Signal // > 0 (detected) → escalate
	StateDivergence     Signal // > 0 → re-sync, or quarantine when it persists
}

// Default returns the seed's table with Tandem's defaults.
func Default() Config {
	lat := Signal{Threshold: int64(DefaultLatencyP99), Weight: 0.25, Level: LevelWarning}
	return Config{
		HalfLife:            DefaultHalfLife,
		MaxAge:              DefaultMaxAge,
		MaxClockSkew:        DefaultMaxClockSkew,
		AnomalyThreshold:    DefaultAnomalyThreshold,
		QuarantineThreshold: DefaultQuarantineThreshold,
		WarningCeiling:      DefaultWarningCeiling,
		EscalateCeiling:     DefaultEscalateCeiling,
		MinAccusers:         DefaultMinAccusers,
		MaxPerPair:          DefaultMaxPerPair,
		MaxProofsPerNode:    DefaultMaxProofsPerNode,
		VoteLatencyP99:      lat,
		HeartbeatLatencyP99: lat,
		SignatureFailure:    Signal{Threshold: 0, Weight: 1, Level: LevelQuarantine},
		LogConflicts:        Signal{Threshold: DefaultLogConflictsPerHour, Weight: 0.8, Level: LevelEscalate},
		DuplicateVote:       Signal{Threshold: 0, Weight: 1, Level: LevelQuarantine},
		SelectiveOmission:   Signal{Threshold: 0, Weight: 0.8, Level: LevelEscalate},
		StateDivergence:     Signal{Threshold: 0, Weight: 0.5, Level: LevelQuarantine},
	}
}

// Signal returns the signal of metric m.
func (c Config) Signal(m evidence.Metric) (Signal, bool) {
	switch m {
	case evidence.MetricVoteLatencyP99:
		return c.VoteLatencyP99, true
	case evidence.MetricHeartbeatLatencyP99:
		return c.HeartbeatLatencyP99, true
	case evidence.MetricSignatureFailure:
		return c.SignatureFailure, true
	case evidence.MetricLogConflicts:
		return c.LogConflicts, true
	case evidence.MetricDuplicateVote:
		return c.DuplicateVote, true
	case evidence.MetricSelectiveOmission:
		return c.SelectiveOmission, true
	case evidence.MetricStateDivergence:
		return c.StateDivergence, true
	}
	return Signal{}, false
}

// ceiling returns the most an accuser's score may reach when the most
// severe counted signal has level l.
func (c Config) ceiling(l Level) float64 {
	switch l {
	case LevelWarning:
		return c.WarningCeiling
	case LevelEscalate:
		return c.EscalateCeiling
	case LevelQuarantine:
		return 1
	default:
		return 0
	}
}

// Validate checks every field; the error names the field, its value and
// what is allowed.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.HalfLife <= 0:
		return bad("HalfLife is %v, must be positive", c.HalfLife)
	case c.MaxAge <= 0:
		return bad("MaxAge is %v, must be positive", c.MaxAge)
	case c.MaxClockSkew < 0:
		return bad("MaxClockSkew is %v, must not be negative", c.MaxClockSkew)
	case !(c.AnomalyThreshold > 0 && c.AnomalyThreshold <= 1):
		return bad("AnomalyThreshold is %v, must be in (0, 1]", c.AnomalyThreshold)
	case !(c.QuarantineThreshold > c.AnomalyThreshold && c.QuarantineThreshold <= 1):
		return bad("QuarantineThreshold is %v, must be in (AnomalyThreshold %v, 1] so that escalate-level signals can escalate without quarantining", c.QuarantineThreshold, c.AnomalyThreshold)
	case !(c.WarningCeiling >= 0 && c.WarningCeiling < c.AnomalyThreshold):
		return bad("WarningCeiling is %v, must be in [0, AnomalyThreshold %v)", c.WarningCeiling, c.AnomalyThreshold)
	case !(c.EscalateCeiling >= c.AnomalyThreshold && c.EscalateCeiling < c.QuarantineThreshold):
		return bad("EscalateCeiling is %v, must be in [AnomalyThreshold %v, QuarantineThreshold %v)", c.EscalateCeiling, c.AnomalyThreshold, c.QuarantineThreshold)
	case c.MinAccusers < 1:
		return bad("MinAccusers is %d, must be at least 1", c.MinAccusers)
	case c.MaxPerPair < 1:
		return bad("MaxPerPair is %d, must be at least 1", c.MaxPerPair)
	case c.MaxProofsPerNode < 1:
		return bad("MaxProofsPerNode is %d, must be at least 1", c.MaxProofsPerNode)
	}
	for _, m := range evidence.Metrics() {
		s, _ := c.Signal(m)
		switch {
		case s.Threshold < 0:
			return bad("%s threshold is %d, must not be negative", m, s.Threshold)
		case !(s.Weight > 0 && s.Weight <= 1):
			return bad("%s weight is %v, must be in (0, 1]", m, s.Weight)
		case s.Level < LevelWarning || s.Level > LevelQuarantine:
			return bad("%s level is %s, must be warning, escalate or quarantine", m, s.Level)
		}
	}
	return nil
}

// Needed returns the number of distinct accusers an action on accusations
// needs in a cluster of n members: max(f+1, MinAccusers), f = ⌊(n−1)/3⌋.
func (c Config) Needed(n int) int {
	f := 0
	if n > 0 {
		f = (n - 1) / 3
	}
	return max(f+1, c.MinAccusers)
}
