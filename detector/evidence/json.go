package evidence

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// The JSON form is for operators and forensics (`tandem admin evidence
// show|export`). It carries readable details and, in "encoding", the
// canonical binary form (base64), which is the only part UnmarshalJSON
// trusts: the readable fields are derived from it and checked against it.
//
//	{
//	  "id": "<hex>", "kind": "log-fork", "irrefutable": true,
//	  "offender": "n2", "epoch": 3, "summary": "...",
//	  "offense": "log-fork/<author key>",
//	  "hotstuff" | "attestations" | "messages" | "accusation" |
//	  "checkpoint_votes": {...},
//	  "encoding": "<base64>"
//	}
type jsonEvidence struct {
	ID           string            `json:"id"`
	Kind         string            `json:"kind"`
	Irrefutable  bool              `json:"irrefutable"`
	Offender     NodeID            `json:"offender"`
	Epoch        uint64            `json:"epoch"`
	Summary      string            `json:"summary"`
	Offense      string            `json:"offense"`
	HotStuff     *jsonHotStuff     `json:"hotstuff,omitempty"`
	Attestations []jsonAttestation `json:"attestations,omitempty"`
	Payload      []byte            `json:"payload,omitempty"`
	Messages     []jsonMessage     `json:"messages,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Accusation   *jsonAccusation   `json:"accusation,omitempty"`
	Checkpoints  []jsonCheckpoint  `json:"checkpoint_votes,omitempty"`
	Encoding     []byte            `json:"encoding"`
}

type jsonCheckpoint struct {
	Signer    string   `json:"signer"`
	Kind      string   `json:"kind"`
	Epoch     uint64   `json:"epoch"`
	Index     uint64   `json:"index"`
	StateHash string   `json:"state_hash"`
	Mode      string   `json:"mode,omitempty"`
	Members   []string `json:"members,omitempty"`
	Signature string   `json:"signature"`
}

type jsonHotStuff struct {
	Kind     string      `json:"kind"`
	View     uint64      `json:"view"`
	Blocks   []jsonBlock `json:"blocks,omitempty"`
	Votes    []jsonVote  `json:"votes,omitempty"`
	Command  int         `json:"command,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	Offender string      `json:"offender"`
}

type jsonBlock struct {
	Hash     string `json:"hash"`
	Parent   string `json:"parent"`
	View     uint64 `json:"view"`
	Height   uint64 `json:"height"`
	Proposer string `json:"proposer"`
	Commands int    `json:"commands"`
}

type jsonVote struct {
	View  uint64 `json:"view"`
	Block string `json:"block"`
	Voter string `json:"voter"`
}

type jsonAttestation struct {
	Leader      NodeID `json:"leader"`
	Epoch       uint64 `json:"epoch"`
	Term        uint64 `json:"term"`
	Seq         uint64 `json:"seq"`
	PayloadHash string `json:"payload_hash"`
	Signature   string `json:"signature"`
}

type jsonMessage struct {
	Role      string   `json:"role"` // "fork", "invalid" or "witness"
	ID        string   `json:"id"`
	Author    string   `json:"author"`
	Prev      string   `json:"prev,omitempty"`
	Deps      []string `json:"deps,omitempty"`
	Content   string   `json:"content,omitempty"`     // when valid UTF-8
	ContentB  []byte   `json:"content_b64,omitempty"` // otherwise
	Signature string   `json:"signature"`
}

type jsonAccusation struct {
	Accuser   NodeID `json:"accuser"`
	Accused   NodeID `json:"accused"`
	Metric    string `json:"metric"`
	Value     int64  `json:"value"`
	Epoch     uint64 `json:"epoch"`
	At        int64  `json:"at_unix_nanos"`
	Detail    string `json:"detail,omitempty"`
	Signature string `json:"signature"`
}

