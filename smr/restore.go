package smr

import (
	"crypto/ed25519"
	"encoding/hex"
	"net/http"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Restore asks the cluster to replace its state with a snapshot. It travels
// as an EntryRestore log entry, so every replica applies it at the same
// index and the applied index never goes backwards. It is authorised by the
// signed admin HTTP request that carried the snapshot (docs/api.md): Sig is
// the admin's signature over AdminSignBytes("POST", RequestURI, Time,
// Snapshot), and Admin must hold the admin permission in the state the entry
// is applied to.
type Restore struct {
	Snapshot   []byte            // a snapshot as StateMachine.Snapshot writes it
	Admin      ed25519.PublicKey // the signing admin's key (32 bytes)
	Time       int64             // the request's Tandem-Time, unix seconds
	RequestURI string            // the request's path and query, as signed
	Sig        []byte            // Ed25519 signature over SignBytes()
}

// RestoreOutcome is the JSON of Result.Value for an applied restore entry.
type RestoreOutcome struct {
	RestoredFromIndex uint64 `json:"restored_from_index"` // the applied index recorded in the snapshot
	StateHash         string `json:"state_hash"`          // hex SHA-256 of the state after the restore
}

// SignBytes returns the bytes Sig covers: those of the admin HTTP request
// "POST RequestURI" with the snapshot as its body.
func (r *Restore) SignBytes() []byte {
	return AdminSignBytes(http.MethodPost, r.RequestURI, r.Time, r.Snapshot)
}

// SignRestore returns the Restore of snapshot signed by priv as the admin
// request "POST requestURI" at unixSeconds. Errors are *Error.
func SignRestore(priv ed25519.PrivateKey, requestURI string, unixSeconds int64, snapshot []byte) (*Restore, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, Errorf(CodeMalformed, "private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	r := &Restore{
		Snapshot:   snapshot,
		Admin:      append(ed25519.PublicKey(nil), priv.Public().(ed25519.PublicKey)...),
		Time:       unixSeconds,
		RequestURI: requestURI,
	}
	r.Sig = ed25519.Sign(priv, r.SignBytes())
	return r, nil
}

// Verify checks the shape of r's key and signature and the signature
// itself; it does not look at the state or the snapshot. A key that is not
// 32 bytes is CodeMalformed; a missing, mis-sized or wrong signature is
// CodeBadSignature. Errors are *Error.
func (r *Restore) Verify() error {
	if len(r.Admin) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "restore admin key is %d bytes, an Ed25519 public key is %d", len(r.Admin), ed25519.PublicKeySize)
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return Errorf(CodeBadSignature, "restore signature of admin %s is %d bytes, an Ed25519 signature is %d", FormatKey(r.Admin), len(r.Sig), ed25519.SignatureSize)
	}
	if !sigverify.Verify(r.Admin, r.SignBytes(), r.Sig) {
		return Errorf(CodeBadSignature, "restore signature does not verify for admin %s", FormatKey(r.Admin))
	}
	return nil
}

// parsedRestore is a restore whose stateless checks ran outside the lock:
// signature first, then (only when it verifies) the snapshot.
type parsedRestore struct {
	r       *Restore
	sigErr  error
	snap    *parsedSnapshot
	snapErr error
}

func parseRestore(r *Restore) parsedRestore {
	p := parsedRestore{r: r, sigErr: r.Verify()}
	if p.sigErr == nil {
		p.snap, p.snapErr = parseSnapshot(r.Snapshot)
		if p.snapErr != nil {
			p.snapErr = Errorf(CodeMalformed, "restore: %s", errorText(p.snapErr))
		} else if p.snap.st.genesis == nil {
			p.snapErr = Errorf(CodeMalformed, "restore: the snapshot is of an uninitialized state machine (no genesis); restoring it would erase the cluster's genesis")
		}
	}
	return p
}

// check runs the stateful checks against m.st in the order Apply reports
// them: signature, initialized, admin, snapshot. The caller holds m.mu.
func (m *StateMachine) checkRestore(p parsedRestore) error {
	if p.sigErr != nil {
		return p.sigErr
	}
	if m.st.genesis == nil {
		return notInitialized()
	}
	ck := clientKey(p.r.Admin)
	if !m.st.known(ck) {
		return unknownClient(p.r.Admin)
	}
	if !m.st.allowed(ck, PermAdmin) {
		return Errorf(CodePermissionDenied, "restore needs permission admin, which client %s does not hold", FormatKey(p.r.Admin))
	}
	return p.snapErr
}

// PrecheckRestore runs, against the current state, the checks Apply runs on
// a restore entry: the signature (CodeBadSignature), that the cluster is
// initialized (CodeNotInitialized), that Admin holds admin
// (CodeUnknownClient, CodePermissionDenied) and that the snapshot decodes and
// verifies (CodeMalformed). It changes nothing; errors are *Error. The API
// calls it before proposing; Apply still decides.
func (m *StateMachine) PrecheckRestore(r *Restore) error {
	if r == nil {
		return Errorf(CodeMalformed, "no restore")
	}
	p := parseRestore(r)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkRestore(p)
}

// RestoreWindow bounds how far the admin's signing time of a restore may be
// from the time of the entry that carries it. Checked deterministically at
// apply time, it stops a captured restore from being replayed (proposed
// again) later to roll the state back.
const RestoreWindow = 5 * 60 // seconds

// applyRestore executes a restore entry at index with the leader's entry
// time entryTime (Unix nanos). The caller holds m.mu and has set m.applied
// to index. On success the state content becomes the snapshot's, the
// applied index stays index, and the replicated clock does not go back.
func (m *StateMachine) applyRestore(index uint64, entryTime int64, p parsedRestore) Result {
	res := Result{Index: index}
	if err := m.checkRestore(p); err != nil {
		return errResult(res, err)
	}
	// The window is checked against the later of the entry's time and the
	// replicated clock: whoever wraps the restore in an entry chooses the
	// entry's time (in BFT mode, any replica), but not the clock.
	if at := max(entryTime, m.st.clock) / 1e9; p.r.Time < at-RestoreWindow || p.r.Time > at+RestoreWindow {
		return errResult(res, Errorf(CodeBadSignature, "restore was signed at unix time %d, more than %d seconds from the cluster's time %d; sign it again", p.r.Time, RestoreWindow, at))
	}
	if p.r.Time <= m.st.lastRestore {
		return errResult(res, Errorf(CodeSeqConflict, "a restore signed at unix time %d was already applied (this one is signed at %d); a restore applies once", m.st.lastRestore, p.r.Time))
	}
	clock := m.st.clock
	m.st = p.snap.st
	sum := p.snap.sum
	if p.r.Time > m.st.lastRestore || clock > m.st.clock {
		// The restored state remembers this restore (so it cannot be
		// applied again), and the replicated clock never goes back: the
		// state runs on from the later of its own time and the time
		// before the restore (sessions that expired meanwhile expire now).
		m.st.lastRestore = max(p.r.Time, m.st.lastRestore)
		m.st.advanceClock(clock)
		sum = m.st.hash()
	}
	m.hash.Store(&sum)
	res.Value = mustJSON(RestoreOutcome{RestoredFromIndex: p.snap.index, StateHash: hex.EncodeToString(sum[:])})
	return res
}
