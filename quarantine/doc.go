// Package quarantine acts on the detector's verified evidence (DESIGN
// invariant 9): a quarantined node is skipped in leader rotation, its
// consensus messages and RPCs are dropped, it is removed from the Raft
// voters (CFT) or never needed in a quorum (BFT), and if it leads, the
// leadership moves at once. Alerts go out as a log line, a metric and an
// optional webhook, all implemented by the caller through Alerter. The
// evidence is kept with each entry and exportable. Only an operator lifts
// a quarantine.
//
// # Deciding
//
// Decide(policy, decision, state) is pure. It takes a score.Decision but
// never its word: each quarantine is re-justified with score.Justify from
// the evidence the reason carries, which is verified again (STYLE
// principle 12). It returns an Action for this node: entries to persist,
// voters to remove (CFT), leadership to move (CFT) or a view change (BFT),
// escalation (CFT), self re-sync. On accusations alone it never quarantines
// more than f members in all.
//
// # Persisting
//
// Manager is the durable list the transport and the engines ask
// (IsQuarantined, IDs). Apply persists an Action; Lift, and nothing else,
// removes an entry, recording the operator, the time and the forgiveness
// that keeps the same offences from quarantining the node again
// (Forgiven, for score.Book.Forgive after a restart). The file is framed
// and checksummed (CRC-32C), rewritten atomically and fsynced (file and
// directory) before a method returns; Open refuses a damaged file with a
// *CorruptionError instead of starting with an empty list.
//
// # Wiring (per node)
//
//	book.Add(evidence...)                    // detector/score
//	d := book.Decide(now)
//	a := quarantine.Decide(policy, d, state) // pure
//	manager.Apply(a)                          // durable, then alerts
//	engines: remove voters / transfer leadership / SetQuarantined / view change
//	operator: rec, err := manager.Lift(LiftRequest{Node: n, Operator: who,
//	              At: now, Offenses: book.Offenses(n)})
//	          book.Forgive(rec.Forgiveness)
//	restart:  book.Forgive(manager.Forgiven()...)
package quarantine
