package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// Attestation exchange (cft mode): every node sends the leader
// attestations it applied to every other member, and each receiver checks
// them against its own. Two attestations of one slot (leader, epoch, term,
// seq) with different payloads are a leader-equivocation proof that any
// node can verify from the leader's two signatures.

// pathAttestations is the peer endpoint that takes a batch of attestations:
//
//	count u16 | count × (len u16 | evidence.MarshalAttestation form)
//
// integers big-endian.
const pathAttestations = "/internal/attestations"

// encodeAttestations encodes a batch of at most 65535 attestations.
func encodeAttestations(as []*evidence.ProposalAttestation) ([]byte, error) {
	if len(as) > 0xFFFF {
		return nil, fmt.Errorf("attestation batch: %d attestations, at most %d", len(as), 0xFFFF)
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(len(as)))
	for _, a := range as {
		enc, err := evidence.MarshalAttestation(a)
		if err != nil {
			return nil, fmt.Errorf("attestation batch: %w", err)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(enc)))
		b = append(b, enc...)
	}
	return b, nil
}

// decodeAttestations is encodeAttestations' strict inverse.
func decodeAttestations(b []byte) ([]*evidence.ProposalAttestation, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("attestation batch: %d bytes, too short for the count", len(b))
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	out := make([]*evidence.ProposalAttestation, 0, n)
	for i := range n {
		if len(b) < 2 {
			return nil, fmt.Errorf("attestation batch: attestation %d of %d: missing length", i+1, n)
		}
		l := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if l > len(b) {
			return nil, fmt.Errorf("attestation batch: attestation %d of %d: length %d, only %d bytes left", i+1, n, l, len(b))
		}
		a, err := evidence.UnmarshalAttestation(b[:l])
		if err != nil {
			return nil, fmt.Errorf("attestation batch: attestation %d of %d: %w", i+1, n, err)
		}
		out = append(out, a)
		b = b[l:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("attestation batch: %d trailing bytes", len(b))
	}
	return out, nil
}

// maxAttestationBody bounds a batch's encoding.
const maxAttestationBody = 2 + maxAttestationBatch*(2+evidence.MaxAttestationSize)

// slotKey names one slot of a Raft leader.
type slotKey struct {
	leader            evidence.NodeID
	epoch, term, seqn uint64
}

// slotTable remembers the first verified attestation of each slot, up to
// max slots (the oldest are forgotten first). Not safe for concurrent use
// on its own: the detector's slotMu guards it.
type slotTable struct {
	max   int
	slots map[slotKey]*evidence.ProposalAttestation
	order []slotKey
}

func newSlotTable(max int) *slotTable {
	return &slotTable{max: max, slots: map[slotKey]*evidence.ProposalAttestation{}}
}

// record keeps a if its slot is new and returns nil; if the slot holds an
// attestation of another payload, it returns that one.
func (t *slotTable) record(a *evidence.ProposalAttestation) *evidence.ProposalAttestation {
	k := slotKey{leader: a.Leader, epoch: a.Epoch, term: a.Term, seqn: a.Seq}
	if old, ok := t.slots[k]; ok {
		if old.PayloadHash != a.PayloadHash {
			return old
		}
		return nil
	}
	t.slots[k] = a
	t.order = append(t.order, k)
	if len(t.order) > t.max {
		delete(t.slots, t.order[0])
		t.order = t.order[1:]
	}
	return nil
}

// deliverAttestations POSTs a batch to the attestation endpoint of the
// peer at addr.
func (n *Node) deliverAttestations(ctx context.Context, addr string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+pathAttestations, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("attestation exchange with %s: %w", addr, err)
	}
	resp, err := n.rpc.Do(req)
	if err != nil {
		return fmt.Errorf("attestation exchange with %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("attestation exchange with %s: HTTP %d: %s", addr, resp.StatusCode, bytes.TrimSpace(data))
	}
	return nil
}

// registerAttestationRPC adds the attestation endpoint to the peer-port
// handler. Each attestation is verified against the member keys before it
// is compared; one that does not verify fails the whole batch.
func (n *Node) registerAttestationRPC(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathAttestations, func(w http.ResponseWriter, r *http.Request) {
		body, ok := n.memberBody(w, r, maxAttestationBody, "attestations are accepted only from current members", "attestations")
		if !ok {
			return
		}
		if n.det == nil || n.det.slots == nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "this node checks no leader attestations"))
			return
		}
		as, err := decodeAttestations(body)
		if err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "%v", err))
			return
		}
		for i, a := range as {
			if err := a.VerifySignature(n.det.members); err != nil {
				writeRPCError(w, smr.Errorf(smr.CodeMalformed, "attestation %d of %d: %v", i+1, len(as), err))
				return
			}
		}
		from := evidence.NodeID(transport.PeerIDFromContext(r.Context()))
		n.det.metrics.attestations.Add(float64(len(as)))
		for _, a := range as {
			n.det.attestation(r.Context(), a, from)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
