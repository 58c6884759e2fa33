package node

import (
	"context"
	"fmt"

	"github.com/tandem-consensus/tandem/detector/score"
)

// setScore replaces the scoring thresholds of the running detector. The
// book is rebuilt under the new table from the evidence it holds (records
// that are no longer inside their time window drop out, as a prune would
// drop them) and the decision runs again, so a lowered quarantine
// threshold acts on the evidence already known. An invalid table is
// refused and changes nothing.
func (d *detector) setScore(ctx context.Context, c score.Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	book, err := score.NewBook(c, d.book.Members())
	if err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	book.Forgive(d.manager.Forgiven()...)
	now := d.clock()
	for _, e := range d.book.Evidence() {
		if _, err := book.Add(e, now); err != nil {
			d.log.Info("evidence record no longer counts under the new thresholds", "id", e.ID().Short(), "err", err)
		}
	}
	d.book, d.scfg = book, c
	d.log.Info("detector thresholds changed", "anomaly_threshold", c.AnomalyThreshold, "quarantine_threshold", c.QuarantineThreshold)
	d.decideLocked(ctx)
	return nil
}

// scoreConfig returns the scoring table in effect.
func (d *detector) scoreConfig() score.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scfg
}
