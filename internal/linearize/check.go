package linearize

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is porcupine's answer: porcupine.Ok, porcupine.Illegal, or
// porcupine.Unknown when the check timed out.
type Verdict = porcupine.CheckResult

// Result is the outcome of Check.
type Result struct {
	Verdict Verdict
	Checked int // operations given to the checker (failed ones and unanswered reads left out)
	Counts  Counts

	model porcupine.Model
	info  porcupine.LinearizationInfo
}

// WriteHTML writes porcupine's visualization of the checked history to
// path: the linearization found, or the longest partial linearizations and
// the point where each one fails.
func (r Result) WriteHTML(path string) error {
	if r.model.Step == nil {
		return errors.New("write history visualization: the result holds no checked history")
	}
	if err := porcupine.VisualizePath(r.model, r.info, path); err != nil {
		return fmt.Errorf("write history visualization %s: %w", path, err)
	}
	return nil
}

// Check reports whether h is linearizable with respect to the config-key
// register model, giving the checker at most timeout. Any verdict other than
// porcupine.Ok is an error: Illegal (with a description of where the history
// fails) and Unknown (the timeout expired; not a pass). An invalid history
// (an operation without a kind, a key, an outcome, or returning before it
// was invoked) is an error and is not checked.
//
// Puts and deletes with OutcomeUnknown are checked as returning at
// infinity, so they may take effect at any time after their invocation, or
// never. Operations with OutcomeFailed and reads with OutcomeUnknown are
// left out.
func Check(h History, timeout time.Duration) (Result, error) {
	if timeout <= 0 {
		return Result{}, fmt.Errorf("linearizability check: timeout %s must be positive", timeout)
	}
	ops, err := operations(h)
	if err != nil {
		return Result{}, err
	}
	m := model(h)
	verdict, info := porcupine.CheckOperationsVerbose(m, ops, timeout)
	res := Result{Verdict: verdict, Checked: len(ops), Counts: h.Counts(0), model: m, info: info}
	switch verdict {
	case porcupine.Ok:
		return res, nil
	case porcupine.Unknown:
		return res, fmt.Errorf("linearizability check of %d operations (%s) gave no verdict within %s; an unknown verdict is not a pass",
			len(ops), res.Counts, timeout)
	default:
		return res, fmt.Errorf("history of %d operations (%s) is not linearizable: %s",
			len(ops), res.Counts, describeIllegal(h, ops, info))
	}
}

// operations validates h and converts the operations the check uses.
func operations(h History) ([]porcupine.Operation, error) {
	var ops []porcupine.Operation
	for i, op := range h {
		if err := validate(op); err != nil {
			return nil, fmt.Errorf("linearizability check: operation %d (%s): %w", i, op, err)
		}
		out := output{Output: op.Output}
		ret := int64(op.Return)
		switch {
		case op.Outcome == OutcomeFailed:
			continue
		case op.Outcome == OutcomeUnknown && op.Input.Kind == KindGet:
			continue
		case op.Outcome == OutcomeUnknown:
			out, ret = output{unknown: true}, math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{
			ClientId: op.ClientID,
			Input:    op.Input,
			Call:     int64(op.Call),
			Output:   out,
			Return:   ret,
			Metadata: i,
		})
	}
	return ops, nil
}

func validate(op Op) error {
	switch {
	case op.Input.Kind < KindPut || op.Input.Kind > KindGet:
		return fmt.Errorf("invalid kind %d", op.Input.Kind)
	case op.Input.Key == "":
		return errors.New("empty key")
	case op.Outcome < OutcomeOK || op.Outcome > OutcomeUnknown:
		return fmt.Errorf("invalid outcome %d", op.Outcome)
	case op.ClientID < 0:
		return fmt.Errorf("negative client id %d", op.ClientID)
	case op.Call < 0:
		return fmt.Errorf("negative invocation time %s", op.Call)
	case op.Outcome == OutcomeOK && op.Return == Never:
		return errors.New("an ok operation must have returned")
	case op.Return < op.Call:
		return fmt.Errorf("returns at %s, before its invocation at %s", op.Return, op.Call)
	}
	return nil
}

