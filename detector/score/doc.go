// Package score turns verified evidence into the detector's verdict: a
// per-node anomaly score in [0, 1] that decays, a cluster threat level, and
// a Decision (escalate to BFT, quarantine these nodes, re-sync those) under
// the cluster-wide rule of DESIGN invariant 8: an action happens only on
// an irrefutable proof, or on f+1 signed accusations from distinct members,
// each verified. One liar can neither quarantine an honest node nor flap
// the mode.
//
// It is a pure library: no goroutines, no I/O, and no clock — the time is
// always an argument. The formula is on Decide and in docs/detector.md.
//
// # Signals
//
// Config holds the seed's table, one Signal (threshold, weight, level) per
// accusation metric: vote and heartbeat latency p99 above 500 ms warn; any
// signature failure or unsigned duplicate vote may quarantine; more than 3
// log conflicts per hour or any selective omission escalate; state
// divergence re-syncs and, when it persists, quarantines. Irrefutable
// proofs (evidence.Kind.Irrefutable) bypass the table: they set the
// offender's score to 1 until an operator lifts the quarantine
// (Forgiveness).
//
// # Using it
//
// A node keeps one Book: it Adds every evidence record it learns (its own
// analyzers' proofs, accusations signed by itself and by peers, proofs
// extracted from the 2P-BFT-Log frontier), calls Decide(now) on a timer or
// after each Add, and hands the Decision to package quarantine, which
// re-checks each Reason with Justify before acting. The operator's lift
// goes to Book.Lift, and the returned Forgiveness is persisted with the
// quarantine record so that it survives restarts (Book.Forgive).
package score
