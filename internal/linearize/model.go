package linearize

import (
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/anishathalye/porcupine"
)

// register is the state of one config key in the model.
type register struct {
	value   string
	present bool
}

// output is a porcupine output: what an OK operation saw, or nothing for a
// write whose outcome is unknown.
type output struct {
	Output
	unknown bool
}

// step is the sequential specification of one config key.
func step(state, in, out any) (bool, any) {
	st, i, o := state.(register), in.(Input), out.(output)
	switch i.Kind {
	case KindPut:
		if !o.unknown && o.Found != st.present {
			return false, st
		}
		return true, register{value: i.Value, present: true}
	case KindDelete:
		if !o.unknown && o.Found != st.present {
			return false, st
		}
		return true, register{}
	case KindGet:
		ok := o.Found == st.present && (!st.present || o.Value == st.value)
		return ok, st
	}
	return false, st
}

// partitionByKey splits a porcupine history into one history per key, in
// key order; the config keys are independent registers.
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out
}

func describeOperation(in, out any) string {
	i, o := in.(Input), out.(output)
	var s string
	switch i.Kind {
	case KindPut:
		s = fmt.Sprintf("put(%q, %q)", i.Key, i.Value)
	default:
		s = fmt.Sprintf("%s(%q)", i.Kind, i.Key)
	}
	if o.unknown {
		return s + " outcome unknown"
	}
	return s + " " + describeOutput(i.Kind, o.Output)
}

func describeState(state any) string {
	st := state.(register)
	if !st.present {
		return "not set"
	}
	return fmt.Sprintf("%q", st.value)
}

// model is the porcupine model of the config keys; an operation's Metadata
// is its index in the checked History.
func model(h History) porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return register{} },
		Step:      step,
		Hash: func(state any) uint64 {
			st := state.(register)
			f := fnv.New64a()
			_, _ = f.Write([]byte(st.value))
			if st.present {
				_, _ = f.Write([]byte{1})
			}
			return f.Sum64()
		},
		DescribeOperation: describeOperation,
		DescribeState:     describeState,
		DescribeOperationMetadata: func(info any) string {
			i, ok := info.(int)
			if !ok || i < 0 || i >= len(h) || h[i].Err == "" {
				return ""
			}
			return h[i].Err
		},
	}
}
