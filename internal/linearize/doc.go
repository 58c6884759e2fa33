// Package linearize records what clients saw of Tandem's replicated config
// keys and checks that the whole history is linearizable.
//
// The model is a key-value register map over the config keys: set_config is
// a put, delete_config a delete, and the config key query a get. A Recorder
// notes, for each operation, its invocation and return times on one
// monotonic clock, its input, its output and its outcome:
//
//   - OutcomeOK: the cluster answered definitively. A delete that was
//     ordered and rejected with not_found is OK too: it observed the key
//     absent.
//   - OutcomeFailed: the operation definitely did not change the state (a
//     clear rejection, or ErrUnavailable). Failed writes and failed reads are
//     left out of the check.
//   - OutcomeUnknown: a write that may or may not have been applied
//     (client.ErrOutcomeUnknown, a transport error after sending, no answer
//     before the run ended). It is checked as a write that returns at
//     infinity: it may take effect at any point after its invocation, or
//     never. A read without a definitive answer is simply dropped.
//
// Check runs github.com/anishathalye/porcupine over the history, one
// partition per key; any verdict but Ok (Illegal, or Unknown after the
// timeout) is an error. WriteHTML leaves porcupine's visualization of the
// history for a failing run. CheckAcknowledged checks that no acknowledged
// write is missing from the final state.
//
// Client wraps an SDK client so that each call is recorded and classified.
package linearize
