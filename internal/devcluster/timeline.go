package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/identity"
)

// NodeState is what one poll of a node found.
type NodeState struct {
	ID string
	// Err is set when the node did not answer /v1/status; the other
	// fields are then zero.
	Err    error
	Status api.NodeStatus
	// Quarantine is the node's quarantine list (nil when the node runs no
	// detector or did not answer).
	Quarantine *api.QuarantineView
}

// Poller reads every node's /v1/status and, signed with the admin key,
// its quarantine list (GET /v1/admin/quarantine).
type Poller struct {
	layout *Layout
	http   *http.Client
	admin  *client.Client
}

// NewPoller returns a poller of l's nodes. Close it when done.
func NewPoller(l *Layout) (*Poller, error) {
	tlsCfg, err := identity.ClientTLS(l.CAFile, l.ClientCertFile, l.ClientKeyFile)
	if err != nil {
		return nil, err
	}
	key, err := identity.LoadKeyFile(l.AdminKeyPath)
	if err != nil {
		return nil, err
	}
	cfg := client.DefaultConfig()
	cfg.Endpoints = l.Endpoints()
	cfg.TLS = tlsCfg
	cfg.Key = key
	cfg.Retry.MaxAttempts = 1
	admin, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Poller{
		layout: l,
		http:   &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 2 * time.Second},
		admin:  admin,
	}, nil
}

// Close releases the poller's connections.
func (p *Poller) Close() {
	p.http.CloseIdleConnections()
	p.admin.Close()
}

