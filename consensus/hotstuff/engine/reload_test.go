package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
)

// TestSetTimeoutsChangesThePacemaker: a reloaded view_change_timeout
// reaches the pacemaker of the running engine (its view length in ticks),
// an invalid one changes nothing, and the cluster keeps committing.
func TestSetTimeoutsChangesThePacemaker(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.mustWrite(c.nodes[0], "x", "1")
	nd := c.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	before, err := nd.e.Timeouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.ViewChangeTimeout != 300*time.Millisecond {
		t.Fatalf("view change timeout before = %s, want the configured 300ms", before.ViewChangeTimeout)
	}
	want := Timeouts{ViewChangeTimeout: 800 * time.Millisecond, VoteTimeout: 200 * time.Millisecond, MaxViewChangeRetries: 3, SnapshotInterval: 50}
	if err := nd.e.SetTimeouts(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := nd.e.Timeouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Timeouts after SetTimeouts = %+v, want %+v", got, want)
	}
	var pmView, pmResend, pmRetries int
	if err := nd.e.inLoop(ctx, "test", func() {
		pm := nd.e.core.PacemakerConfig()
		pmView, pmResend, pmRetries = pm.ViewTimeout, pm.ResendInterval, pm.MaxRetries
	}); err != nil {
		t.Fatal(err)
	}
	// 5 ms ticks: 800 ms is 160 ticks, 200 ms 40.
	if pmView != 160 || pmResend != 40 || pmRetries != 3 {
		t.Fatalf("pacemaker after SetTimeouts: view %d ticks, resend %d, retries %d; want 160, 40, 3", pmView, pmResend, pmRetries)
	}

	bad := []Timeouts{
		{ViewChangeTimeout: 0, MaxViewChangeRetries: 3},
		{ViewChangeTimeout: time.Second, VoteTimeout: 2 * time.Second, MaxViewChangeRetries: 3},
		{ViewChangeTimeout: time.Second, MaxViewChangeRetries: 0},
		{ViewChangeTimeout: 5 * time.Millisecond, MaxViewChangeRetries: 3}, // one tick
	}
	for _, b := range bad {
		if err := nd.e.SetTimeouts(ctx, b); err == nil {
			t.Errorf("SetTimeouts(%+v) accepted", b)
		}
	}
	if got, _ := nd.e.Timeouts(ctx); got != want {
		t.Fatalf("refused SetTimeouts changed the timeouts to %+v", got)
	}
	c.mustWrite(nd, "y", "2")

	_ = nd.e.Stop()
	if err := nd.e.SetTimeouts(ctx, want); !errors.Is(err, consensus.ErrStopped) {
		t.Fatalf("SetTimeouts on a stopped engine: %v, want ErrStopped", err)
	}
}
