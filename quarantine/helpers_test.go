package quarantine

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const epoch = 1

var t0 = time.Unix(1_700_000_000, 0)

func key(id NodeID) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("quarantine test key " + id))
	return ed25519.NewKeyFromSeed(seed[:])
}

func nodeID(i int) NodeID { return NodeID(fmt.Sprintf("n%d", i)) }

func cluster(t testing.TB, n int) *evidence.Members {
	t.Helper()
	ms := make([]evidence.Member, n)
	for i := range ms {
		ms[i] = evidence.Member{ID: nodeID(i), PublicKey: key(nodeID(i)).Public().(ed25519.PublicKey)}
	}
	m, err := evidence.NewMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func accuse(t testing.TB, accuser, accused NodeID, m evidence.Metric, at time.Time) *evidence.Evidence {
	t.Helper()
	a, err := evidence.SignAccusation(key(accuser), evidence.Accusation{Accuser: accuser, Accused: accused, Metric: m, Value: 1, Epoch: epoch, At: at.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func proof(t testing.TB, node NodeID, seq uint64) *evidence.Evidence {
	t.Helper()
	a, _ := evidence.SignProposal(key(node), node, epoch, 1, seq, []byte("one"))
	b, _ := evidence.SignProposal(key(node), node, epoch, 1, seq, []byte("two"))
	e, err := evidence.NewLeaderEquivocation(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func policy(t testing.TB, n int) Policy {
	return Policy{Config: score.Default(), Members: cluster(t, n), Now: t0}
}

func decision(p Policy, evs ...*evidence.Evidence) score.Decision {
	return score.Decide(p.Config, score.Input{Members: p.Members, Evidence: evs, Forgiven: p.Forgiven, Now: p.Now})
}
