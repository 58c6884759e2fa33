package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/bits"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Limits on command fields. Names are session IDs, tool names, resource URIs,
// subscribers, metadata keys, config keys and ACL subjects.
const (
	MaxNameBytes          = 256      // a name is 1..256 bytes of UTF-8 without control characters
	MaxMetadataEntries    = 64       // entries in a session's metadata
	MaxMetadataValueBytes = 4096     // bytes of one metadata value
	MaxConfigValueBytes   = 64 << 10 // bytes of one config value
)

// field is one JSON field of a Command, as a bit so that sets of fields are
// cheap to build and compare.
type field uint32

const (
	fOp field = 1 << iota
	fSessionID
	fMetadata
	fTTL
	fToolName
	fDefinition
	fResourceURI
	fSubscriber
	fSubject
	fPermission
	fEffect
	fKey
	fValue
	fDataset
	fCells
	fCellSize
	fStepLimit
	fMaxAgentSeqs
	fAgents
	fRole
	fSnapshot
	fieldEnd
)

// name returns the JSON name of a single field.
func (f field) name() string {
	switch f {
	case fOp:
		return "op"
	case fSessionID:
		return "session_id"
	case fMetadata:
		return "metadata"
	case fTTL:
		return "ttl_ms"
	case fToolName:
		return "tool_name"
	case fDefinition:
		return "definition"
	case fResourceURI:
		return "resource_uri"
	case fSubscriber:
		return "subscriber"
	case fSubject:
		return "subject"
	case fPermission:
		return "permission"
	case fEffect:
		return "effect"
	case fKey:
		return "key"
	case fValue:
		return "value"
	case fDataset:
		return "dataset"
	case fCells:
		return "cells"
	case fCellSize:
		return "cell_size"
	case fStepLimit:
		return "step_limit"
	case fMaxAgentSeqs:
		return "max_agent_seqs"
	case fAgents:
		return "agents"
	case fRole:
		return "role"
	case fSnapshot:
		return "snapshot"
	}
	return "?"
}

// fieldByName maps an exact (case-sensitive) JSON name to its field.
func fieldByName(s string) (field, bool) {
	for f := fOp; f < fieldEnd; f <<= 1 {
		if f.name() == s {
			return f, true
		}
	}
	return 0, false
}

// opSpec describes which fields an op uses and which permission it needs.
// perm is empty for the dataset ops whose right comes from the dataset
// (authorizeDataset).
type opSpec struct {
	required field
	optional field
	perm     Permission
}

// knownOps is listed in messages about unknown ops.
const knownOps = "register_session, renew_session, unregister_session, register_tool, unregister_tool, " +
	"subscribe_resource, unsubscribe_resource, update_acl, set_config, delete_config, " +
	"create_dataset, invite_agent, revoke_agent, sync_dataset"

// specOf returns the spec of op and whether op is known.
func specOf(op Op) (opSpec, bool) {
	switch op {
	case OpRegisterSession:
		return opSpec{required: fSessionID, optional: fMetadata | fTTL, perm: PermSessionWrite}, true
	case OpRenewSession:
		return opSpec{required: fSessionID, optional: fTTL, perm: PermSessionWrite}, true
	case OpUnregisterSession:
		return opSpec{required: fSessionID, perm: PermSessionWrite}, true
	case OpRegisterTool:
		return opSpec{required: fToolName | fDefinition, perm: PermToolWrite}, true
	case OpUnregisterTool:
		return opSpec{required: fToolName, perm: PermToolWrite}, true
	case OpSubscribeResource, OpUnsubscribeResource:
		return opSpec{required: fResourceURI | fSubscriber, perm: PermResourceWrite}, true
	case OpUpdateACL:
		return opSpec{required: fSubject | fPermission | fEffect, perm: PermACLWrite}, true
	case OpSetConfig:
		return opSpec{required: fKey, optional: fValue, perm: PermConfigWrite}, true
	case OpDeleteConfig:
		return opSpec{required: fKey, perm: PermConfigWrite}, true
	case OpCreateDataset:
		return opSpec{required: fDataset | fCells | fCellSize, optional: fStepLimit | fMaxAgentSeqs | fAgents, perm: PermDatasetCreate}, true
	case OpInviteAgent, OpRevokeAgent:
		return opSpec{required: fDataset | fSubject, optional: fRole}, true
	case OpSyncDataset:
		return opSpec{required: fDataset | fSnapshot}, true
	}
	return opSpec{}, false
}

