package sim

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// MACScheme is a signature scheme for simulations only: a "public key" is
// the signing secret itself and a signature is SHA-256(secret | msg).
// Anyone holding the committee can forge signatures, so it must never be
// used outside tests. It exists because Ed25519 under the race detector
// costs about half a millisecond per verification, which would make
// thousands of simulated runs too slow; the protocol logic is identical.
type MACScheme struct{}

// Verify implements types.Scheme.
func (MACScheme) Verify(pub, msg, sig []byte) bool {
	want := macSign(pub, msg)
	return subtle.ConstantTimeCompare(want[:], sig) == 1
}

func macSign(key, msg []byte) [32]byte {
	h := sha256.New()
	h.Write(key)
	h.Write(msg)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

type macSigner struct {
	id  types.NodeID
	key []byte
}

func (s *macSigner) ID() types.NodeID { return s.id }

func (s *macSigner) Sign(msg []byte) ([]byte, error) {
	sig := macSign(s.key, msg)
	return sig[:], nil
}

// Keys holds deterministic keys for a committee.
type Keys struct {
	Members []types.Member
	Signers map[types.NodeID]types.Signer
	Scheme  types.Scheme
}

// NewKeys derives keys for ids from seed. With mac true it uses MACScheme,
// otherwise Ed25519.
func NewKeys(ids []types.NodeID, seed int64, mac bool) *Keys {
	k := &Keys{Signers: map[types.NodeID]types.Signer{}}
	if mac {
		k.Scheme = MACScheme{}
	} else {
		k.Scheme = types.Ed25519{}
	}
	for _, id := range ids {
		var s [8]byte
		binary.BigEndian.PutUint64(s[:], uint64(seed))
		material := sha256.Sum256(append(s[:], []byte("hotstuff-sim-key/"+string(id))...))
		if mac {
			k.Members = append(k.Members, types.Member{ID: id, PublicKey: material[:]})
			k.Signers[id] = &macSigner{id: id, key: material[:]}
			continue
		}
		priv := ed25519.NewKeyFromSeed(material[:])
		k.Members = append(k.Members, types.Member{ID: id, PublicKey: priv.Public().(ed25519.PublicKey)})
		k.Signers[id] = types.NewEd25519Signer(id, priv)
	}
	return k
}
