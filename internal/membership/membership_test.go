package membership

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/testlog"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fast = Timing{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, GossipInterval: 20 * time.Millisecond, PushPullInterval: 500 * time.Millisecond, SuspicionMult: 2}

func start(t *testing.T, id string, key []byte, join ...string) *Membership {
	t.Helper()
	m, err := Start(context.Background(), Config{
		NodeID:       id,
		BindAddr:     "127.0.0.1:0",
		Join:         join,
		SecretKey:    key,
		Meta:         Meta{PeerAddr: "127.0.0.1:70" + id[len(id)-1:], APIAddr: "127.0.0.1:80" + id[len(id)-1:]},
		Logger:       testlog.New(t, slog.LevelInfo),
		Timing:       fast,
		JoinRetryMin: 20 * time.Millisecond,
		JoinRetryMax: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func ids(metas []Meta) []string {
	out := make([]string, len(metas))
	for i, m := range metas {
		out[i] = m.ID
	}
	return out
}

// TestThreeNodesFindEachOther: nodes started in any order find each other
// through Join; WaitForExpect returns every node's metadata; a node that
// shuts down disappears from the others' Members.
func TestThreeNodesFindEachOther(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	n1 := start(t, "node-1", key)
	n2 := start(t, "node-2", key, n1.LocalAddr())
	n3 := start(t, "node-3", key, n2.LocalAddr())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []*Membership{n1, n2, n3} {
		got, err := n.WaitForExpect(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"node-1", "node-2", "node-3"}; !slices.Equal(ids(got), want) {
			t.Fatalf("members = %v, want %v", ids(got), want)
		}
		for _, m := range got {
			suffix := m.ID[len(m.ID)-1:]
			if m.PeerAddr != "127.0.0.1:70"+suffix || m.APIAddr != "127.0.0.1:80"+suffix {
				t.Errorf("meta of %s = %+v", m.ID, m)
			}
		}
	}
	select {
	case <-n1.Notify():
	default:
		t.Error("Notify was not signalled after members joined")
	}

	if err := n3.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Membership{n1, n2} {
		waitFor(t, "node-3 to disappear", func() bool { return len(n.Members()) == 2 })
	}
	if got := ids(n1.Members()); !slices.Equal(got, []string{"node-1", "node-2"}) {
		t.Errorf("members after node-3 left = %v", got)
	}
}

// TestFailedMemberDisappears: a member that stops without leaving is
// detected as failed and dropped.
func TestFailedMemberDisappears(t *testing.T) {
	n1 := start(t, "node-1", nil)
	n2 := start(t, "node-2", nil, n1.LocalAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n1.WaitForExpect(ctx, 2); err != nil {
		t.Fatal(err)
	}
	n2.Shutdown()
	waitFor(t, "failed node-2 to disappear", func() bool { return len(n1.Members()) == 1 })
}

// TestWrongKeyCannotJoin: a node with another gossip key keeps failing to
// join and is never listed.
func TestWrongKeyCannotJoin(t *testing.T) {
	n1 := start(t, "node-1", []byte("0123456789abcdef0123456789abcdef"))
	intruder := start(t, "node-9", []byte("fedcba9876543210fedcba9876543210"), n1.LocalAddr())
	waitFor(t, "two failed join attempts", func() bool { return intruder.Stats().JoinFailures >= 2 })
	if st := intruder.Stats(); st.Joined {
		t.Errorf("intruder stats = %+v, want not joined", st)
	}
	if got := ids(n1.Members()); !slices.Equal(got, []string{"node-1"}) {
		t.Errorf("members of node-1 = %v, want only node-1", got)
	}
	if got := ids(intruder.Members()); !slices.Equal(got, []string{"node-9"}) {
		t.Errorf("members of intruder = %v, want only node-9", got)
	}
}

// TestInvalidMetaIsRejected: a gossip member whose metadata does not parse
// or names another node is counted and left out, without harm.
func TestInvalidMetaIsRejected(t *testing.T) {
	n1 := start(t, "node-1", nil)
	for _, tc := range []struct{ name, meta string }{
		{"bogus", "not json"},
		{"liar", `{"id":"node-1","peer_addr":"127.0.0.1:1"}`},
	} {
		c := memberlist.DefaultLANConfig()
		c.Name, c.BindAddr, c.BindPort = tc.name, "127.0.0.1", 0
		c.Logger = log.New(io.Discard, "", 0)
		c.Delegate = &delegate{meta: []byte(tc.meta), m: &Membership{}}
		ml, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		defer ml.Shutdown()
		if _, err := ml.Join([]string{n1.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two rejected metas", func() bool { return n1.Stats().RejectedMeta >= 2 })
	if got := ids(n1.Members()); !slices.Equal(got, []string{"node-1"}) {
		t.Errorf("members = %v, want only node-1", got)
	}
}

func TestWaitForExpectHonoursContext(t *testing.T) {
	n1 := start(t, "node-1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := n1.WaitForExpect(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForExpect = %v, want DeadlineExceeded", err)
	}
	got, err := n1.WaitForExpect(context.Background(), 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("WaitForExpect(1) = %v, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{NodeID: "node-1", BindAddr: "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no id", func(c *Config) { c.NodeID = "" }, "node ID is empty"},
		{"meta id", func(c *Config) { c.Meta.ID = "node-2" }, "differs from node ID"},
		{"bind", func(c *Config) { c.BindAddr = "127.0.0.1" }, "bind address"},
		{"key", func(c *Config) { c.SecretKey = make([]byte, 31) }, "31 bytes"},
		{"meta size", func(c *Config) { c.Meta.APIAddr = strings.Repeat("x", 600) }, "limit of 512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
