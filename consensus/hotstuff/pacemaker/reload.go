package pacemaker

// Config returns the timeouts in effect.
func (p *Pacemaker) Config() Config { return p.cfg }

// SetConfig replaces the timeouts while the pacemaker runs; an invalid cfg
// is refused and changes nothing. The current view keeps the ticks it has
// spent and its count of consecutive timed-out views: with a shorter view
// timeout that has already run out, the next Tick reports Timeout.
func (p *Pacemaker) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.cfg = cfg
	return nil
}