// RequiredPermission returns the permission a command with op needs, and
// false when op is unknown. It is empty for the ops whose right comes from
// the dataset they name: invite_agent and revoke_agent need an admin of the
// dataset or the admin permission, sync_dataset an invited agent of the
// dataset.
func RequiredPermission(op Op) (Permission, bool) {
	s, ok := specOf(op)
	return s.perm, ok
}

// EncodeCommand returns the canonical encoding of c (encoding/json of the
// struct, so fields appear in declaration order and zero fields are omitted).
// It validates c with the same rules as DecodeCommand first, so whatever it
// returns decodes; a rejection is an *Error.
func EncodeCommand(c Command) ([]byte, error) {
	if err := validateCommand(&c, presentFields(&c)); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, Errorf(CodeMalformed, "command does not encode: %v", err)
	}
	return b, nil
}

// DecodeCommand strictly decodes the bytes of a signed command. It accepts
// exactly one JSON object whose keys are the exact (case-sensitive) field
// names of Command, each at most once and none null; the op must be known,
// every field the op requires must be present and no field the op does not
// use may appear; every value must be within its limits. A rejection is an
// *Error with CodeMalformed, CodeUnknownCommand or CodeTooLarge whose message
// names the field.
//
// Apply stores these messages in Results, which are hashed, so they come
// only from this package's templates: no encoding/json error text, and
// untrusted strings escaped to ASCII.
func DecodeCommand(b []byte) (Command, error) {
	if !utf8.Valid(b) {
		return Command{}, Errorf(CodeMalformed, "command is not valid UTF-8")
	}
	raws, present, err := scanFields(b)
	if err != nil {
		return Command{}, err
	}
	var c Command
	for f := fOp; f < fieldEnd; f <<= 1 {
		if present&f != 0 {
			if err := decodeField(&c, f, raws[fieldIndex(f)]); err != nil {
				return Command{}, err
			}
		}
	}
	if err := validateCommand(&c, present); err != nil {
		return Command{}, err
	}
	if present&fDefinition != 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, c.Definition); err != nil {
			return Command{}, Errorf(CodeMalformed, "definition is not valid JSON")
		}
		c.Definition = buf.Bytes()
	}
	return c, nil
}

// decodeField decodes the raw JSON value of field f into c, with a message
// of this package's own when the value has the wrong type.
func decodeField(c *Command, f field, raw json.RawMessage) error {
	var dst any
	want := "a JSON string"
	switch f {
	case fOp:
		dst = &c.Op
	case fSessionID:
		dst = &c.SessionID
	case fMetadata:
		dst, want = &c.Metadata, "a JSON object whose values are strings"
	case fTTL:
		dst, want = &c.TTLMillis, "a JSON integer that fits 64 bits"
	case fToolName:
		dst = &c.ToolName
	case fDefinition:
		dst, want = &c.Definition, "a JSON object"
	case fResourceURI:
		dst = &c.ResourceURI
	case fSubscriber:
		dst = &c.Subscriber
	case fSubject:
		dst = &c.Subject
	case fPermission:
		dst = &c.Permission
	case fEffect:
		dst = &c.Effect
	case fKey:
		dst = &c.Key
	case fValue:
		dst = &c.Value
	case fDataset:
		dst = &c.Dataset
	case fCells:
		dst, want = &c.Cells, "a JSON integer"
	case fCellSize:
		dst, want = &c.CellSize, "a JSON integer"
	case fStepLimit:
		dst, want = &c.StepLimit, "a JSON integer in 0..18446744073709551615"
	case fMaxAgentSeqs:
		dst, want = &c.MaxAgentSeqs, "a JSON integer in 0..18446744073709551615"
	case fAgents:
		dst, want = &c.Agents, "a JSON array of strings"
	case fRole:
		dst = &c.Role
	case fSnapshot:
		dst, want = &c.Snapshot, "a JSON string of standard base64"
	default:
		return Errorf(CodeMalformed, "field %s is not a command field", f.name())
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return Errorf(CodeMalformed, "field %s must be %s", f.name(), want)
	}
	return nil
}

