package evidence

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// Metric names what an accusation measured. The numbers are part of the
// encoding.
type Metric uint8

// Metrics, after the seed's detector table (DESIGN invariant 8). Value's
// unit is given for each.
const (
	// MetricVoteLatencyP99: the accused's p99 latency answering vote
	// requests, in nanoseconds.
	MetricVoteLatencyP99 Metric = 1
	// MetricHeartbeatLatencyP99: the accused's p99 heartbeat (or proposal)
	// latency as leader, in nanoseconds.
	MetricHeartbeatLatencyP99 Metric = 2
	// MetricSignatureFailure: messages received from the accused over its
	// authenticated channel whose signature failed. Such messages prove
	// nothing to a third party (anyone can write bad signatures), hence an
	// accusation rather than a proof.
	MetricSignatureFailure Metric = 3
	// MetricLogConflicts: conflicting log entries (two entries for one
	// index or slot) seen from the accused in the last hour.
	MetricLogConflicts Metric = 4
	// MetricDuplicateVote: votes of the accused for two candidates in one
	// term that the accuser saw but cannot prove (unsigned Raft votes).
	// Signed duplicate votes are DoubleVote proofs instead.
	MetricDuplicateVote Metric = 5
	// MetricSelectiveOmission: client requests the accuser relayed to the
	// accused leader that were not proposed within the bound.
	MetricSelectiveOmission Metric = 6
	// MetricStateDivergence: indexes at which the accused's state hash
	// differed from the hash a quorum agreed on.
	MetricStateDivergence Metric = 7
)

// metrics lists every metric in numeric order.
var metrics = [...]Metric{MetricVoteLatencyP99, MetricHeartbeatLatencyP99, MetricSignatureFailure,
	MetricLogConflicts, MetricDuplicateVote, MetricSelectiveOmission, MetricStateDivergence}

// Metrics returns every known metric in numeric order.
func Metrics() []Metric { return append([]Metric(nil), metrics[:]...) }

// Valid reports whether m is a known metric.
func (m Metric) Valid() bool { return m >= MetricVoteLatencyP99 && m <= MetricStateDivergence }

func (m Metric) String() string {
	switch m {
	case MetricVoteLatencyP99:
		return "vote-latency-p99"
	case MetricHeartbeatLatencyP99:
		return "heartbeat-latency-p99"
	case MetricSignatureFailure:
		return "signature-failure"
	case MetricLogConflicts:
		return "log-conflicts"
	case MetricDuplicateVote:
		return "duplicate-vote"
	case MetricSelectiveOmission:
		return "selective-omission"
	case MetricStateDivergence:
		return "state-divergence"
	default:
		return fmt.Sprintf("metric(%d)", uint8(m))
	}
}

// ParseMetric is the inverse of Metric.String.
func ParseMetric(s string) (Metric, error) {
	for _, m := range metrics {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("evidence: unknown metric %q: %w", s, ErrMalformed)
}

// MaxDetail bounds Accusation.Detail, in bytes.
const MaxDetail = 256

// Accusation is a signed statement by Accuser that it observed Value for
// Metric of Accused at time At (Unix nanoseconds, the accuser's clock) in
// Epoch. It is statistical evidence: it proves who said it, not that it is
// true, so the cluster acts on accusations only when f+1 distinct members
// make them (see package detector/score). Detail is free text signed with
// the rest (for example the index of a state divergence).
//
// The signature covers SignBytes:
//
//	TagAccusation | epoch u64 | at i64 | metric u8 | value i64 |
//	len(accuser) u8 | accuser | len(accused) u8 | accused |
//	len(detail) u16 | detail
//
// all integers big-endian (signed ones two's complement).
type Accusation struct {
	Accuser NodeID
	Accused NodeID
	Metric  Metric
	Value   int64
	Epoch   uint64
	At      int64
	Detail  string
	Sig     []byte
}

// SignBytes returns the canonical bytes the accuser signs.
func (a *Accusation) SignBytes() []byte {
	var e encoder
	e.raw([]byte(TagAccusation))
	e.u64(a.Epoch)
	e.u64(uint64(a.At))
	e.u8(uint8(a.Metric))
	e.u64(uint64(a.Value))
	e.str8(string(a.Accuser))
	e.str8(string(a.Accused))
	e.str16(a.Detail)
	return e.b
}

// Time returns At as a time.Time.
func (a *Accusation) Time() time.Time { return time.Unix(0, a.At) }

// String returns a short form for logs.
func (a *Accusation) String() string {
	if a == nil {
		return "accusation(none)"
	}
	return fmt.Sprintf("accusation(%s accuses %s: %s=%d at %d epoch %d)", a.Accuser, a.Accused, a.Metric, a.Value, a.At, a.Epoch)
}

// checkFields checks what the encoding requires of an accusation.
func (a *Accusation) checkFields() error {
	switch {
	case len(a.Accuser) == 0 || len(a.Accuser) > MaxIDLen:
		return fmt.Errorf("accuser ID %q has %d bytes, must have 1 to %d: %w", a.Accuser, len(a.Accuser), MaxIDLen, ErrMalformed)
	case len(a.Accused) == 0 || len(a.Accused) > MaxIDLen:
		return fmt.Errorf("accused ID %q has %d bytes, must have 1 to %d: %w", a.Accused, len(a.Accused), MaxIDLen, ErrMalformed)
	case len(a.Detail) > MaxDetail:
		return fmt.Errorf("detail has %d bytes, at most %d allowed: %w", len(a.Detail), MaxDetail, ErrMalformed)
	case len(a.Sig) > maxSig:
		return fmt.Errorf("signature has %d bytes, at most %d allowed: %w", len(a.Sig), maxSig, ErrMalformed)
	}
	return nil
}

// SignAccusation returns a copy of a signed with priv (the accuser's node
// key). a.Sig is ignored.
func SignAccusation(priv ed25519.PrivateKey, a Accusation) (*Accusation, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("evidence: sign accusation: private key has %d bytes, want %d: %w", len(priv), ed25519.PrivateKeySize, ErrMalformed)
	}
	a.Sig = nil
	if err := a.checkFields(); err != nil {
		return nil, fmt.Errorf("evidence: sign accusation: %w", err)
	}
	if !a.Metric.Valid() {
		return nil, fmt.Errorf("evidence: sign accusation: unknown metric %d: %w", a.Metric, ErrMalformed)
	}
	a.Sig = ed25519.Sign(priv, a.SignBytes())
	return &a, nil
}
