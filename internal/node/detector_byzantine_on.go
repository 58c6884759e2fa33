//go:build byzantine

package node

import (
	"context"
	"os"
	"time"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// Byzantine behaviour of the detector, only in a binary built with -tags
// byzantine and chosen by the environment variable TANDEM_BYZANTINE
// (raftengine.EnvByzantine, comma-separated behaviours):
//
//   - false-accuse: every falseAccuseEvery this node signs an accusation
//     of a signature failure (the quarantine-level row of the seed's
//     table) against TANDEM_BYZANTINE_TARGET, or the first other member,
//     and relays it like any record. Each correct node verifies it (the
//     signature is genuine) and keeps it, but one accuser is below the
//     f+1 any action on accusations needs.
var byzFalseAccuse = raftengine.ByzantineBehaviour("false-accuse")

// falseAccuseEvery is the interval of the false-accuse behaviour.
const falseAccuseEvery = 500 * time.Millisecond

// misbehave runs the chosen behaviour until ctx ends.
func (d *detector) misbehave(ctx context.Context) {
	if !byzFalseAccuse {
		return
	}
	target := evidence.NodeID(os.Getenv(raftengine.EnvByzantineTarget))
	if target == "" {
		for _, id := range d.members.IDs() {
			if id != d.self {
				target = id
				break
			}
		}
	}
	if target == "" || target == d.self || !d.members.Contains(target) {
		d.log.Error("byzantine build: false-accuse has no member to accuse", "target", string(target))
		return
	}
	d.log.Warn("byzantine build: this node accuses a correct member", "target", string(target))
	t := time.NewTicker(falseAccuseEvery)
	defer t.Stop()
	for {
		a, err := evidence.SignAccusation(d.key, evidence.Accusation{Accuser: d.self, Accused: target,
			Metric: evidence.MetricSignatureFailure, Value: 1, Epoch: d.epoch.Load(), At: d.clock().UnixNano(), Detail: "fabricated"})
		if err == nil {
			var e *evidence.Evidence
			if e, err = evidence.FromAccusation(a); err == nil {
				d.log.Warn("byzantine: false-accuse", "accused", string(target), "id", e.ID().Short())
				_, _ = d.handle(ctx, e, "")
			}
		}
		if err != nil {
			d.log.Error("byzantine build: accusation not built", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
