package evidence

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error of this package wraps one of them.
var (
	// ErrInvalidEvidence is wrapped (through *VerifyError) by Verify when
	// the evidence does not prove what it claims. The caller drops the
	// evidence; it must not act on it, nor accuse its reporter (a relayed
	// copy may have been damaged in transit).
	ErrInvalidEvidence = errors.New("invalid evidence")

	// ErrMalformed is wrapped by Unmarshal, UnmarshalJSON and the
	// constructors when bytes or fields break the encoding rules (unknown
	// version or kind, truncated or trailing bytes, lengths over the
	// limits, non-canonical order). Nothing is decoded.
	ErrMalformed = errors.New("malformed evidence")

	// ErrInvalidMembers is returned by NewMembers for an unusable member
	// set.
	ErrInvalidMembers = errors.New("invalid member set")
)

// Check names one check Verify makes; a *VerifyError carries the check that
// failed. The values are the bullets of Verify's doc comment.
type Check string

// Checks, in the order Verify applies them.
const (
	CheckKind         Check = "known kind"
	CheckShape        Check = "exactly the proof of the kind is present"
	CheckMember       Check = "offender is a member"
	CheckOffender     Check = "proof names the offender"
	CheckEpoch        Check = "proof is of the evidence's epoch"
	CheckHotStuff     Check = "hotstuff evidence verifies"
	CheckCanonical    Check = "canonical order"
	CheckSameSlot     Check = "same slot"
	CheckConflict     Check = "conflicting content"
	CheckSignature    Check = "signatures verify"
	CheckPayloadHash  Check = "payload matches the signed hash"
	CheckPayload      Check = "payload is invalid"
	CheckForkProof    Check = "fork proof verifies"
	CheckInvalidProof Check = "invalid-message proof verifies"
	CheckAccuser      Check = "accuser is another member"
	CheckMetric       Check = "known metric and value"
	CheckStatement    Check = "checkpoint statements are valid"
)

// VerifyError reports the check Verify found broken. It wraps
// ErrInvalidEvidence and, when a lower layer failed, that layer's error
// (Cause).
type VerifyError struct {
	Kind     Kind
	Offender NodeID
	Check    Check
	Detail   string
	Cause    error
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("evidence: %s against %q: %v: %s: %s", e.Kind, e.Offender, ErrInvalidEvidence, e.Check, e.Detail)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns ErrInvalidEvidence and the cause, if any.
func (e *VerifyError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrInvalidEvidence}
	}
	return []error{ErrInvalidEvidence, e.Cause}
}
