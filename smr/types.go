package smr

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// Code classifies why a request was rejected. Codes are part of the API: the
// HTTP layer maps them to status codes and clients switch on them.
type Code string

// Rejection codes. The empty code means success.
const (
	CodeOK               Code = ""
	CodeMalformed        Code = "malformed"         // bytes do not decode, a field is missing or has a bad value
	CodeUnknownCommand   Code = "unknown_command"   // op is not one this state machine knows
	CodeBadSignature     Code = "bad_signature"     // envelope signature missing or invalid
	CodeUnknownClient    Code = "unknown_client"    // client key not invited (no ACL entry, not a bootstrap admin)
	CodePermissionDenied Code = "permission_denied" // client known but lacks the permission the command needs
	CodeSeqTooOld        Code = "seq_too_old"       // seq at or below the retained result window and not retained
	CodeSeqConflict      Code = "seq_conflict"      // seq already executed with a different command body
	CodeSeqTooFar        Code = "seq_too_far"       // seq jumps further ahead than the window allows
	CodeNotFound         Code = "not_found"         // the object named by the command or query does not exist
	CodeAlreadyExists    Code = "already_exists"    // the object exists and the command does not overwrite
	CodeTooLarge         Code = "too_large"         // a field or the command exceeds its size limit
	CodeLastAdmin        Code = "last_admin"        // the change would leave the cluster without an admin
	// CodeNotInitialized: no genesis entry has been applied yet, so there is
	// no ACL and no limits to judge a request by. Safe to retry once the
	// cluster has been initialized.
	CodeNotInitialized Code = "not_initialized"
	// CodeAlreadyInitialized: a genesis entry was applied to a state machine
	// that already has one; the genesis of a cluster is set once.
	CodeAlreadyInitialized Code = "already_initialized"
	// CodeEpochEnded: the entry was ordered after the epoch switch that
	// ended its epoch, so it was not executed (the state machine never saw
	// it). Safe to retry: the next epoch executes it.
	CodeEpochEnded Code = "epoch_ended"
)

// Error is a rejection with a stable code and a human-readable message that
// names the problem. It is returned by Precheck, Query and carried in Result.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Envelope is a signed client request: invariant 1 of the design. Every
// replica verifies Sig over SignBytes() before executing Command.
type Envelope struct {
	Client  ed25519.PublicKey `json:"client"`  // 32-byte public key (base64 in JSON)
	Seq     uint64            `json:"seq"`     // per-client sequence number, starting at 1
	Command []byte            `json:"command"` // the encoded Command exactly as signed (base64 in JSON)
	Sig     []byte            `json:"sig"`     // Ed25519 signature over SignBytes()
}

// Permission names a right granted through the ACL.
type Permission string

// Permissions. PermAdmin implies every other permission unless that
// permission is explicitly denied for the subject.
const (
	PermAdmin         Permission = "admin"
	PermSessionWrite  Permission = "session.write"
	PermToolWrite     Permission = "tool.write"
	PermResourceWrite Permission = "resource.write"
	PermConfigWrite   Permission = "config.write"
	PermACLWrite      Permission = "acl.write"
	// PermDatasetCreate lets a client create datasets (create_dataset). The
	// other dataset ops are authorised by the dataset itself: its admins
	// invite and revoke agents, its invited agents sync.
	PermDatasetCreate Permission = "dataset.create"
)

// Effect of an ACL rule.
type Effect string

// ACL effects. EffectRemove deletes the rule for (subject, permission).
const (
	EffectAllow  Effect = "allow"
	EffectDeny   Effect = "deny"
	EffectRemove Effect = "remove"
)

// Op names a command.
type Op string

// Commands of the state machine.
const (
	OpRegisterSession     Op = "register_session"
	OpRenewSession        Op = "renew_session"
	OpUnregisterSession   Op = "unregister_session"
	OpRegisterTool        Op = "register_tool"
	OpUnregisterTool      Op = "unregister_tool"
	OpSubscribeResource   Op = "subscribe_resource"
	OpUnsubscribeResource Op = "unsubscribe_resource"
	OpUpdateACL           Op = "update_acl"
	OpSetConfig           Op = "set_config"
	OpDeleteConfig        Op = "delete_config"
	OpCreateDataset       Op = "create_dataset"
	OpInviteAgent         Op = "invite_agent"
	OpRevokeAgent         Op = "revoke_agent"
	OpSyncDataset         Op = "sync_dataset"
)

