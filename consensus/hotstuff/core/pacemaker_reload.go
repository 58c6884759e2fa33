package core

import (
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
)

// SetPacemaker replaces the view timeouts and the idle-propose delay (both
// in ticks) of a running core, as Config.Pacemaker and Config.IdlePropose
// would have set them. The current view keeps its elapsed ticks. An invalid
// combination is refused and changes nothing. Timeouts are local to each
// replica: they decide when this replica gives up on a view, never whether
// a message is valid, so replicas may run different values.
func (c *Core) SetPacemaker(pm pacemaker.Config, idlePropose int) error {
	if err := pm.Validate(); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	if idlePropose < 0 || idlePropose >= pm.ViewTimeout {
		return fmt.Errorf("core: idle propose delay is %d ticks, must be in [0, view timeout %d)", idlePropose, pm.ViewTimeout)
	}
	if err := c.pm.SetConfig(pm); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	c.cfg.Pacemaker = pm
	c.cfg.IdlePropose = idlePropose
	return nil
}

// PacemakerConfig returns the view timeouts in effect, in ticks.
func (c *Core) PacemakerConfig() pacemaker.Config { return c.pm.Config() }