// fieldIndex returns the bit position of a single field.
func fieldIndex(f field) int { return bits.TrailingZeros32(uint32(f)) }

// scanFields walks the top level of the JSON object in b and returns the raw
// value of each field present (indexed by fieldIndex) and the set of fields
// present. It rejects non-objects, unknown or differently-cased keys,
// duplicate keys, null values, duplicate metadata keys and trailing data.
//
// Valid JSON (every command a correct client sends) is walked by
// scanValidObject, a byte scanner; anything else by scanFieldsTokens, whose
// encoding/json tokenizer names the first problem. Both give the same
// result for valid JSON (FuzzScanFields checks it).
func scanFields(b []byte) ([]json.RawMessage, field, error) {
	if !json.Valid(b) {
		return scanFieldsTokens(b)
	}
	return scanValidObject(b)
}

// scanFieldsTokens is scanFields by encoding/json's tokenizer.
func scanFieldsTokens(b []byte) ([]json.RawMessage, field, error) {
	notJSON := Errorf(CodeMalformed, "command is not valid JSON")
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, notJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, 0, Errorf(CodeMalformed, "command must be a JSON object")
	}
	raws := make([]json.RawMessage, fieldIndex(fieldEnd))
	var present field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, notJSON
		}
		key, ok := tok.(string)
		if !ok {
			return nil, 0, Errorf(CodeMalformed, "command is not valid JSON: an object key is not a string")
		}
		f, err := fieldOf(key, present)
		if err != nil {
			return nil, 0, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, 0, Errorf(CodeMalformed, "field %s is not valid JSON", key)
		}
		if err := checkValue(f, key, raw, checkUniqueKeys); err != nil {
			return nil, 0, err
		}
		raws[fieldIndex(f)] = raw
		present |= f
	}
	if _, err := dec.Token(); err != nil {
		return nil, 0, notJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, 0, Errorf(CodeMalformed, "command has data after its JSON object")
	}
	return raws, present, nil
}

// fieldOf returns the field that the object key names, present being the
// fields named before it; it rejects an unknown key and one named twice.
func fieldOf(key string, present field) (field, error) {
	f, ok := fieldByName(key)
	if !ok {
		return 0, Errorf(CodeMalformed, "unknown field %s", quote(key))
	}
	if present&f != 0 {
		return 0, Errorf(CodeMalformed, "field %s appears more than once", key)
	}
	return f, nil
}

// checkValue rejects a null value of field f (named key) and, by
// uniqueKeys, a metadata value that names a key twice.
func checkValue(f field, key string, raw json.RawMessage, uniqueKeys func([]byte) error) error {
	if string(raw) == "null" {
		return Errorf(CodeMalformed, "field %s is null", key)
	}
	if f == fMetadata {
		return uniqueKeys(raw)
	}
	return nil
}

// checkUniqueKeys rejects a metadata object that names a key twice (JSON
// would silently keep the last one). Non-objects are left to the decoder.
func checkUniqueKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil
	}
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		if _, dup := seen[k]; dup {
			return Errorf(CodeMalformed, "metadata key %s appears more than once", quote(k))
		}
		seen[k] = struct{}{}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// presentFields returns the fields of c that json.Marshal writes (the
