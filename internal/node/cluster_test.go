package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestThreeNodeCluster runs three real nodes and exercises the Backend
// methods and the HTTPS API through the SDK. The steps share one cluster
// to keep the package fast; each step states what it proves.
func TestThreeNodeCluster(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	leader := c.leader(t)
	followers := c.followers(leader)
	t.Logf("leader %s, followers %s and %s", leader.id, followers[0].id, followers[1].id)

	t.Run("ready with a leader", func(t *testing.T) {
		for _, tn := range c.nodes {
			if err := tn.n.Ready(); err != nil {
				t.Errorf("%s: Ready() = %v with leader %s known", tn.id, err, leader.id)
			}
		}
	})

	t.Run("writes through the leader and through a follower", func(t *testing.T) {
		r1 := c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "via-leader", Value: "1"})
		r2 := c.submit(t, ctx, followers[0], c.admin, smr.Command{Op: smr.OpSetConfig, Key: "via-follower", Value: "2"})
		if r2.Index <= r1.Index {
			t.Fatalf("forwarded write at index %d, not after the earlier write at %d", r2.Index, r1.Index)
		}
		// A retry of the forwarded envelope is answered with the stored
		// result, not executed again.
		env := c.sign(t, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "retried", Value: "x"})
		first, err := followers[1].n.Submit(ctx, env)
		if err != nil || first.Code != smr.CodeOK {
			t.Fatalf("forwarded write: %+v %v", first, err)
		}
		again, err := followers[0].n.Submit(ctx, env)
		if err != nil || !again.Duplicate || again.Index != first.Index {
			t.Fatalf("retry through another follower: %+v %v, want the duplicate of %+v", again, err, first)
		}
	})

	t.Run("linearizable read on a follower sees a write acknowledged elsewhere", func(t *testing.T) {
		// Followers learn of a commit only with the leader's next
		// AppendEntries (commit_timeout later), so a stale local read
		// would miss these writes most of the time.
		behind := 0
		for i := range 5 {
			writer, reader := leader, followers[i%2]
			if i%2 == 1 {
				writer, reader = followers[0], followers[1]
			}
			want := fmt.Sprintf("v%d", i)
			res := c.submit(t, ctx, writer, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "lin", Value: want})
			if reader.n.fsm.AppliedIndex() < res.Index {
				behind++ // a local read would have missed the write
			}
			got, idx, err := configValue(ctx, reader, "lin", false)
			if err != nil {
				t.Fatalf("read %d on %s: %v", i, reader.id, err)
			}
			if got != want || idx < res.Index {
				t.Fatalf("read %d on %s after a write through %s at index %d: value %q at index %d, want %q", i, reader.id, writer.id, res.Index, got, idx, want)
			}
		}
		// The check has teeth only if the readers were behind when asked.
		t.Logf("the reader had not applied the write yet in %d of 5 reads", behind)
		if behind == 0 {
			t.Error("no read found its follower behind the write; the test no longer exercises the read index")
		}
	})

	t.Run("stale read on a follower", func(t *testing.T) {
		res := c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "stale", Value: "eventually"})
		f := followers[1]
		waitFor(t, "the follower to apply the write", 5*time.Second, func() bool {
			return f.n.fsm.AppliedIndex() >= res.Index
		})
		got, idx, err := configValue(ctx, f, "stale", true)
		if err != nil || got != "eventually" || idx < res.Index {
			t.Fatalf("stale read: %q at %d, %v", got, idx, err)
		}
		// A stale read answers from local state: a missing key is
		// not_found, not an error of the barrier.
		if _, _, err := configValue(ctx, f, "never-written", true); codeOf(err) != smr.CodeNotFound {
			t.Fatalf("stale read of a missing key: %v, want not_found", err)
		}
	})

	t.Run("equal state hashes after convergence", func(t *testing.T) {
		waitConverged(t, c)
	})

	newClient := func(t *testing.T) (ed25519.PrivateKey, string) {
		t.Helper()
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return k, identity.EncodePublicKey(k.Public().(ed25519.PublicKey))
	}

	t.Run("authorize", func(t *testing.T) {
		adminPub := c.admin.Public().(ed25519.PublicKey)
		for _, tn := range c.nodes {
			if err := tn.n.Authorize(adminPub, smr.PermAdmin); err != nil {
				t.Errorf("%s: bootstrap admin not authorized: %v", tn.id, err)
			}
		}
		k, subject := newClient(t)
		pub := k.Public().(ed25519.PublicKey)
		if err := leader.n.Authorize(pub, smr.PermToolWrite); codeOf(err) != smr.CodeUnknownClient {
			t.Fatalf("uninvited key: %v, want unknown_client", err)
		}
		res := c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpUpdateACL, Subject: subject, Permission: smr.PermToolWrite, Effect: smr.EffectAllow})
		for _, tn := range c.nodes {
			waitFor(t, tn.id+" to apply the grant", 5*time.Second, func() bool { return tn.n.fsm.AppliedIndex() >= res.Index })
			if err := tn.n.Authorize(pub, smr.PermToolWrite); err != nil {
				t.Errorf("%s: granted permission refused: %v", tn.id, err)
			}
			if err := tn.n.Authorize(pub, smr.PermAdmin); codeOf(err) != smr.CodePermissionDenied {
				t.Errorf("%s: admin for a tool writer: %v, want permission_denied", tn.id, err)
			}
		}
	})

	t.Run("a follower does not refuse a client invited through another node", func(t *testing.T) {
		// The grant is acknowledged by the leader; the follower has not
		// applied it yet when the new client's first write arrives. The
		// rejection must come from an up-to-date state, not a stale one.
		behind := 0
		for i := range 3 {
			k, subject := newClient(t)
			grant := c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpUpdateACL, Subject: subject, Permission: smr.PermToolWrite, Effect: smr.EffectAllow})
			if followers[i%2].n.fsm.AppliedIndex() < grant.Index {
				behind++
			}
			res, err := followers[i%2].n.Submit(ctx, c.sign(t, k, smr.Command{Op: smr.OpRegisterTool, ToolName: fmt.Sprintf("t%d", i), Definition: json.RawMessage(`{}`)}))
			if err != nil || res.Code != smr.CodeOK {
				t.Fatalf("first write of a just-invited client through %s: %+v, %v", followers[i%2].id, res, err)
			}
		}
		if behind == 0 {
			t.Error("the follower had applied every grant before the write arrived; the test no longer exercises a stale replica")
		}
		// A client that really is unknown is still refused.
		k, _ := newClient(t)
		_, err := followers[0].n.Submit(ctx, c.sign(t, k, smr.Command{Op: smr.OpSetConfig, Key: "x", Value: "y"}))
		if codeOf(err) != smr.CodeUnknownClient {
			t.Fatalf("uninvited client: %v, want unknown_client", err)
		}
	})

	t.Run("snapshot on a follower", func(t *testing.T) {
		res := c.submit(t, ctx, followers[0], c.admin, smr.Command{Op: smr.OpSetConfig, Key: "before-snapshot", Value: "1"})
		var buf bytes.Buffer
		idx, err := followers[1].n.SnapshotSave(ctx, &buf)
		if err != nil {
			t.Fatal(err)
		}
		info, _, err := smr.SnapshotInfo(buf.Bytes())
		if err != nil {
			t.Fatalf("snapshot from a follower does not parse: %v", err)
		}
		if info != idx {
			t.Fatalf("SnapshotSave returned index %d, the snapshot says %d", idx, info)
		}
		if idx < res.Index {
			t.Fatalf("snapshot at index %d misses the write acknowledged at %d", idx, res.Index)
		}
	})

	t.Run("over HTTPS with the SDK", func(t *testing.T) {
		tlsCfg := c.clientTLS(t, "sdk")
		sdk := func(key ed25519.PrivateKey, nodes ...*testNode) *client.Client {
			cfg := client.DefaultConfig()
			for _, tn := range nodes {
				cfg.Endpoints = append(cfg.Endpoints, tn.endpoint())
			}
			cfg.Key = key
			cfg.TLS = tlsCfg
			cl, err := client.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cl.Close() })
			return cl
		}
		writer, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpUpdateACL, Subject: identity.EncodePublicKey(writer.Public().(ed25519.PublicKey)), Permission: smr.PermToolWrite, Effect: smr.EffectAllow})

		// Writes through a follower only (forwarded), reads through the
		// other follower only.
		w := sdk(writer, followers[0])
		r := sdk(nil, followers[1])
		for i := range 3 {
			name := fmt.Sprintf("sdk-tool-%d", i)
			res, err := w.RegisterTool(ctx, name, json.RawMessage(`{"type":"object"}`))
			if err != nil {
				t.Fatalf("RegisterTool through %s: %v", followers[0].id, err)
			}
			tool, idx, err := r.GetTool(ctx, name)
			if err != nil || tool.ToolName != name || idx < res.Index {
				t.Fatalf("GetTool through %s: %+v at %d, %v (write at %d)", followers[1].id, tool, idx, err, res.Index)
			}
		}
		if _, _, err := r.GetTool(ctx, "sdk-tool-0", client.Stale()); err != nil {
			t.Fatalf("stale GetTool: %v", err)
		}
		// Refusals keep their codes across the API.
		if _, err := w.SetConfig(ctx, "k", "v"); client.ErrorCode(err) != smr.CodePermissionDenied {
			t.Fatalf("SetConfig without config.write: %v, want permission_denied", err)
		}

		// Admin requests signed by the bootstrap admin, through a follower.
		adm := sdk(c.admin, followers[1])
		var buf bytes.Buffer
		idx, err := adm.SnapshotSave(ctx, &buf)
		if err != nil {
			t.Fatalf("SnapshotSave over HTTPS: %v", err)
		}
		if info, _, err := smr.SnapshotInfo(buf.Bytes()); err != nil || info != idx {
			t.Fatalf("downloaded snapshot: index %d, header says %d, %v", info, idx, err)
		}
		// The writer is no admin.
		if _, err := sdk(writer, followers[1]).SnapshotSave(ctx, &bytes.Buffer{}); client.ErrorCode(err) != smr.CodePermissionDenied {
			t.Fatalf("SnapshotSave by a non-admin: %v, want permission_denied", err)
		}

		all := sdk(nil, c.nodes...)
		waitFor(t, "equal state hashes over HTTPS", 10*time.Second, func() bool {
			hashes := map[string]bool{}
			for _, es := range all.StatusAll(ctx) {
				if es.Err != nil {
					t.Fatalf("status of %s: %v", es.Endpoint, es.Err)
				}
				hashes[fmt.Sprintf("%d/%s", es.Status.AppliedIndex, es.Status.StateHash)] = true
			}
			return len(hashes) == 1
		})
		members, err := all.Members(ctx)
		if err != nil || len(members) != 3 {
			t.Fatalf("members: %+v %v", members, err)
		}

		// Readiness and metrics on the same HTTPS port.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		defer hc.CloseIdleConnections()
		get := func(tn *testNode, path string) (int, string) {
			t.Helper()
			resp, err := hc.Get(tn.endpoint() + path)
			if err != nil {
				t.Fatalf("GET %s on %s: %v", path, tn.id, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get(followers[1], "/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz: %d %s", code, body)
		}
		code, body := get(followers[0], "/metrics")
		for _, want := range []string{
			`tandem_requests_total{code="ok",endpoint="/v1/submit"}`,
			`tandem_requests_total{code="permission_denied",endpoint="/v1/submit"} 1`,
			"tandem_raft_engine_term",
			"tandem_build_info",
		} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("/metrics on %s (status %d) lacks %s", followers[0].id, code, want)
			}
		}
		// A client without a certificate is refused by the TLS handshake.
		noCert := tlsCfg.Clone()
		noCert.Certificates = nil
		bare := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}
		defer bare.CloseIdleConnections()
		if resp, err := bare.Get(followers[0].endpoint() + "/healthz"); err == nil {
			resp.Body.Close()
			t.Fatalf("a client without a certificate got status %d, want a refused handshake", resp.StatusCode)
		}
	})

	t.Run("admin operations on a follower name the leader", func(t *testing.T) {
		err := followers[0].n.TransferLeader(ctx, "")
		if !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("TransferLeader on a follower: %v, want ErrUnavailable", err)
		}
		b := api.ErrorBodyFor(err)
		if b.Code != api.CodeNoLeader || b.LeaderID != leader.id {
			t.Fatalf("error body %+v, want no_leader with leader_id %s", b, leader.id)
		}
	})

	t.Run("transfer leadership", func(t *testing.T) {
		target := followers[1]
		if err := leader.n.TransferLeader(ctx, target.id); err != nil {
			t.Fatalf("TransferLeader to %s: %v", target.id, err)
		}
		if l := c.leader(t); l != target {
			t.Fatalf("leader after the transfer is %s, want %s", l.id, target.id)
		}
		// Writes work through the new leader and the old one.
		c.submit(t, ctx, target, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "after-transfer", Value: "1"})
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "after-transfer", Value: "2"})
		if got, _, err := configValue(ctx, followers[0], "after-transfer", false); err != nil || got != "2" {
			t.Fatalf("read after the transfer: %q %v", got, err)
		}
		waitConverged(t, c)
	})
}

// waitConverged waits until every node reports the same applied index and
// state hash in Status, and that the index is the commit index.
func waitConverged(t *testing.T, c *testCluster) {
	t.Helper()
	var last []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		last = last[:0]
		same := true
		var first api.NodeStatus
		for i, tn := range c.nodes {
			st := tn.n.Status(context.Background())
			if st.NodeID != tn.id || len(st.StateHash) != 64 {
				t.Fatalf("%s: status %+v", tn.id, st)
			}
			last = append(last, fmt.Sprintf("%s applied %d hash %s", tn.id, st.AppliedIndex, st.StateHash[:12]))
			if i == 0 {
				first = st
			} else if st.AppliedIndex != first.AppliedIndex || st.StateHash != first.StateHash {
				same = false
			}
		}
		if same && first.AppliedIndex > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state did not converge: %v", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
