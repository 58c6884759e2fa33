package safety

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// SafetyData is the state that keeps a replica from contradicting itself
// across crashes. It must be durable before any vote, timeout or proposal
// signed on its basis leaves the replica.
type SafetyData struct {
	// Epoch is the committee epoch the data belongs to.
	Epoch uint64
	// LastVotedView is the highest view in which this replica voted or
	// signed a timeout. It never decreases; the replica never votes in a
	// view at or below it (except to repeat LastVote).
	LastVotedView types.View
	// LastVote is the vote signed in LastVotedView, if any, so that a
	// repeated request gets the same vote back.
	LastVote *types.Vote
	// LockedQC is the lock of the voting rule (see ThreeChain, TwoChain).
	LockedQC types.QC
	// HighQC is the highest QC this replica voted on top of or put in a
	// timeout. Timeouts never carry a lower QC (the 2-chain safety argument
	// depends on it).
	HighQC types.QC
	// LastTimeout is the last signed timeout (without its LastTC).
	LastTimeout *types.Timeout
	// LastProposal records the last block this replica signed as leader.
	LastProposal *ProposalRecord
	// LastTC is the TC for view LastVotedView−1 when this replica entered
	// LastVotedView through a timeout certificate. It is not needed for
	// safety; it lets a restarted replica show its peers why it is in that
	// view, so that they can follow it there (otherwise replicas restarted
	// in different views could wait for each other forever).
	LastTC *types.TC
}

// ProposalRecord identifies a signed proposal.
type ProposalRecord struct {
	View  types.View
	Block types.Hash
	Sig   []byte
}

// Clone returns a copy of d with its own Vote, Timeout and ProposalRecord
// structs. Certificates and signatures are shared: they are immutable once
// made, and no code in this module modifies them in place.
func (d SafetyData) Clone() SafetyData {
	if d.LastVote != nil {
		v := *d.LastVote
		d.LastVote = &v
	}
	if d.LastTimeout != nil {
		t := *d.LastTimeout
		d.LastTimeout = &t
	}
	if d.LastProposal != nil {
		p := *d.LastProposal
		d.LastProposal = &p
	}
	return d
}

const dataVersion = 1

// MarshalSafetyData encodes d canonically.
func MarshalSafetyData(d SafetyData) []byte {
	b := []byte{dataVersion}
	b = binary.BigEndian.AppendUint64(b, d.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(d.LastVotedView))
	b = appendChunk(b, types.MarshalQC(d.LockedQC))
	b = appendChunk(b, types.MarshalQC(d.HighQC))
	if d.LastVote != nil {
		b = append(b, 1)
		b = appendChunk(b, types.MarshalVote(d.LastVote))
	} else {
		b = append(b, 0)
	}
	if d.LastTimeout != nil {
		t := *d.LastTimeout
		t.LastTC = nil
		b = append(b, 1)
		b = appendChunk(b, types.MarshalTimeout(&t))
	} else {
		b = append(b, 0)
	}
	if p := d.LastProposal; p != nil {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(p.View))
		b = append(b, p.Block[:]...)
		b = appendChunk(b, p.Sig)
	} else {
		b = append(b, 0)
	}
	if d.LastTC != nil {
		b = append(b, 1)
		b = appendChunk(b, types.MarshalTC(d.LastTC))
	} else {
		b = append(b, 0)
	}
	return b
}

func appendChunk(b, chunk []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(chunk)))
	return append(b, chunk...)
}

// errDataFormat is wrapped by UnmarshalSafetyData errors.
var errDataFormat = errors.New("safety data encoding")

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: %s needs %d bytes, %d left", errDataFormat, what, n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u64(what string) uint64 {
	if p := r.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) flag(what string) bool {
	p := r.take(1, what)
	if p == nil {
		return false
	}
	if p[0] > 1 {
		r.err = fmt.Errorf("%w: %s flag is %d", errDataFormat, what, p[0])
	}
	return p[0] == 1
}

func (r *reader) chunk(what string) []byte {
	p := r.take(4, what+" length")
	if p == nil {
		return nil
	}
	return r.take(int(binary.BigEndian.Uint32(p)), what)
}

// UnmarshalSafetyData decodes MarshalSafetyData output.
func UnmarshalSafetyData(b []byte) (SafetyData, error) {
	var d SafetyData
	r := &reader{b: b}
	if v := r.take(1, "version"); v != nil && v[0] != dataVersion {
		return d, fmt.Errorf("%w: version %d, want %d", errDataFormat, v[0], dataVersion)
	}
	d.Epoch = r.u64("epoch")
	d.LastVotedView = types.View(r.u64("last voted view"))
	var err error
	if c := r.chunk("locked QC"); r.err == nil {
		if d.LockedQC, err = types.UnmarshalQC(c); err != nil {
			r.err = fmt.Errorf("%w: locked QC: %w", errDataFormat, err)
		}
	}
	if c := r.chunk("high QC"); r.err == nil {
		if d.HighQC, err = types.UnmarshalQC(c); err != nil {
			r.err = fmt.Errorf("%w: high QC: %w", errDataFormat, err)
		}
	}
	if r.flag("last vote") {
		if c := r.chunk("last vote"); r.err == nil {
			if d.LastVote, err = types.UnmarshalVote(c); err != nil {
				r.err = fmt.Errorf("%w: last vote: %w", errDataFormat, err)
			}
		}
	}
	if r.flag("last timeout") {
		if c := r.chunk("last timeout"); r.err == nil {
			if d.LastTimeout, err = types.UnmarshalTimeout(c); err != nil {
				r.err = fmt.Errorf("%w: last timeout: %w", errDataFormat, err)
			}
		}
	}
	if r.flag("last proposal") {
		p := &ProposalRecord{View: types.View(r.u64("last proposal view"))}
		if h := r.take(32, "last proposal block"); h != nil {
			copy(p.Block[:], h)
		}
		if s := r.chunk("last proposal sig"); r.err == nil {
			p.Sig = append([]byte(nil), s...)
			d.LastProposal = p
		}
	}
	if r.flag("last TC") {
		if c := r.chunk("last TC"); r.err == nil {
			if d.LastTC, err = types.UnmarshalTC(c); err != nil {
				r.err = fmt.Errorf("%w: last TC: %w", errDataFormat, err)
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errDataFormat, len(r.b))
	}
	if r.err != nil {
		return SafetyData{}, r.err
	}
	return d, nil
}