// non-zero ones, as every field is omitempty).
func presentFields(c *Command) field {
	var p field
	set := func(f field, ok bool) {
		if ok {
			p |= f
		}
	}
	set(fOp, c.Op != "")
	set(fSessionID, c.SessionID != "")
	set(fMetadata, len(c.Metadata) > 0)
	set(fTTL, c.TTLMillis != 0)
	set(fToolName, c.ToolName != "")
	set(fDefinition, len(c.Definition) > 0)
	set(fResourceURI, c.ResourceURI != "")
	set(fSubscriber, c.Subscriber != "")
	set(fSubject, c.Subject != "")
	set(fPermission, c.Permission != "")
	set(fEffect, c.Effect != "")
	set(fKey, c.Key != "")
	set(fValue, c.Value != "")
	set(fDataset, c.Dataset != "")
	set(fCells, c.Cells != 0)
	set(fCellSize, c.CellSize != 0)
	set(fStepLimit, c.StepLimit != 0)
	set(fMaxAgentSeqs, c.MaxAgentSeqs != 0)
	set(fAgents, len(c.Agents) > 0)
	set(fRole, c.Role != "")
	set(fSnapshot, len(c.Snapshot) > 0)
	return p
}

// validateCommand checks c against its op's spec given the set of fields
// present in its encoding.
func validateCommand(c *Command, present field) error {
	if present&fOp == 0 || c.Op == "" {
		return Errorf(CodeMalformed, "command has no op")
	}
	spec, ok := specOf(c.Op)
	if !ok {
		return Errorf(CodeUnknownCommand, "unknown op %s (known ops: %s)", quote(string(c.Op)), knownOps)
	}
	allowed := fOp | spec.required | spec.optional
	for f := fOp; f < fieldEnd; f <<= 1 {
		if present&f != 0 && allowed&f == 0 {
			return Errorf(CodeMalformed, "field %s is not used by op %s", f.name(), c.Op)
		}
	}
	for f := fOp; f < fieldEnd; f <<= 1 {
		if spec.required&f != 0 && present&f == 0 {
			return Errorf(CodeMalformed, "op %s requires field %s", c.Op, f.name())
		}
	}
	checks := []struct {
		f     field
		check func() error
	}{
		{fSessionID, func() error { return checkName("session_id", c.SessionID) }},
		{fMetadata, func() error { return checkMetadata(c.Metadata) }},
		{fTTL, func() error {
			if c.TTLMillis < 0 {
				return Errorf(CodeMalformed, "ttl_ms is %d, must be at least 0", c.TTLMillis)
			}
			return nil
		}},
		{fToolName, func() error { return checkName("tool_name", c.ToolName) }},
		{fDefinition, func() error { return checkDefinition(c.Definition) }},
		{fResourceURI, func() error { return checkName("resource_uri", c.ResourceURI) }},
		{fSubscriber, func() error { return checkName("subscriber", c.Subscriber) }},
		{fSubject, func() error {
			if err := checkName("subject", c.Subject); err != nil {
				return err
			}
			_, err := ParseKey(c.Subject)
			return err
		}},
		{fPermission, func() error {
			if !validPermission(c.Permission) {
				return Errorf(CodeMalformed, "permission %s is not one of admin, session.write, tool.write, resource.write, config.write, acl.write, dataset.create", quote(string(c.Permission)))
			}
			return nil
		}},
		{fEffect, func() error {
			switch c.Effect {
			case EffectAllow, EffectDeny, EffectRemove:
				return nil
			}
			return Errorf(CodeMalformed, "effect %s is not one of allow, deny, remove", quote(string(c.Effect)))
		}},
		{fKey, func() error { return checkName("key", c.Key) }},
		{fValue, func() error {
			if len(c.Value) > MaxConfigValueBytes {
				return Errorf(CodeTooLarge, "value is %d bytes, at most %d allowed", len(c.Value), MaxConfigValueBytes)
			}
			if !utf8.ValidString(c.Value) {
				return Errorf(CodeMalformed, "value is not valid UTF-8")
			}
			return nil
		}},
		{fDataset, func() error { return checkName("dataset", c.Dataset) }},
		{fCells | fCellSize, func() error { return checkDatasetShape(c.Cells, c.CellSize) }},
		{fMaxAgentSeqs, func() error {
			if c.MaxAgentSeqs < 1 || c.MaxAgentSeqs > DefaultMaxAgentSeqs {
				return Errorf(CodeMalformed, "max_agent_seqs is %d, must be 1..%d (leave it out for %d)", c.MaxAgentSeqs, uint64(DefaultMaxAgentSeqs), uint64(DefaultMaxAgentSeqs))
			}
			return nil
		}},
		{fAgents, func() error { return checkAgentList(c.Agents) }},
		{fRole, func() error {
			switch c.Role {
			case RoleAgent, RoleAdmin:
				return nil
			}
			return Errorf(CodeMalformed, "role %s is not one of agent, admin", quote(string(c.Role)))
		}},
		{fSnapshot, func() error {
			_, err := DecodeDatasetSnapshot(c.Snapshot)
			return err
		}},
	}
	for _, ch := range checks {
		if present&ch.f == ch.f {
			if err := ch.check(); err != nil {
				return err
			}
		}
	}
	return nil
}

