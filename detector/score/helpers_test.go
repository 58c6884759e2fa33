package score

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

const epoch = 1

// t0 is the reference time of the tests.
var t0 = time.Unix(1_700_000_000, 0)

var keyCache = map[NodeID]ed25519.PrivateKey{}

func key(id NodeID) ed25519.PrivateKey {
	if k, ok := keyCache[id]; ok {
		return k
	}
	seed := sha256.Sum256([]byte("score test key " + id))
	k := ed25519.NewKeyFromSeed(seed[:])
	keyCache[id] = k
	return k
}

func nodeID(i int) NodeID { return NodeID(fmt.Sprintf("m%d", i)) }

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
}

// cluster returns the member set m0..m(n-1).
func cluster(t tb, n int) *evidence.Members {
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

// accuse returns a signed accusation at time at.
func accuse(t tb, accuser, accused NodeID, m evidence.Metric, value int64, at time.Time) *evidence.Evidence {
	t.Helper()
	a, err := evidence.SignAccusation(key(accuser), evidence.Accusation{Accuser: accuser, Accused: accused, Metric: m, Value: value, Epoch: epoch, At: at.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// proof returns a Raft leader-equivocation proof against node for slot seq.
func proof(t tb, node NodeID, seq uint64) *evidence.Evidence {
	t.Helper()
	a, err := evidence.SignProposal(key(node), node, epoch, 1, seq, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := evidence.SignProposal(key(node), node, epoch, 1, seq, []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := evidence.NewLeaderEquivocation(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func decide(t testing.TB, n int, now time.Time, evs ...*evidence.Evidence) Decision {
	t.Helper()
	return Decide(Default(), Input{Members: cluster(t, n), Evidence: evs, Now: now})
}

// over and at are values just above and at the default thresholds.
const (
	latencyOver = int64(DefaultLatencyP99) + 1
	latencyAt   = int64(DefaultLatencyP99)
)