// Command is the body a client signs. It is encoded as JSON with exactly the
// fields its Op uses; unknown fields are rejected when decoding.
type Command struct {
	Op Op `json:"op"`

	// Sessions.
	SessionID string            `json:"session_id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	TTLMillis int64             `json:"ttl_ms,omitempty"` // 0 = no expiry

	// Tools.
	ToolName   string          `json:"tool_name,omitempty"`
	Definition json.RawMessage `json:"definition,omitempty"` // a JSON object

	// Resources.
	ResourceURI string `json:"resource_uri,omitempty"`
	Subscriber  string `json:"subscriber,omitempty"`

	// ACL (Subject also names the agent of invite_agent and revoke_agent).
	Subject    string     `json:"subject,omitempty"` // a client public key, lowercase hex
	Permission Permission `json:"permission,omitempty"`
	Effect     Effect     `json:"effect,omitempty"`

	// Config.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`

	// Datasets (see dataset.go).
	Dataset      string      `json:"dataset,omitempty"`        // dataset name
	Cells        int         `json:"cells,omitempty"`          // create_dataset: number of cells
	CellSize     int         `json:"cell_size,omitempty"`      // create_dataset: bytes per cell
	StepLimit    uint64      `json:"step_limit,omitempty"`     // create_dataset: largest raise of one change; 0 = no limit
	MaxAgentSeqs uint64      `json:"max_agent_seqs,omitempty"` // create_dataset: cap of an agent's signed local seqs; 0 = DefaultMaxAgentSeqs
	Agents       []string    `json:"agents,omitempty"`         // create_dataset: agents invited at creation (hex keys)
	Role         DatasetRole `json:"role,omitempty"`           // invite_agent, revoke_agent: agent (default) or admin
	Snapshot     []byte      `json:"snapshot,omitempty"`       // sync_dataset: EncodeDatasetSnapshot bytes (base64 in JSON)
}

// Result is the outcome of one executed (or rejected at apply time)
// envelope. It is stored per (client, seq) for the result window, so a retry
// of the same seq with the same body gets the same Result back.
type Result struct {
	Index     uint64          `json:"index"`               // log index at which the envelope was executed
	Seq       uint64          `json:"seq"`                 // the client's seq
	Code      Code            `json:"code,omitempty"`      // CodeOK on success
	Message   string          `json:"message,omitempty"`   // why, when Code is set
	Value     json.RawMessage `json:"value,omitempty"`     // command-specific result, JSON
	Duplicate bool            `json:"duplicate,omitempty"` // served from the result window, not executed again
}

// Err returns the rejection carried by r as an *Error, or nil on success.
func (r Result) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// QueryKind names a read.
type QueryKind string

// Queries. The "list" kinds ignore Key; the others need it.
const (
	QuerySession   QueryKind = "session"
	QuerySessions  QueryKind = "sessions"
	QueryTool      QueryKind = "tool"
	QueryTools     QueryKind = "tools"
	QueryResource  QueryKind = "resource" // subscribers of one resource URI
	QueryResources QueryKind = "resources"
	QueryACL       QueryKind = "acl" // rules of one subject
	QueryACLs      QueryKind = "acls"
	QueryConfig    QueryKind = "config" // one key
	QueryConfigs   QueryKind = "configs"
	QueryClient    QueryKind = "client"   // a client's highest executed seq and whether it is known
	QueryDataset   QueryKind = "dataset"  // one dataset with its cells and agents
	QueryDatasets  QueryKind = "datasets" // every dataset, without cells and agents
)

// Query is a read of the state machine.
type Query struct {
	Kind QueryKind `json:"kind"`
	Key  string    `json:"key,omitempty"`
}

// AdminSignBytes are the bytes an admin request's signature covers
// (docs/api.md): a domain tag, the method, the request URI (path and query),
// the unix time in seconds and the hex SHA-256 of the body.
func AdminSignBytes(method, requestURI string, unixSeconds int64, body []byte) []byte {
	sum := sha256.Sum256(body)
	return []byte(fmt.Sprintf("tandem/admin/v1\x00%s\n%s\n%d\n%x", method, requestURI, unixSeconds, sum))
}