func validPermission(p Permission) bool {
	switch p {
	case PermAdmin, PermSessionWrite, PermToolWrite, PermResourceWrite, PermConfigWrite, PermACLWrite, PermDatasetCreate:
		return true
	}
	return false
}

// checkName enforces the rule for names: 1..MaxNameBytes bytes of valid
// UTF-8 without control characters.
func checkName(what, s string) error {
	if s == "" {
		return Errorf(CodeMalformed, "%s is empty, must be 1..%d bytes", what, MaxNameBytes)
	}
	if len(s) > MaxNameBytes {
		return Errorf(CodeTooLarge, "%s is %d bytes, at most %d allowed", what, len(s), MaxNameBytes)
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeMalformed, "%s is not valid UTF-8", what)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return Errorf(CodeMalformed, "%s contains control character %U at byte %d", what, r, i)
		}
	}
	return nil
}

func checkMetadata(md map[string]string) error {
	if len(md) > MaxMetadataEntries {
		return Errorf(CodeTooLarge, "metadata has %d entries, at most %d allowed", len(md), MaxMetadataEntries)
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys) // so that the first bad entry reported is the same everywhere
	for _, k := range keys {
		if err := checkName("metadata key", k); err != nil {
			return err
		}
		v := md[k]
		if len(v) > MaxMetadataValueBytes {
			return Errorf(CodeTooLarge, "metadata value of key %s is %d bytes, at most %d allowed", quote(k), len(v), MaxMetadataValueBytes)
		}
		if !utf8.ValidString(v) {
			return Errorf(CodeMalformed, "metadata value of key %s is not valid UTF-8", quote(k))
		}
	}
	return nil
}

func checkDefinition(def json.RawMessage) error {
	trimmed := bytes.TrimLeft(def, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(def) {
		return Errorf(CodeMalformed, "definition must be a JSON object")
	}
	return nil
}

// FormatKey renders a client public key as it appears in ACL subjects,
// queries, configuration and the CLI: 64 lowercase hexadecimal digits. Hex
// never begins with '-', so a key is never mistaken for a command-line flag,
// and it needs no escaping in URLs, file names or YAML.
func FormatKey(pub ed25519.PublicKey) string {
	return hex.EncodeToString(pub)
}

// ParseKey parses an Ed25519 public key spelt as FormatKey spells it. Only
// that canonical spelling is accepted (lowercase, no prefix, no white
// space), so every accepted string names one key. A rejection is an *Error
// with CodeMalformed.
func ParseKey(s string) (ed25519.PublicKey, error) {
	if len(s) != 2*ed25519.PublicKeySize {
		return nil, Errorf(CodeMalformed, "key %s has %d characters, an Ed25519 public key is %d lowercase hex digits", quote(s), len(s), 2*ed25519.PublicKeySize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, Errorf(CodeMalformed, "key %s is not lowercase hex (bad character at byte %d)", quote(s), i)
		}
	}
	b, _ := hex.DecodeString(s) // cannot fail: even length, hex digits only
	return ed25519.PublicKey(b), nil
}

// quote renders a caller-supplied string for a message, cut to a readable
// length. It escapes everything outside printable ASCII (strconv.QuoteToASCII
// does not depend on the Unicode tables of the Go release), so a message
// that quotes a string is the same bytes on every replica.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.QuoteToASCII(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + "..."
}
