package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestBadInputsChangeNothing: each bad request gets its error code and the
// state hash of every node is unchanged afterwards.
func TestBadInputsChangeNothing(t *testing.T) {
	c := startCluster(t, 3, map[string]any{
		"limits": map[string]any{"result_window": 4, "max_request_bytes": 64 << 10},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 10 * time.Second}
	url := c.layout.Nodes[1].Endpoint() + "/v1/submit" // a follower or the leader: either must refuse

	// A client with only session.write, and seqs 1..6 executed by the admin
	// so that seq 1 falls out of the retained window of 4.
	admin := c.newClient(c.admin)
	limitedKey, _ := identity.GenerateKey()
	limited := smr.FormatKey(limitedKey.Public().(ed25519.PublicKey))
	if _, err := admin.UpdateACL(ctx, limited, smr.PermSessionWrite, smr.EffectAllow); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := admin.SetConfig(ctx, "k", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	adminInfo, _, err := admin.GetClient(ctx, smr.FormatKey(c.admin.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	high := adminInfo.HighestSeq
	if high < 6 {
		t.Fatalf("admin highest seq %d, want >= 6", high)
	}
	strangerKey, _ := identity.GenerateKey()

	sign := func(k ed25519.PrivateKey, seq uint64, cmd smr.Command) []byte {
		env, err := smr.Sign(k, seq, cmd)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	setK := func(v string) smr.Command { return smr.Command{Op: smr.OpSetConfig, Key: "k", Value: v} }
	unknownOp, _ := smr.Sign(c.admin, high+1, setK("x"))
	unknownOp.Command = []byte(`{"op":"drop_everything"}`)
	unknownOp.Sig = ed25519.Sign(c.admin, unknownOp.SignBytes())
	unknownOpBody, _ := json.Marshal(unknownOp)
	tampered, _ := smr.Sign(c.admin, high+1, setK("x"))
	tampered.Command = []byte(strings.Replace(string(tampered.Command), `"x"`, `"y"`, 1))
	tamperedBody, _ := json.Marshal(tampered)
	unsigned, _ := smr.Sign(c.admin, high+1, setK("x"))
	unsigned.Sig = nil
	unsignedBody, _ := json.Marshal(unsigned)

	// The retry of the admin's last seq with its original body: what the
	// SDK stored is not reachable here, so re-sign the same command the
	// last SetConfig sent ("e").
	retry := sign(c.admin, high, setK("e"))

	cases := []struct {
		name   string
		body   []byte
		status int
		code   smr.Code
	}{
		{"malformed JSON", []byte(`{"client": "AAA`), 400, smr.CodeMalformed},
		{"unknown field", []byte(`{"client":"","seq":1,"command":"","sig":"","extra":1}`), 400, smr.CodeMalformed},
		{"oversized body", bytes.Repeat([]byte("x"), 65<<10), 413, smr.CodeTooLarge},
		{"unknown command", unknownOpBody, 400, smr.CodeUnknownCommand},
		{"missing signature", unsignedBody, 401, smr.CodeBadSignature},
		{"tampered command", tamperedBody, 401, smr.CodeBadSignature},
		{"unknown client", sign(strangerKey, 1, setK("x")), 403, smr.CodeUnknownClient},
		{"missing permission", sign(limitedKey, 1, setK("x")), 403, smr.CodePermissionDenied},
		{"same seq, different body", sign(c.admin, high, setK("zzz")), 409, smr.CodeSeqConflict},
		{"regressed seq below the window", sign(c.admin, 1, setK("a")), 409, smr.CodeSeqTooOld},
		{"seq far ahead", sign(c.admin, high+1000, setK("x")), 400, smr.CodeSeqTooFar},
		{"replayed seq, same body", retry, 200, smr.CodeOK},
	}
	before := c.waitConverged(c.ids(), 10*time.Second)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := httpc.Post(url, "application/json", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			var body struct {
				Code    smr.Code    `json:"code"`
				Message string      `json:"message"`
				Result  *smr.Result `json:"result"`
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("response is not JSON: %s", raw)
			}
			if body.Code != tc.code {
				t.Fatalf("code %q, want %q: %s", body.Code, tc.code, raw)
			}
			if tc.code != smr.CodeOK && body.Message == "" {
				t.Fatalf("error without a message: %s", raw)
			}
			if tc.code == smr.CodeOK && (body.Result == nil || !body.Result.Duplicate) {
				t.Fatalf("replay was not answered from the result window: %s", raw)
			}
		})
	}
	// A linearizable read through the leader first, so that anything a bad
	// request might have proposed would be applied before we compare.
	if _, _, err := admin.GetConfig(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if after := c.waitConverged(c.ids(), 10*time.Second); after != before {
		t.Fatalf("state hash changed from %s to %s", before, after)
	}
	e, _, err := admin.GetConfig(ctx, "k")
	if err != nil || e.Value != "e" {
		t.Fatalf("k = %q (%v), want e", e.Value, err)
	}
}

// TestCorruptBoltFileRefusesToStart: a node whose raft.db is not a valid
// bolt database exits with an error naming the file, and leaves it as it
// was (no silent reset).
func TestCorruptBoltFileRefusesToStart(t *testing.T) {
	c := startCluster(t, 3, nil)
	admin := c.newClient(c.admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.SetConfig(ctx, "before", "corruption"); err != nil {
		t.Fatal(err)
	}
	n := c.layout.Nodes[2]
	if err := c.Stop(n.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(n.DataDir, "raft", "raft.db")
	garbage := bytes.Repeat([]byte("not a bolt file "), 4096)
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	out, err := exec.CommandContext(cctx, binary, "serve", "--config", n.ConfigPath).CombinedOutput()
	if err == nil {
		t.Fatalf("serve started on a corrupt raft.db:\n%s", out)
	}
	if cctx.Err() != nil {
		t.Fatalf("serve did not exit on a corrupt raft.db:\n%s", out)
	}
	if !strings.Contains(string(out), "raft.db") {
		t.Fatalf("error does not name the file:\n%s", out)
	}
	after, err := os.ReadFile(db)
	if err != nil || !bytes.Equal(after, garbage) {
		t.Fatalf("raft.db was modified (%v)", err)
	}
}