// describeIllegal names each key without a linearization, how far the
// longest linearizable prefix got, and the operations none of which can
// come next.
func describeIllegal(h History, ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := partitionByKey(ops)
	partials := info.PartialLinearizationsOperations()
	var msgs []string
	for p, part := range parts {
		if p >= len(partials) {
			break
		}
		var longest []porcupine.Operation
		for _, l := range partials[p] {
			if len(l) > len(longest) {
				longest = l
			}
		}
		if len(longest) == len(part) {
			continue
		}
		key := part[0].Input.(Input).Key
		msg := fmt.Sprintf("key %q (%d operations) has no linearization; the longest linearizable prefix orders %d",
			key, len(part), len(longest))
		in := map[int]bool{}
		for _, op := range longest {
			in[op.Metadata.(int)] = true
		}
		if len(longest) > 0 {
			msg += fmt.Sprintf(" and ends with [%s]", h[longest[len(longest)-1].Metadata.(int)])
		}
		var rest []porcupine.Operation
		for _, op := range part {
			if !in[op.Metadata.(int)] {
				rest = append(rest, op)
			}
		}
		slices.SortStableFunc(rest, func(a, b porcupine.Operation) int {
			if a.Return != b.Return {
				if a.Return < b.Return {
					return -1
				}
				return 1
			}
			return 0
		})
		var next []string
		for _, op := range rest[:min(3, len(rest))] {
			next = append(next, "["+h[op.Metadata.(int)].String()+"]")
		}
		msg += "; none of these can come next: " + strings.Join(next, ", ")
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return "the checker found no linearization"
	}
	return strings.Join(msgs, "; ")
}

// CheckAcknowledged checks that no acknowledged write is missing. final
// holds, for every key written in h, the answer of a linearizable read of
// that key invoked after every operation of h had returned (or after the
// load stopped and the cluster converged).
//
// Precisely: for every put p(k, v) with OutcomeOK, the final read of k must
// return v, or there must be another write w of k with OutcomeOK or
// OutcomeUnknown that p does not precede in real time (w returned after p
// was invoked, or its outcome is unknown, so it may take effect at any time
// after its invocation) and that explains the final read: a put
// of the value read, or a delete when k was read as not set. A key written
// in h without an entry in final is an error.
//
// Linearizability implies this property; it is checked on its own so that
// a lost acknowledged write is reported as such, by key and value.
func CheckAcknowledged(h History, final map[string]Output) error {
	var errs []error
	for _, p := range h {
		if p.Input.Kind != KindPut || p.Outcome != OutcomeOK {
			continue
		}
		k := p.Input.Key
		got, ok := final[k]
		if !ok {
			errs = append(errs, fmt.Errorf("no final read of key %q, written by [%s]", k, p))
			continue
		}
		if got.Found && got.Value == p.Input.Value {
			continue
		}
		if !overwritten(h, p, got) {
			final := "not set"
			if got.Found {
				final = fmt.Sprintf("%q", got.Value)
			}
			errs = append(errs, fmt.Errorf("acknowledged write [%s] is missing: the final read of %q returned %s, which no later or concurrent write explains",
				p, k, final))
		}
	}
	return errors.Join(errs...)
}

// overwritten reports whether a write of p's key that p does not precede
// could have produced got.
func overwritten(h History, p Op, got Output) bool {
	for _, w := range h {
		if w == p || w.Input.Key != p.Input.Key || w.Input.Kind == KindGet {
			continue
		}
		if w.Outcome != OutcomeOK && w.Outcome != OutcomeUnknown {
			continue
		}
		if w.Outcome == OutcomeOK && w.Return < p.Call {
			continue // w precedes p; an unknown write may take effect any time after its invocation
		}
		switch {
		case got.Found && w.Input.Kind == KindPut && w.Input.Value == got.Value:
			return true
		case !got.Found && w.Input.Kind == KindDelete:
			return true
		}
	}
	return false
}
