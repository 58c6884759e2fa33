package e2e

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
)

// TestAutoEscalatesOnEquivocation: four processes in consensus_mode auto,
// node4 built with -tags byzantine and told to equivocate. Leadership is
// moved to node4; as Raft leader it sends one follower other payloads for
// signed slots. Every correct node verifies the proof, quarantines node4
// (and only node4, with evidence that verifies against the member keys
// alone), and the cluster switches itself to HotStuff (epoch 2) with no
// operator: every correct node runs epoch 2 in bft, from the same
// hand-over statement, whose certificate names the detector as the reason
// and is signed by correct members only; and writes keep committing. When
// the follower node4 lied to signed a different state, the quorum of
// matching hand-over states is out of reach and the f+1 fallback
// certifies the others' state (DESIGN invariant 10); the diverged node
// fetches it. The times from the first equivocation and from the last
// quarantine to the last correct node in epoch 2 are logged.
func TestAutoEscalatesOnEquivocation(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	s := newByzantineSetup(t, byzBinary, "auto", map[string]any{"raft": fastRaft, "view_change_timeout": "400ms", "vote_timeout": "120ms"},
		"equivocate", equivocating)
	c, correct, watch, layout := s.c, s.correct, s.watch, s.layout
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl, members, adm := b.cl, b.members, b.adm

	// Make node4 lead (it may already).
	if c.waitLeader(nil, 30*time.Second) != byzantineNode && watch.first().IsZero() {
		if err := cl.TransferLeader(ctx, byzantineNode); err != nil {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
	}

	writes := 0
	write := func(i int) bool {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		_, err := cl.SetConfig(wctx, "load-"+strconv.Itoa(i), "v")
		if err == nil {
			writes++
		}
		return err == nil
	}
	since := waitQuarantined(ctx, t, c, adm, correct, watch, write, 50*time.Millisecond)
	var quarantined time.Time
	for _, s := range since {
		if s.After(quarantined) {
			quarantined = s
		}
	}

	// Every correct node runs epoch 2 in bft, with no operator.
	deadline := time.Now().Add(45 * time.Second)
	var switched time.Time
	var last string
	for switched.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not escalate to bft within 45s of the quarantine; last: %s", last)
		}
		write(writes)
		all := true
		for _, id := range correct {
			st, err := c.epochOf(ctx, cl, id)
			if err != nil || st.Epoch != 2 || st.Mode != "bft" || st.Switching {
				all, last = false, id+": "+strconv.FormatUint(st.Epoch, 10)+" "+st.Mode+" switching="+strconv.FormatBool(st.Switching)
				if err != nil {
					last += " " + err.Error()
				}
				break
			}
		}
		if all {
			switched = time.Now()
		}
	}
	first := watch.first()
	t.Logf("first equivocation to every correct node in epoch 2 (bft): %s; last quarantine to epoch 2: %s",
		switched.Sub(first).Round(time.Millisecond), switched.Sub(quarantined).Round(time.Millisecond))

	// Every correct node started epoch 2 from the same certified statement,
	// signed by correct members only, for the detector's reason.
	com := handoffCommittee(t, layout)
	var stmt *checkpoint.Statement
	for _, id := range correct {
		st, err := c.epochOf(ctx, cl, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.Reason, "detector: ") {
			t.Fatalf("%s: epoch 2 reason %q does not name the detector", id, st.Reason)
		}
		cert := st.Certificate
		if cert == nil {
			t.Fatalf("%s: epoch 2 has no certificate", id)
		}
		if err := cert.Verify(com, []string{byzantineNode}); err != nil {
			t.Fatalf("%s: epoch 2 certificate does not verify with %s quarantined: %v", id, byzantineNode, err)
		}
		if slices.Contains(cert.Signers(), byzantineNode) {
			t.Fatalf("%s: epoch 2 certificate counts the quarantined %s: %v", id, byzantineNode, cert.Signers())
		}
		if cert.Statement.Epoch != 2 || cert.Statement.Mode != "bft" || st.CertificateForm != cert.Form.String() {
			t.Fatalf("%s: epoch 2 certificate %s, form %s, status says %q", id, cert.Statement, cert.Form, st.CertificateForm)
		}
		if stmt == nil {
			stmt = &cert.Statement
		} else if !stmt.Equal(cert.Statement) {
			t.Fatalf("%s started epoch 2 from %s, another node from %s", id, cert.Statement, stmt)
		}
		t.Logf("%s: epoch 2 from %s, %s certificate signed by %v", id, cert.Statement, cert.Form, cert.Signers())
	}
	for _, id := range correct {
		evs := quarantineEvidence(ctx, t, c, adm, id, members)
		for _, e := range evs {
			if !e.Irrefutable() || e.Offender != byzantineNode {
				t.Fatalf("%s evidence %s: %s %s", id, e.ID(), e.Kind, e.Summary())
			}
		}
	}

	// Writes keep committing in epoch 2, and the correct nodes agree.
	for i := range 10 {
		if _, err := cl.SetConfig(ctx, "after-"+strconv.Itoa(i), "v"); err != nil {
			t.Fatalf("write %d in epoch 2: %v", i, err)
		}
	}
	c.waitConverged(correct, 20*time.Second)
	t.Logf("%d writes acknowledged before the switch; the correct nodes agree in epoch 2", writes)
}

// handoffCommittee is the hand-over committee: every node's public key,
// read from its data directory.
func handoffCommittee(t *testing.T, l *devcluster.Layout) *checkpoint.Committee {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, n := range l.Nodes {
		k, err := identity.LoadKeyFile(filepath.Join(n.DataDir, identity.NodeKeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		keys[n.ID] = k.Public().(ed25519.PublicKey)
	}
	com, err := checkpoint.NewCommittee(keys)
	if err != nil {
		t.Fatal(err)
	}
	return com
}