// MarshalJSON returns the JSON form described above.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	enc, err := Marshal(e)
	if err != nil {
		return nil, err
	}
	j := jsonEvidence{
		ID:          IDOf(enc).String(),
		Kind:        e.Kind.String(),
		Irrefutable: e.Irrefutable(),
		Offender:    e.Offender,
		Epoch:       e.Epoch,
		Summary:     e.Summary(),
		Offense:     e.OffenseKey(),
		Encoding:    enc,
	}
	if hs := e.HotStuff; hs != nil {
		h := &jsonHotStuff{Kind: hs.Kind.String(), View: uint64(hs.View), Command: hs.Command, Reason: hs.Reason, Offender: string(hs.Offender)}
		for _, b := range hs.Blocks {
			if b != nil {
				h.Blocks = append(h.Blocks, jsonBlock{Hash: hex.EncodeToString(hashBytes(b.Hash())), Parent: hex.EncodeToString(hashBytes(b.Parent)),
					View: uint64(b.View), Height: b.Height, Proposer: string(b.Proposer), Commands: len(b.Payload)})
			}
		}
		for _, v := range hs.Votes {
			if v != nil {
				h.Votes = append(h.Votes, jsonVote{View: uint64(v.View), Block: hex.EncodeToString(hashBytes(v.Block)), Voter: string(v.Voter)})
			}
		}
		j.HotStuff = h
	}
	if e.Entry != nil {
		j.Attestations = []jsonAttestation{attestationJSON(e.Entry.Attestation)}
		j.Payload = e.Entry.Payload
	}
	for _, a := range e.Proposals {
		if a != nil {
			j.Attestations = append(j.Attestations, attestationJSON(a))
		}
	}
	if e.Fork != nil {
		j.Messages = []jsonMessage{messageJSON("fork", e.Fork.A), messageJSON("fork", e.Fork.B)}
	}
	if p := e.Invalid; p != nil {
		j.Reason = p.Reason.String()
		j.Messages = append(j.Messages, messageJSON("invalid", p.Message))
		for _, w := range p.Witness {
			j.Messages = append(j.Messages, messageJSON("witness", w))
		}
	}
	if a := e.Accusation; a != nil {
		j.Accusation = &jsonAccusation{Accuser: a.Accuser, Accused: a.Accused, Metric: a.Metric.String(), Value: a.Value,
			Epoch: a.Epoch, At: a.At, Detail: a.Detail, Signature: hex.EncodeToString(a.Sig)}
	}
	for _, v := range e.Checkpoints {
		if v != nil {
			s := v.Statement
			j.Checkpoints = append(j.Checkpoints, jsonCheckpoint{Signer: v.Signer, Kind: s.Kind.String(), Epoch: s.Epoch, Index: s.Index,
				StateHash: hex.EncodeToString(s.StateHash[:]), Mode: s.Mode, Members: s.Members, Signature: hex.EncodeToString(v.Sig)})
		}
	}
	return json.Marshal(j)
}

func hashBytes(h [32]byte) []byte { return h[:] }

func attestationJSON(a *ProposalAttestation) jsonAttestation {
	return jsonAttestation{Leader: a.Leader, Epoch: a.Epoch, Term: a.Term, Seq: a.Seq,
		PayloadHash: a.PayloadHash.String(), Signature: hex.EncodeToString(a.Sig)}
}

func messageJSON(role string, m *bftlog.Message) jsonMessage {
	j := jsonMessage{Role: role, ID: m.ID().String(), Author: m.Author().String(), Signature: hex.EncodeToString(m.Signature())}
	if !m.Prev().IsZero() {
		j.Prev = m.Prev().String()
	}
	for _, d := range m.Deps() {
		j.Deps = append(j.Deps, d.ID.String())
	}
	if c := m.Content(); utf8.Valid(c) {
		j.Content = string(c)
	} else {
		j.ContentB = c
	}
	return j
}

// UnmarshalJSON decodes the JSON form. Only "encoding" is decoded (as by
// Unmarshal); "id", "kind", "offender" and "epoch", when present, must
// agree with it, so an edited JSON file cannot pass for other evidence.
// The other readable fields are ignored. Errors wrap ErrMalformed.
func (e *Evidence) UnmarshalJSON(b []byte) error {
	var j jsonEvidence
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("evidence: decode JSON: %w: %w", ErrMalformed, err)
	}
	if len(j.Encoding) == 0 {
		return fmt.Errorf("evidence: decode JSON: %w: no \"encoding\" field", ErrMalformed)
	}
	d, err := Unmarshal(j.Encoding)
	if err != nil {
		return err
	}
	switch id := IDOf(j.Encoding).String(); {
	case j.ID != "" && j.ID != id:
		return fmt.Errorf("evidence: decode JSON: %w: id %q does not match the encoding's id %s", ErrMalformed, j.ID, id)
	case j.Kind != "" && j.Kind != d.Kind.String():
		return fmt.Errorf("evidence: decode JSON: %w: kind %q does not match the encoding's kind %s", ErrMalformed, j.Kind, d.Kind)
	case j.Offender != "" && j.Offender != d.Offender:
		return fmt.Errorf("evidence: decode JSON: %w: offender %q does not match the encoding's offender %q", ErrMalformed, j.Offender, d.Offender)
	case j.Epoch != 0 && j.Epoch != d.Epoch:
		return fmt.Errorf("evidence: decode JSON: %w: epoch %d does not match the encoding's epoch %d", ErrMalformed, j.Epoch, d.Epoch)
	}
	*e = *d
	return nil
}
