package smr

import "crypto/ed25519"

// Authorize checks, against the current state, that key is an invited
// client holding perm. It is how requests that are not commands (admin
// requests) are authorised; it changes nothing. Before the genesis it is
// CodeNotInitialized. Errors are *Error.
func (m *StateMachine) Authorize(key ed25519.PublicKey, perm Permission) error {
	if len(key) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "public key is %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	ck := clientKey(key)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.st.genesis == nil {
		return notInitialized()
	}
	if !m.st.known(ck) {
		return unknownClient(key)
	}
	if !m.st.allowed(ck, perm) {
		return Errorf(CodePermissionDenied, "client %s lacks permission %s", FormatKey(key), perm)
	}
	return nil
}
