package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Where a command's time goes inside the engine, for the commands handed
// over on this replica (Propose), as Prometheus histograms
// (tandem_hotstuff_command_stage_seconds and
// tandem_hotstuff_command_stage_views): from the hand-over to the first
// proposal that carries it (seen here: this replica's own or the leader's),
// and from that proposal to the commit and apply here. Beside them, how
// long one view lasts here and what one Ready's persistence step costs
// (the block store's fsynced transaction, with the safety file's fsync
// beside it). They cost a few clock reads per command and view.

// stageBuckets are the histogram buckets in seconds: 0.5 ms to about 4 s.
var stageBuckets = prometheus.ExponentialBuckets(0.0005, 2, 14)

// viewBuckets are the histogram buckets in views.
var viewBuckets = []float64{0, 1, 2, 3, 4, 5, 6, 8, 12, 16, 32}

// latencyStats are the engine's latency histograms.
type latencyStats struct {
	stage   *prometheus.HistogramVec // seconds, by stage
	views   *prometheus.HistogramVec // views, by stage
	view    prometheus.Histogram     // seconds one view lasted here
	persist prometheus.Histogram     // seconds of one Ready's persistence
	// The stages' series, resolved once rather than by label per command.
	proposedSecs, committedSecs   prometheus.Observer
	proposedViews, committedViews prometheus.Observer
	// lastViewAt is when this replica last entered a view (loop-owned).
	lastViewAt time.Time
}

func newLatencyStats() *latencyStats {
	l := &latencyStats{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_hotstuff_command_stage_seconds",
			Help:    "Time a command handed over on this node spent in each stage: proposed (hand-over to the first proposal carrying it), committed (that proposal to its commit and apply here).",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		views: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_hotstuff_command_stage_views",
			Help:    "Views a command handed over on this node spent in each stage (as tandem_hotstuff_command_stage_seconds).",
			Buckets: viewBuckets,
		}, []string{"stage"}),
		view: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_hotstuff_view_seconds",
			Help:    "How long each view lasted on this node (entering it to entering the next).",
			Buckets: stageBuckets,
		}),
		persist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_hotstuff_persist_seconds",
			Help:    "Time of one persistence step before messages leave: the block store's fsynced transaction and the safety file's fsync, side by side.",
			Buckets: stageBuckets,
		}),
	}
	l.proposedSecs, l.committedSecs = l.stage.WithLabelValues("proposed"), l.stage.WithLabelValues("committed")
	l.proposedViews, l.committedViews = l.views.WithLabelValues("proposed"), l.views.WithLabelValues("committed")
	return l
}

func (l *latencyStats) describe(ch chan<- *prometheus.Desc) {
	l.stage.Describe(ch)
	l.views.Describe(ch)
	l.view.Describe(ch)
	l.persist.Describe(ch)
}

func (l *latencyStats) collect(ch chan<- prometheus.Metric) {
	l.stage.Collect(ch)
	l.views.Collect(ch)
	l.view.Collect(ch)
	l.persist.Collect(ch)
}

// noteProposedAt records when a handed-over command was first seen in
// a proposal, and in which view.
func (c *inflightCmd) noteProposedAt(now time.Time, v types.View) {
	if c.proposedAt.IsZero() {
		c.proposedAt, c.propView = now, v
	}
}

// noteApplied observes the stages of a handed-over command applied at now
// in a block committed while this replica was in view cur.
func (l *latencyStats) noteApplied(c *inflightCmd, now time.Time, cur types.View) {
	if c.at.IsZero() || c.proposedAt.IsZero() {
		return
	}
	l.proposedSecs.Observe(c.proposedAt.Sub(c.at).Seconds())
	l.committedSecs.Observe(now.Sub(c.proposedAt).Seconds())
	if c.propView >= c.view {
		l.proposedViews.Observe(float64(c.propView - c.view))
	}
	if cur >= c.propView {
		l.committedViews.Observe(float64(cur - c.propView))
	}
}

// noteView records that this replica entered a view at now.
func (l *latencyStats) noteView(now time.Time) {
	if !l.lastViewAt.IsZero() {
		l.view.Observe(now.Sub(l.lastViewAt).Seconds())
	}
	l.lastViewAt = now
}
