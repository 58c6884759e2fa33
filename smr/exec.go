package smr

import (
	"bytes"
	"encoding/json"
	"maps"
)

// Outcome is the JSON of Result.Value for a successful command. Only the
// fields that describe the command are set:
//
//	register_session, renew_session: session_id, ttl_ms, expires_at (when ttl_ms > 0)
//	unregister_session:   session_id, removed
//	register_tool:        tool_name, replaced
//	unregister_tool:      tool_name, removed
//	subscribe_resource:   resource_uri, subscriber, already_subscribed
//	unsubscribe_resource: resource_uri, subscriber, removed
//	update_acl:           subject, permission, effect, previous (the effect before, if any)
//	set_config:           key, replaced
//	delete_config:        key, removed
//	create_dataset:       dataset, created (the log index agents sign for)
//	invite_agent:         dataset, subject, role, unchanged (it already held the role)
//	revoke_agent:         dataset, subject, role, removed
//
// sync_dataset answers with a SyncOutcome instead.
type Outcome struct {
	SessionID         string      `json:"session_id,omitempty"`
	TTLMillis         int64       `json:"ttl_ms,omitempty"`
	ExpiresAt         int64       `json:"expires_at,omitempty"` // Unix nanos, state clock + ttl
	ToolName          string      `json:"tool_name,omitempty"`
	ResourceURI       string      `json:"resource_uri,omitempty"`
	Subscriber        string      `json:"subscriber,omitempty"`
	Subject           string      `json:"subject,omitempty"`
	Permission        Permission  `json:"permission,omitempty"`
	Effect            Effect      `json:"effect,omitempty"`
	Previous          Effect      `json:"previous,omitempty"`
	Key               string      `json:"key,omitempty"`
	Replaced          bool        `json:"replaced,omitempty"`
	Removed           bool        `json:"removed,omitempty"`
	AlreadySubscribed bool        `json:"already_subscribed,omitempty"`
	Dataset           string      `json:"dataset,omitempty"`
	Created           uint64      `json:"created,omitempty"`
	Role              DatasetRole `json:"role,omitempty"`
	Unchanged         bool        `json:"unchanged,omitempty"`
}

// execEnv is what execution needs besides the command: the log index, the
// signing client and, for sync_dataset, the signature checks Apply made
// before it took the lock (nil: none).
type execEnv struct {
	index  uint64
	client clientKey
	sigs   *syncSigs
}

