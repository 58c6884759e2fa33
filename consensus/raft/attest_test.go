package raftengine

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

const testEpoch = 3

// TestAttestationsReplicated: every node applies every proposal with the
// leader's verified attestation; within a term the slots count from 1.
func TestAttestationsReplicated(t *testing.T) {
	c := newSignedCluster(t, 3, fastRaft())
	c.bootstrap()
	c.propose(5)
	c.converged(c.leader())
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	var first []AttestationCheck
	for _, n := range c.nodes {
		checks := c.checks[n.id]
		if len(checks) < 5 {
			t.Fatalf("%s checked %d entries, want at least 5", n.id, len(checks))
		}
		seqs := map[uint64]uint64{} // term -> last seq
		for _, ac := range checks {
			if ac.Err != nil || ac.Evidence != nil || ac.Attestation == nil {
				t.Fatalf("%s: entry %d: %+v", n.id, ac.Index, ac)
			}
			a := ac.Attestation
			if a.Epoch != testEpoch || a.Term != ac.Term || string(a.Leader) != ac.Leader {
				t.Fatalf("%s: entry %d: attestation %s, entry term %d, leader %q", n.id, ac.Index, a, ac.Term, ac.Leader)
			}
			if a.Seq != seqs[a.Term]+1 {
				t.Fatalf("%s: entry %d: seq %d after %d in term %d", n.id, ac.Index, a.Seq, seqs[a.Term], a.Term)
			}
			seqs[a.Term] = a.Seq
		}
		if first == nil {
			first = checks
			continue
		}
		for i := range min(len(first), len(checks)) {
			if first[i].Attestation.PayloadHash != checks[i].Attestation.PayloadHash {
				t.Fatalf("%s applied another payload at entry %d", n.id, checks[i].Index)
			}
		}
	}
}

// testChecker checks as a replica of members ms in epoch testEpoch whose
// current term 5 is led by "a".
func testChecker(ms *evidence.Members) *checker {
	return &checker{epoch: testEpoch, members: ms, current: func() (uint64, string) { return 5, "a" }, leaders: map[uint64]string{}}
}

func TestCheckerRules(t *testing.T) {
	keys := map[string]ed25519.PrivateKey{}
	var ms []evidence.Member
	for _, id := range []string{"a", "b", "c", "d"} {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = k
		ms = append(ms, evidence.Member{ID: evidence.NodeID(id), PublicKey: k.Public().(ed25519.PublicKey)})
	}
	members, err := evidence.NewMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	_, client, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(valid bool) []byte {
		env, err := smr.Sign(client, 1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		if !valid {
			env.Sig[0] ^= 1
		}
		ent := smr.NewCommandEntry(1, *env)
		b, err := ent.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	attest := func(signer ed25519.PrivateKey, leader string, epoch, term, seq uint64, data []byte) []byte {
		a, err := evidence.SignProposal(signer, evidence.NodeID(leader), epoch, term, seq, data)
		if err != nil {
			t.Fatal(err)
		}
		b, err := evidence.MarshalAttestation(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := entry(true)
	cases := map[string]struct {
		log      raft.Log
		err      string // "" for none
		leader   string
		evidence bool
	}{
		"valid":          {raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "a", testEpoch, 5, 1, good)}, "", "a", false},
		"earlier term":   {raft.Log{Term: 6, Data: good, Extensions: attest(keys["a"], "a", testEpoch, 4, 1, good)}, "", "", false},
		"missing":        {raft.Log{Term: 5, Data: good}, "no leader attestation", "a", false},
		"undecodable":    {raft.Log{Term: 5, Data: good, Extensions: []byte{1, 2}}, "decode", "a", false},
		"wrong epoch":    {raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "a", testEpoch+1, 5, 1, good)}, "epoch", "a", false},
		"later term":     {raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "a", testEpoch, 6, 1, good)}, "after the entry's term", "a", false},
		"forged":         {raft.Log{Term: 5, Data: good, Extensions: attest(keys["b"], "a", testEpoch, 5, 1, good)}, "does not verify", "a", false},
		"not a member":   {raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "z", testEpoch, 5, 1, good)}, "not a member", "a", false},
		"other payload":  {raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "a", testEpoch, 5, 1, []byte("x"))}, "does not cover", "a", false},
		"invalid client": {raft.Log{Term: 5, Data: entry(false), Extensions: attest(keys["a"], "a", testEpoch, 5, 1, entry(false))}, "", "a", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ac := testChecker(members).check(&tc.log)
			switch {
			case tc.err == "" && ac.Err != nil:
				t.Fatalf("unexpected error %v", ac.Err)
			case tc.err != "" && (ac.Err == nil || !strings.Contains(ac.Err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", ac.Err, tc.err)
			}
			if ac.Leader != tc.leader {
				t.Fatalf("leader %q, want %q", ac.Leader, tc.leader)
			}
			if (ac.Evidence != nil) != tc.evidence {
				t.Fatalf("evidence %v, want %v", ac.Evidence, tc.evidence)
			}
			if ac.Evidence != nil {
				if err := evidence.Verify(ac.Evidence, members); err != nil {
					t.Fatalf("evidence does not verify: %v", err)
				}
				if ac.Evidence.Kind != evidence.KindInvalidClientSignature || ac.Evidence.Offender != "a" {
					t.Fatalf("evidence %s", ac.Evidence)
				}
			}
		})
	}

	// A second signer for a term already attested by another leader.
	ch := testChecker(members)
	if ac := ch.check(&raft.Log{Term: 5, Data: good, Extensions: attest(keys["a"], "a", testEpoch, 5, 1, good)}); ac.Err != nil {
		t.Fatal(ac.Err)
	}
	ac := ch.check(&raft.Log{Term: 5, Data: good, Extensions: attest(keys["b"], "b", testEpoch, 5, 2, good)})
	if ac.Err == nil || !strings.Contains(ac.Err.Error(), "was led by a") {
		t.Fatalf("second leader in a term: %v", ac.Err)
	}
}
