// Package safety is the safety kernel of a HotStuff replica: the only code
// that signs votes, timeouts and proposals, and the keeper of the state that
// keeps a replica from contradicting itself across crashes (SafetyData:
// last voted view, last vote, locked QC, high QC, last timeout, last
// proposal).
//
// Rules follows one order for every signature (as Aptos SafetyRules and
// CometBFT's FilePV do): verify inputs, answer a repeated request with the
// stored answer, apply the rule, sign, Save, and only then return. Store.Save
// must be durable when it returns (FileStore fsyncs two framed, checksummed
// copies, one after the other), so a restarted replica never votes twice in a
// view and never proposes two blocks for one view.
//
// The voting rule is a one-method interface, VoteRule, with two sound
// implementations: ThreeChain (chained HotStuff) and TwoChain (Jolteon /
// HotStuff-2 style); each pairs with the commit rule of the same name in
// package core. Refusals are *NotSafeToVoteError, *NotSafeToTimeoutError and
// *EquivocationError, carrying the numbers the decision was made on.
//
// Damaged stored data is a *CorruptionError (errors.Is(err, ErrCorrupt)); a
// replica must not start voting until an operator restores it. Deleting the
// file makes the replica a fresh one, which can double-vote in views it had
// already voted in: never do that to a replica that has voted in this epoch.
//
// Nothing in this package is safe for concurrent use; a Rules belongs to one
// core.
package safety