// execute applies a decoded, permitted command to the state. On error the
// state is unchanged.
func (st *state) execute(c *Command, env execEnv) (json.RawMessage, error) {
	var out Outcome
	switch c.Op {
	case OpRegisterSession:
		if _, ok := st.sessions[c.SessionID]; ok {
			return nil, Errorf(CodeAlreadyExists, "session %s already exists", quote(c.SessionID))
		}
		s := &session{id: c.SessionID, ttl: c.TTLMillis}
		if len(c.Metadata) > 0 {
			s.metadata = maps.Clone(c.Metadata)
		}
		if s.ttl > 0 {
			s.expiry = expiryAt(st.clock, s.ttl)
		}
		st.putSession(s)
		out = sessionOutcome(s)

	case OpRenewSession:
		old, ok := st.sessions[c.SessionID]
		if !ok {
			return nil, Errorf(CodeNotFound, "session %s does not exist (or has expired)", quote(c.SessionID))
		}
		s := &session{id: old.id, metadata: old.metadata, ttl: old.ttl}
		if c.TTLMillis > 0 {
			s.ttl = c.TTLMillis
		}
		if s.ttl > 0 {
			s.expiry = expiryAt(st.clock, s.ttl)
		}
		st.putSession(s)
		out = sessionOutcome(s)

	case OpUnregisterSession:
		if _, ok := st.sessions[c.SessionID]; !ok {
			return nil, Errorf(CodeNotFound, "session %s does not exist (or has expired)", quote(c.SessionID))
		}
		st.deleteSession(c.SessionID)
		out = Outcome{SessionID: c.SessionID, Removed: true}

	case OpRegisterTool:
		_, replaced := st.tools[c.ToolName]
		st.tools[c.ToolName] = bytes.Clone(c.Definition)
		out = Outcome{ToolName: c.ToolName, Replaced: replaced}

	case OpUnregisterTool:
		if _, ok := st.tools[c.ToolName]; !ok {
			return nil, Errorf(CodeNotFound, "tool %s is not registered", quote(c.ToolName))
		}
		delete(st.tools, c.ToolName)
		out = Outcome{ToolName: c.ToolName, Removed: true}

	case OpSubscribeResource:
		subs := st.resources[c.ResourceURI]
		if subs == nil {
			subs = make(map[string]struct{})
			st.resources[c.ResourceURI] = subs
		}
		_, already := subs[c.Subscriber]
		subs[c.Subscriber] = struct{}{}
		out = Outcome{ResourceURI: c.ResourceURI, Subscriber: c.Subscriber, AlreadySubscribed: already}

	case OpUnsubscribeResource:
		subs := st.resources[c.ResourceURI]
		if _, ok := subs[c.Subscriber]; !ok {
			return nil, Errorf(CodeNotFound, "%s is not subscribed to resource %s", quote(c.Subscriber), quote(c.ResourceURI))
		}
		delete(subs, c.Subscriber)
		if len(subs) == 0 {
			delete(st.resources, c.ResourceURI)
		}
		out = Outcome{ResourceURI: c.ResourceURI, Subscriber: c.Subscriber, Removed: true}

	case OpUpdateACL:
		return st.updateACL(c)

	case OpSetConfig:
		_, replaced := st.config[c.Key]
		st.config[c.Key] = c.Value
		out = Outcome{Key: c.Key, Replaced: replaced}

	case OpDeleteConfig:
		if _, ok := st.config[c.Key]; !ok {
			return nil, Errorf(CodeNotFound, "config key %s is not set", quote(c.Key))
		}
		delete(st.config, c.Key)
		out = Outcome{Key: c.Key, Removed: true}

	case OpCreateDataset:
		return st.createDataset(c, env.index, env.client)
	case OpInviteAgent:
		return st.inviteAgent(c)
	case OpRevokeAgent:
		return st.revokeAgent(c)
	case OpSyncDataset:
		return st.syncDataset(c, env.sigs)

	default:
		// DecodeCommand only returns known ops.
		return nil, Errorf(CodeUnknownCommand, "unknown op %s", quote(string(c.Op)))
	}
	return mustJSON(out), nil
}

func sessionOutcome(s *session) Outcome {
	o := Outcome{SessionID: s.id, TTLMillis: s.ttl}
	if s.ttl > 0 {
		o.ExpiresAt = s.expiry
	}
	return o
}

// updateACL sets or removes the rule (subject, permission). It refuses to
// remove the last admin allow rule of the whole ACL.
func (st *state) updateACL(c *Command) (json.RawMessage, error) {
	pub, err := ParseKey(c.Subject)
	if err != nil {
		return nil, err
	}
	subj := clientKey(pub)
	rules := st.acl[subj]
	prev, had := rules[c.Permission]
	if c.Effect == EffectRemove && !had {
		return nil, Errorf(CodeNotFound, "subject %s has no rule for permission %s", c.Subject, c.Permission)
	}
	if c.Permission == PermAdmin && prev == EffectAllow && c.Effect != EffectAllow && st.admins() == 1 {
		return nil, Errorf(CodeLastAdmin, "subject %s holds the only admin allow rule; grant admin to another subject first", c.Subject)
	}
	if c.Effect == EffectRemove {
		delete(rules, c.Permission)
		if len(rules) == 0 {
			delete(st.acl, subj)
		}
	} else {
		if rules == nil {
			rules = make(map[Permission]Effect)
			st.acl[subj] = rules
		}
		rules[c.Permission] = c.Effect
	}
	return mustJSON(Outcome{Subject: c.Subject, Permission: c.Permission, Effect: c.Effect, Previous: prev}), nil
}