// Poll asks every node at once and returns their states in layout order.
func (p *Poller) Poll(ctx context.Context) []NodeState {
	out := make([]NodeState, len(p.layout.Nodes))
	var wg sync.WaitGroup
	for i, n := range p.layout.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.poll(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

func (p *Poller) poll(ctx context.Context, n NodeLayout) NodeState {
	st := NodeState{ID: n.ID}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.Endpoint()+"/v1/status", nil)
	if err != nil {
		st.Err = err
		return st
	}
	resp, err := p.http.Do(req)
	if err != nil {
		st.Err = err
		return st
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		st.Err = fmt.Errorf("status of %s: HTTP %d", n.ID, resp.StatusCode)
		return st
	}
	if err := json.NewDecoder(resp.Body).Decode(&st.Status); err != nil {
		st.Err = fmt.Errorf("status of %s: %w", n.ID, err)
		return st
	}
	var q api.QuarantineView
	if err := p.admin.AdminJSON(ctx, n.Endpoint(), http.MethodGet, "/v1/admin/quarantine", nil, &q); err == nil {
		st.Quarantine = &q
	}
	return st
}

// Event kinds of a Timeline.
const (
	EventUp          = "up"          // every node answers and the cluster has a leader
	EventLeader      = "leader"      // the Raft leader changed
	EventEquivocate  = "equivocate"  // a node told to equivocate now leads, so its proposals equivocate
	EventQuarantine  = "quarantine"  // a correct node quarantined another
	EventSwitching   = "switching"   // a node ended its epoch and is handing over
	EventEpoch       = "epoch"       // every correct node runs a new epoch
	EventUnreachable = "unreachable" // a node stopped answering
	EventReachable   = "reachable"   // it answers again
)

// Event is one step of a Timeline.
type Event struct {
	Kind string
	// Node is the node the event is about: the leader, the quarantining
	// node, the unreachable node; empty for cluster-wide events.
	Node string
	// Offender is the quarantined node (EventQuarantine).
	Offender string
	// Epoch and Mode are the cluster's (EventUp, EventEpoch).
	Epoch uint64
	Mode  string
	Text  string
}

// Timeline turns successive polls of a cluster into the events an operator
// wants to see: cluster up, Raft leader changes, quarantines, the end of an
// epoch and the start of the next. It holds no goroutines; feed it polls.
type Timeline struct {
	// Byzantine maps each node told to misbehave to its behaviours; their
	// own epochs do not count for "every correct node".
	Byzantine map[string][]string

	up          bool
	leader      string
	epoch       uint64
	mode        string
	switching   bool
	quarantined map[[2]string]bool // (observer, offender)
	unreachable map[string]bool
	equivocates map[string]bool // announced
}

// Observe compares a poll with the previous ones and returns what changed.
func (t *Timeline) Observe(states []NodeState) []Event {
	if t.quarantined == nil {
		t.quarantined = map[[2]string]bool{}
		t.unreachable = map[string]bool{}
		t.equivocates = map[string]bool{}
	}
	var ev []Event
	if !t.up {
		e, ok := t.upEvent(states)
		if !ok {
			return nil
		}
		t.up = true
		ev = append(ev, e)
	}
	for _, s := range states {
		if s.Err != nil && !t.unreachable[s.ID] {
			t.unreachable[s.ID] = true
			ev = append(ev, Event{Kind: EventUnreachable, Node: s.ID, Text: s.ID + " does not answer"})
		} else if s.Err == nil && t.unreachable[s.ID] {
			delete(t.unreachable, s.ID)
			ev = append(ev, Event{Kind: EventReachable, Node: s.ID, Text: s.ID + " answers again"})
		}
	}
	ev = append(ev, t.leaderEvents(states)...)
	ev = append(ev, t.quarantineEvents(states)...)
	ev = append(ev, t.epochEvents(states)...)
	return ev
}

func (t *Timeline) upEvent(states []NodeState) (Event, bool) {
	leader := ""
	var term uint64
	for _, s := range states {
		if s.Err != nil || s.Status.LeaderID == "" || s.Status.AppliedIndex == 0 {
			return Event{}, false
		}
		leader, term = s.Status.LeaderID, max(term, s.Status.Term)
	}
	if len(states) == 0 {
		return Event{}, false
	}
	st := states[0].Status
	t.mode = st.Mode
	if st.Epoch != nil {
		t.epoch, t.mode = st.Epoch.Epoch, st.Epoch.Mode
	}
	text := fmt.Sprintf("cluster up: %d nodes, mode %s", len(states), t.mode)
	if t.epoch > 0 {
		text += fmt.Sprintf(", epoch %d", t.epoch)
	}
	if t.mode == "cft" {
		t.leader = leader
		text += fmt.Sprintf(", Raft leader %s (term %d)", leader, term)
	}
	ev := Event{Kind: EventUp, Epoch: t.epoch, Mode: t.mode, Text: text}
	return ev, true
}

// leaderEvents reports a new Raft leader that the correct nodes agree on.
func (t *Timeline) leaderEvents(states []NodeState) []Event {
	if t.mode != "cft" || t.switching {
		return nil
	}
	leader := ""
	var term uint64
	for _, s := range t.correct(states) {
		if s.Err != nil {
			continue
		}
		if s.Status.Mode != "cft" || (s.Status.Epoch != nil && (s.Status.Epoch.Switching || s.Status.Epoch.Epoch != t.epoch)) {
			return nil // the epoch is changing: the next one reports its own
		}
		if s.Status.LeaderID == "" || (leader != "" && s.Status.LeaderID != leader) {
			return nil
		}
		leader, term = s.Status.LeaderID, max(term, s.Status.Term)
	}
	if leader == "" || leader == t.leader {
		return nil
	}
	t.leader = leader
	ev := []Event{{Kind: EventLeader, Node: leader, Text: fmt.Sprintf("Raft leader is now %s (term %d)", leader, term)}}
	if e, ok := t.Equivocating(leader); ok {
		ev = append(ev, e)
	}
	return ev
}

// Equivocating returns, once per node, the event that a node told to
// equivocate leads and so equivocates on the entries it proposes. The
// timeline emits it when a poll shows the node as Raft leader, or before
// its first quarantine; call it when you know better (a leadership
// transfer to it returned).
func (t *Timeline) Equivocating(node string) (Event, bool) {
	if t.equivocates == nil {
		t.equivocates = map[string]bool{}
	}
	if !slices.Contains(t.Byzantine[node], "equivocate") || t.equivocates[node] {
		return Event{}, false
	}
	t.equivocates[node] = true
	return Event{Kind: EventEquivocate, Node: node,
		Text: node + " starts equivocating: as Raft leader it sends one follower other payloads for the entries it proposes"}, true
}

func (t *Timeline) quarantineEvents(states []NodeState) []Event {
	var ev []Event
	for _, s := range t.correct(states) {
		if s.Quarantine == nil {
			continue
		}
		for _, q := range s.Quarantine.Quarantined {
			k := [2]string{s.ID, q.Node}
			if t.quarantined[k] {
				continue
			}
			t.quarantined[k] = true
			if e, ok := t.Equivocating(q.Node); ok {
				ev = append(ev, e)
			}
			ev = append(ev, Event{Kind: EventQuarantine, Node: s.ID, Offender: q.Node,
				Text: fmt.Sprintf("%s quarantined %s: %s", s.ID, q.Node, describeEvidence(q))})
		}
	}
	return ev
}

// describeEvidence names the kinds of evidence behind a quarantine.
func describeEvidence(q api.QuarantineEntry) string {
	var kinds []string
	irrefutable := len(q.Evidence) > 0
	for _, e := range q.Evidence {
		if !slices.Contains(kinds, e.Kind) {
			kinds = append(kinds, e.Kind)
		}
		irrefutable = irrefutable && e.Irrefutable
	}
	if len(kinds) == 0 {
		return q.Reason
	}
	s := strings.Join(kinds, ", ") + " evidence"
	if irrefutable {
		s += " (irrefutable)"
	}
	return s
}

func (t *Timeline) epochEvents(states []NodeState) []Event {
	var ev []Event
	correct := t.correct(states)
	if !t.switching {
		for _, s := range correct {
			if e := s.Status.Epoch; e != nil && (e.Switching || e.Epoch > t.epoch) {
				t.switching = true
				ev = append(ev, Event{Kind: EventSwitching, Node: s.ID, Epoch: t.epoch,
					Text: fmt.Sprintf("epoch %d ends: %s applied the switch entry; hand-over under way", t.epoch, s.ID)})
				break
			}
		}
	}
	// Every correct node that answers runs the same later epoch.
	var next *api.EpochStatus
	answered := 0
	for _, s := range correct {
		if s.Err != nil {
			continue
		}
		answered++
		e := s.Status.Epoch
		if e == nil || e.Switching || e.Epoch <= t.epoch || (next != nil && e.Epoch != next.Epoch) {
			return ev
		}
		next = e
	}
	if next == nil || answered*2 <= len(correct) {
		return ev
	}
	from := t.mode
	t.epoch, t.mode, t.switching = next.Epoch, next.Mode, false
	t.leader = ""
	text := fmt.Sprintf("switched %s → %s: every correct node runs epoch %d", from, next.Mode, next.Epoch)
	if next.Reason != "" {
		text += fmt.Sprintf(" (reason: %q", next.Reason)
		if next.CertificateForm != "" {
			text += ", " + next.CertificateForm + " certificate"
		}
		text += ")"
	}
	return append(ev, Event{Kind: EventEpoch, Epoch: next.Epoch, Mode: next.Mode, Text: text})
}

// correct returns the states of the nodes not told to misbehave.
func (t *Timeline) correct(states []NodeState) []NodeState {
	out := make([]NodeState, 0, len(states))
	for _, s := range states {
		if _, byz := t.Byzantine[s.ID]; !byz {
			out = append(out, s)
		}
	}
	return out
}
