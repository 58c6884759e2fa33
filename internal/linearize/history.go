package linearize

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Kind is the kind of a recorded operation.
type Kind uint8

// Operation kinds.
const (
	KindPut    Kind = iota + 1 // set_config key = value
	KindDelete                 // delete_config key
	KindGet                    // linearizable read of config key
)

func (k Kind) String() string {
	switch k {
	case KindPut:
		return "put"
	case KindDelete:
		return "delete"
	case KindGet:
		return "get"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Outcome says what is known about an operation's effect.
type Outcome uint8

// Outcomes.
const (
	// OutcomeOK: the operation completed and Output holds what it saw.
	OutcomeOK Outcome = iota + 1
	// OutcomeFailed: the operation definitely changed nothing.
	OutcomeFailed
	// OutcomeUnknown: a write may or may not have been applied; for a read,
	// no answer arrived.
	OutcomeUnknown
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeFailed:
		return "failed"
	case OutcomeUnknown:
		return "unknown"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Input is what an operation asked for. Value is set for puts only.
type Input struct {
	Kind  Kind
	Key   string
	Value string
}

// Output is what an OK operation saw. For a get, Found says whether the key
// was set and Value is its value. For a put, Found says whether the key was
// set before (the command's "replaced"); for a delete, whether it was set
// (false when the delete was ordered and answered not_found).
type Output struct {
	Value string
	Found bool
}

// Never is the Return time of an operation that never returned.
const Never = time.Duration(math.MaxInt64)

// Op is one recorded operation. Call and Return are offsets from the
// recorder's start on a monotonic clock; Return is Never for an operation
// that had not returned when the history was taken.
type Op struct {
	ClientID int // zero-based; one row per client in the visualization
	Input    Input
	Output   Output // meaningful for OutcomeOK only
	Outcome  Outcome
	Call     time.Duration
	Return   time.Duration
	Err      string // the error that ended the operation, if any
}

func (op Op) String() string {
	var in string
	switch op.Input.Kind {
	case KindPut:
		in = fmt.Sprintf("put(%q, %q)", op.Input.Key, op.Input.Value)
	default:
		in = fmt.Sprintf("%s(%q)", op.Input.Kind, op.Input.Key)
	}
	ret := "never"
	if op.Return != Never {
		ret = op.Return.Round(time.Microsecond).String()
	}
	s := fmt.Sprintf("client %d %s [%s, %s] %s", op.ClientID, in, op.Call.Round(time.Microsecond), ret, op.Outcome)
	if op.Outcome == OutcomeOK {
		s += " " + describeOutput(op.Input.Kind, op.Output)
	}
	if op.Err != "" {
		s += ": " + op.Err
	}
	return s
}

func describeOutput(k Kind, out Output) string {
	switch {
	case k == KindGet && out.Found:
		return fmt.Sprintf("-> %q", out.Value)
	case k == KindGet:
		return "-> not set"
	case out.Found:
		return "(was set)"
	default:
		return "(was not set)"
	}
}

// History is a list of recorded operations in invocation order.
type History []Op

// Counts are the number of operations by outcome.
type Counts struct {
	OK, Failed, Unknown int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d ok, %d failed, %d unknown", c.OK, c.Failed, c.Unknown)
}

// Counts returns the number of operations of kind k by outcome (of every
// kind when k is 0).
func (h History) Counts(k Kind) Counts {
	var c Counts
	for _, op := range h {
		if k != 0 && op.Input.Kind != k {
			continue
		}
		switch op.Outcome {
		case OutcomeOK:
			c.OK++
		case OutcomeFailed:
			c.Failed++
		case OutcomeUnknown:
			c.Unknown++
		}
	}
	return c
}

// Recorder collects a History. It is safe for concurrent use.
type Recorder struct {
	start time.Time

	mu  sync.Mutex
	ops []Op // by invocation; Outcome 0 while pending
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now()}
}

// Since returns the recorder's clock reading for t.
func (r *Recorder) Since(t time.Time) time.Duration { return t.Sub(r.start) }

// Pending is an invoked operation that has not returned yet.
type Pending struct {
	r    *Recorder
	i    int
	once sync.Once
}

// Invoke records the invocation of in by client clientID now. The caller
// must invoke before sending the request and call Return on the result once
// the answer (or its absence) is known.
func (r *Recorder) Invoke(clientID int, in Input) *Pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{ClientID: clientID, Input: in, Call: time.Since(r.start), Return: Never})
	return &Pending{r: r, i: len(r.ops) - 1}
}

// Return records the end of the operation now, with what it saw and its
// outcome; err (may be nil) is kept for the report. Only the first call
// counts; later calls are ignored.
func (p *Pending) Return(out Output, outcome Outcome, err error) Op {
	var op Op
	p.once.Do(func() {
		now := time.Since(p.r.start)
		p.r.mu.Lock()
		defer p.r.mu.Unlock()
		o := &p.r.ops[p.i]
		o.Return, o.Output, o.Outcome = now, out, outcome
		if err != nil {
			o.Err = err.Error()
		}
		op = *o
	})
	return op
}

// History returns a copy of the operations recorded so far. An operation
// still pending is reported with OutcomeUnknown and Return Never.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make(History, len(r.ops))
	copy(h, r.ops)
	for i := range h {
		if h[i].Outcome == 0 {
			h[i].Outcome, h[i].Return, h[i].Err = OutcomeUnknown, Never, "no answer recorded"
		}
	}
	return h
}
