package smr

import (
	"encoding/json"
	"slices"
	"strings"
)

// Query results. Lists are JSON arrays sorted by their first field.

// SessionInfo is a live session (QuerySession, QuerySessions).
type SessionInfo struct {
	SessionID string            `json:"session_id"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	TTLMillis int64             `json:"ttl_ms"`               // 0: never expires
	ExpiresAt int64             `json:"expires_at,omitempty"` // Unix nanos, when TTLMillis > 0
}

// ToolInfo is a registered tool (QueryTool, QueryTools).
type ToolInfo struct {
	ToolName   string          `json:"tool_name"`
	Definition json.RawMessage `json:"definition"`
}

// ResourceInfo lists the subscribers of a resource (QueryResource,
// QueryResources), sorted.
type ResourceInfo struct {
	ResourceURI string   `json:"resource_uri"`
	Subscribers []string `json:"subscribers"`
}

// ACLRule is one rule of a subject.
type ACLRule struct {
	Permission Permission `json:"permission"`
	Effect     Effect     `json:"effect"`
}

// ACLInfo holds the rules of one subject (QueryACL, QueryACLs), sorted by
// permission.
type ACLInfo struct {
	Subject string    `json:"subject"` // hex public key
	Rules   []ACLRule `json:"rules"`
}

// ConfigEntry is one config key (QueryConfig, QueryConfigs).
type ConfigEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ClientInfo describes a client key (QueryClient): whether it is invited
// (an allow rule in the ACL, or a member of a dataset) and the highest seq
// executed for it (0 if none).
type ClientInfo struct {
	Client     string `json:"client"`
	Known      bool   `json:"known"`
	HighestSeq uint64 `json:"highest_seq"`
}

// Query reads the state. The single-object kinds need Key and return
// CodeNotFound when it names nothing; the list kinds ignore Key and return
// arrays (possibly empty) in sorted order. Expired sessions are never
// returned. Errors are *Error (CodeNotInitialized before the genesis,
// CodeMalformed, CodeNotFound).
func (m *StateMachine) Query(q Query) (json.RawMessage, error) {
	v, _, err := m.QueryAt(q)
	return v, err
}

// QueryAt is Query that also returns the applied index the value was read
// at, taken under the same lock as the value (so the pair is consistent even
// while entries are being applied). The index is returned with errors too.
func (m *StateMachine) QueryAt(q Query) (value json.RawMessage, index uint64, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	value, err = m.query(q)
	return value, m.applied, err
}

// query runs q against m.st. The caller holds m.mu.
func (m *StateMachine) query(q Query) (json.RawMessage, error) {
	st := m.st
	if st.genesis == nil {
		return nil, notInitialized()
	}

	needKey := func() error {
		if q.Key == "" {
			return Errorf(CodeMalformed, "query %s needs a key", q.Kind)
		}
		return nil
	}
	switch q.Kind {
	case QuerySession:
		if err := needKey(); err != nil {
			return nil, err
		}
		s, ok := st.sessions[q.Key]
		if !ok || !st.live(s) {
			return nil, Errorf(CodeNotFound, "session %s does not exist (or has expired)", quote(q.Key))
		}
		return mustJSON(sessionInfo(s)), nil

	case QuerySessions:
		out := make([]SessionInfo, 0, len(st.sessions))
		for _, id := range sortedKeys(st.sessions) {
			if s := st.sessions[id]; st.live(s) {
				out = append(out, sessionInfo(s))
			}
		}
		return mustJSON(out), nil

	case QueryTool:
		if err := needKey(); err != nil {
			return nil, err
		}
		def, ok := st.tools[q.Key]
		if !ok {
			return nil, Errorf(CodeNotFound, "tool %s is not registered", quote(q.Key))
		}
		return mustJSON(ToolInfo{ToolName: q.Key, Definition: def}), nil

	case QueryTools:
		out := make([]ToolInfo, 0, len(st.tools))
		for _, name := range sortedKeys(st.tools) {
			out = append(out, ToolInfo{ToolName: name, Definition: st.tools[name]})
		}
		return mustJSON(out), nil

	case QueryResource:
		if err := needKey(); err != nil {
			return nil, err
		}
		subs, ok := st.resources[q.Key]
		if !ok {
			return nil, Errorf(CodeNotFound, "resource %s has no subscribers", quote(q.Key))
		}
		return mustJSON(ResourceInfo{ResourceURI: q.Key, Subscribers: sortedKeys(subs)}), nil

	case QueryResources:
		out := make([]ResourceInfo, 0, len(st.resources))
		for _, uri := range sortedKeys(st.resources) {
			out = append(out, ResourceInfo{ResourceURI: uri, Subscribers: sortedKeys(st.resources[uri])})
		}
		return mustJSON(out), nil

	case QueryACL:
		if err := needKey(); err != nil {
			return nil, err
		}
		pub, err := ParseKey(q.Key)
		if err != nil {
			return nil, err
		}
		rules, ok := st.acl[clientKey(pub)]
		if !ok {
			return nil, Errorf(CodeNotFound, "subject %s has no ACL rules", q.Key)
		}
		return mustJSON(aclInfo(q.Key, rules)), nil

	case QueryACLs:
		out := make([]ACLInfo, 0, len(st.acl))
		for k, rules := range st.acl {
			out = append(out, aclInfo(FormatKey(k[:]), rules))
		}
		slices.SortFunc(out, func(a, b ACLInfo) int { return strings.Compare(a.Subject, b.Subject) })
		return mustJSON(out), nil

	case QueryConfig:
		if err := needKey(); err != nil {
			return nil, err
		}
		v, ok := st.config[q.Key]
		if !ok {
			return nil, Errorf(CodeNotFound, "config key %s is not set", quote(q.Key))
		}
		return mustJSON(ConfigEntry{Key: q.Key, Value: v}), nil

	case QueryConfigs:
		out := make([]ConfigEntry, 0, len(st.config))
		for _, k := range sortedKeys(st.config) {
			out = append(out, ConfigEntry{Key: k, Value: st.config[k]})
		}
		return mustJSON(out), nil

	case QueryClient:
		if err := needKey(); err != nil {
			return nil, err
		}
		pub, err := ParseKey(q.Key)
		if err != nil {
			return nil, err
		}
		ck := clientKey(pub)
		info := ClientInfo{Client: q.Key, Known: st.known(ck)}
		if cs := st.clients[ck]; cs != nil {
			info.HighestSeq = cs.highest
		}
		return mustJSON(info), nil

	case QueryDataset:
		if err := needKey(); err != nil {
			return nil, err
		}
		ds, ok := st.datasets[q.Key]
		if !ok {
			return nil, Errorf(CodeNotFound, "dataset %s does not exist", quote(q.Key))
		}
		return mustJSON(ds.info(true)), nil

	case QueryDatasets:
		out := make([]DatasetInfo, 0, len(st.datasets))
		for _, name := range sortedKeys(st.datasets) {
			out = append(out, st.datasets[name].info(false))
		}
		return mustJSON(out), nil
	}
	return nil, Errorf(CodeMalformed, "unknown query kind %s (known: session, sessions, tool, tools, resource, resources, acl, acls, config, configs, client, dataset, datasets)", quote(string(q.Kind)))
}

func sessionInfo(s *session) SessionInfo {
	info := SessionInfo{SessionID: s.id, Metadata: s.metadata, TTLMillis: s.ttl}
	if s.ttl > 0 {
		info.ExpiresAt = s.expiry
	}
	return info
}

func aclInfo(subject string, rules map[Permission]Effect) ACLInfo {
	info := ACLInfo{Subject: subject, Rules: make([]ACLRule, 0, len(rules))}
	for _, p := range sortedKeys(rules) {
		info.Rules = append(info.Rules, ACLRule{Permission: p, Effect: rules[p]})
	}
	return info
}
