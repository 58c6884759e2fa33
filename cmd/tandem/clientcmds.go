package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/smr"
)

// exitOutcomeUnknown is the exit status of a command whose write may or may
// not have been applied. Other errors exit with 1.
const exitOutcomeUnknown = 3

// exitCode maps the error of a command to the process exit status: 0 for
// nil, exitOutcomeUnknown when a write's outcome is unknown, 1 otherwise.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case client.IsOutcomeUnknown(err):
		return exitOutcomeUnknown
	default:
		return 1
	}
}

// outcomeUnknownError explains an unknown outcome to the operator and how
// to resolve it safely. It wraps the SDK error, so exitCode sees it.
type outcomeUnknownError struct {
	what string // e.g. "set_config", "add member n5"
	seq  uint64 // 0 when the request was not a signed envelope
	err  error
}

func (e *outcomeUnknownError) Error() string {
	if e.seq == 0 {
		return fmt.Sprintf("outcome unknown: %s may or may not have taken effect.\n"+
			"Retrying is safe (the request is idempotent); check with `tandem admin status` and `tandem admin members` first.\n"+
			"cause: %v", e.what, e.err)
	}
	switch client.ErrorCode(e.err) {
	case smr.CodeSeqTooOld:
		// Resending cannot help: the cluster has forgotten the seq.
		return fmt.Sprintf("outcome unknown: %s (seq %d) may or may not have been applied.\n"+
			"Seq %d fell out of the cluster's result window, so the cluster no longer remembers whether it was executed; retrying with --seq %d cannot tell.\n"+
			"Read the state the command changes (for example with `get` or `list`); if the change is missing, run the command again without --seq.\n"+
			"cause: %v", e.what, e.seq, e.seq, e.seq, e.err)
	case smr.CodeUnknownClient:
		return fmt.Sprintf("outcome unknown: %s (seq %d) may or may not have been applied.\n"+
			"The client key is not invited (any more), so the cluster cannot say whether seq %d was executed.\n"+
			"Ask an admin to check the key's rules with `tandem acl get` and to read the state the command changes.\n"+
			"cause: %v", e.what, e.seq, e.seq, e.err)
	default:
		return fmt.Sprintf("outcome unknown: %s (seq %d) may or may not have been applied.\n"+
			"Retrying is safe: run the same command again with --seq %d and the cluster applies it at most once.\n"+
			"cause: %v", e.what, e.seq, e.seq, e.err)
	}
}

func (e *outcomeUnknownError) Unwrap() error { return e.err }

// explain turns an unknown outcome into an outcomeUnknownError and leaves
// other errors as they are.
func explain(what string, err error) error {
	if !client.IsOutcomeUnknown(err) {
		return err
	}
	var seq uint64
	var re *client.RetryError
	if errors.As(err, &re) && re.Envelope != nil {
		seq = re.Envelope.Seq
	}
	return &outcomeUnknownError{what: what, seq: seq, err: err}
}

// seqConflictError explains a seq_conflict answer to a write sent with
// --seq: the seq holds another command, which may be the one whose outcome
// the operator is resolving.
type seqConflictError struct {
	seq uint64
	err error
}

func (e *seqConflictError) Error() string {
	return fmt.Sprintf("%v\n"+
		"Seq %d was executed with a different command; this one was not applied. "+
		"If you are resolving an unknown outcome, repeat the original command with exactly the same arguments and --seq %d; otherwise leave out --seq.",
		e.err, e.seq, e.seq)
}

func (e *seqConflictError) Unwrap() error { return e.err }

// clientEnv is what the verbs of one command group share: the global
// options and the group's connection flags.
type clientEnv struct {
	g    *globalOptions
	conn *clientOptions
}

func newClientEnv(g *globalOptions) *clientEnv {
	return &clientEnv{g: g, conn: newClientOptions()}
}

// addClientCommands adds the client verbs (session, tool, resource, acl)
// and the admin verbs to root. Each group has the connection flags
// (--endpoints, --key, --ca, --cert, --cert-key, --client-config,
// --timeout) as persistent flags.
func addClientCommands(root *cobra.Command, g *globalOptions) {
	root.AddCommand(
		newSessionCmd(g),
		newToolCmd(g),
		newResourceCmd(g),
		newACLCmd(g),
		newAdminCmd(g),
	)
}

// addClusterConfigVerbs adds set, get, delete and list of the replicated
// cluster config to the local `tandem config` command. The connection flags
// are local to each verb so that they do not reach check, show and default.
func addClusterConfigVerbs(configCmd *cobra.Command, g *globalOptions) {
	for _, mk := range []func(*clientEnv) *cobra.Command{
		newConfigSetCmd, newConfigGetCmd, newConfigDeleteCmd, newConfigListCmd,
	} {
		e := newClientEnv(g)
		cmd := mk(e)
		e.conn.bind(cmd.Flags())
		configCmd.AddCommand(cmd)
	}
}

// group returns a command group whose verbs share e's connection flags.
func group(e *clientEnv, use, short string, verbs ...func(*clientEnv) *cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	e.conn.bind(cmd.PersistentFlags())
	for _, v := range verbs {
		cmd.AddCommand(v(e))
	}
	return cmd
}

// ---- writes ----

// writeOutput is what a write prints.
type writeOutput struct {
	Index     uint64          `json:"index"`
	Seq       uint64          `json:"seq"`
	Duplicate bool            `json:"duplicate"`
	Value     json.RawMessage `json:"value,omitempty"`
}

// write submits c (with seq when non-zero, else the client's next seq) and
// prints the result.
func (e *clientEnv) write(cmd *cobra.Command, seq uint64, c smr.Command) error {
	format, err := e.g.format()
	if err != nil {
		return err
	}
	cl, err := e.conn.connect(cmd, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := e.conn.context(cmd)
	defer cancel()
	var res smr.Result
	if seq != 0 {
		res, err = cl.SubmitAt(ctx, seq, c)
	} else {
		res, err = cl.Submit(ctx, c)
	}
	if err != nil {
		if seq != 0 && !client.IsOutcomeUnknown(err) && client.ErrorCode(err) == smr.CodeSeqConflict {
			return &seqConflictError{seq: seq, err: err}
		}
		return explain(string(c.Op), err)
	}
	out := writeOutput{Index: res.Index, Seq: res.Seq, Duplicate: res.Duplicate, Value: res.Value}
	if format == outputJSON {
		return writeJSON(cmd.OutOrStdout(), out)
	}
	pairs := [][2]string{
		{"Index", fmt.Sprint(out.Index)},
		{"Seq", fmt.Sprint(out.Seq)},
		{"Duplicate", fmt.Sprint(out.Duplicate)},
	}
	if len(out.Value) > 0 {
		pairs = append(pairs, [2]string{"Outcome", compactJSON(out.Value)})
	}
	return writeFields(cmd.OutOrStdout(), pairs...)
}

// bindSeq defines --seq on a write verb.
func bindSeq(cmd *cobra.Command, seq *uint64) {
	cmd.Flags().Uint64Var(seq, "seq", 0, "sign with this seq instead of the next one; to retry a write whose outcome was unknown, repeat it with the same arguments and its seq")
}

// writeVerb builds a write verb that takes exactly n arguments and turns
// them into a command.
func writeVerb(e *clientEnv, use, short string, n int, build func(args []string) (smr.Command, error)) *cobra.Command {
	var seq uint64
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(n),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := build(args)
			if err != nil {
				return err
			}
			return e.write(cmd, seq, c)
		},
	}
	bindSeq(cmd, &seq)
	return cmd
}

// ---- reads ----

// table is a rendered read: a header and rows.
type table struct {
	header []string
	rows   [][]string
}

// readVerb builds a read verb over query kind. With key, the verb takes
// the key as its one argument; otherwise it takes none. render turns the
// value into a table; -o json prints the value as the cluster returned it.
func readVerb(e *clientEnv, use, short string, kind smr.QueryKind, key bool, render func(json.RawMessage) (table, error)) *cobra.Command {
	var stale, fast bool
	args := cobra.NoArgs
	if key {
		args = cobra.ExactArgs(1)
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := e.g.format()
			if err != nil {
				return err
			}
			q := smr.Query{Kind: kind}
			if key {
				q.Key = args[0]
			}
			cl, err := e.conn.connect(cmd, false)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			var opts []client.ReadOption
			if stale {
				opts = append(opts, client.Stale())
			}
			if fast {
				opts = append(opts, client.FastRead())
			}
			raw, _, err := cl.Query(ctx, q, opts...)
			if err != nil {
				return err
			}
			if format == outputJSON {
				return writeRawJSON(cmd.OutOrStdout(), raw)
			}
			t, err := render(raw)
			if err != nil {
				return fmt.Errorf("query %s: %w", kind, err)
			}
			return writeTable(cmd.OutOrStdout(), t.header, t.rows)
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the receiving node's local state without confirming with the leader (faster, may miss recent writes)")
	cmd.Flags().BoolVar(&fast, "fast", false, "bft clusters: accept n-f matching signed answers from the members' local state at one index, else read through consensus (without a committee: like --stale)")
	return cmd
}

// decodeOneOrMany decodes raw as a T or a []T.
func decodeOneOrMany[T any](raw json.RawMessage) ([]T, error) {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		var many []T
		if err := json.Unmarshal(raw, &many); err != nil {
			return nil, err
		}
		return many, nil
	}
	var one T
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}

func renderSessions(raw json.RawMessage) (table, error) {
	ss, err := decodeOneOrMany[smr.SessionInfo](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"SESSION", "TTL", "EXPIRES", "METADATA"}}
	for _, s := range ss {
		ttl, exp := "-", "-"
		if s.TTLMillis > 0 {
			ttl = (time.Duration(s.TTLMillis) * time.Millisecond).String()
		}
		if s.ExpiresAt > 0 {
			exp = time.Unix(0, s.ExpiresAt).UTC().Format(time.RFC3339)
		}
		t.rows = append(t.rows, []string{s.SessionID, ttl, exp, formatMeta(s.Metadata)})
	}
	return t, nil
}

func renderTools(raw json.RawMessage) (table, error) {
	ts, err := decodeOneOrMany[smr.ToolInfo](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"TOOL", "DEFINITION"}}
	for _, x := range ts {
		t.rows = append(t.rows, []string{x.ToolName, compactJSON(x.Definition)})
	}
	return t, nil
}

func renderResources(raw json.RawMessage) (table, error) {
	rs, err := decodeOneOrMany[smr.ResourceInfo](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"RESOURCE", "SUBSCRIBERS"}}
	for _, r := range rs {
		t.rows = append(t.rows, []string{r.ResourceURI, orDash(strings.Join(r.Subscribers, ","))})
	}
	return t, nil
}

func renderACLs(raw json.RawMessage) (table, error) {
	as, err := decodeOneOrMany[smr.ACLInfo](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"SUBJECT", "PERMISSION", "EFFECT"}}
	for _, a := range as {
		for _, r := range a.Rules {
			t.rows = append(t.rows, []string{a.Subject, string(r.Permission), string(r.Effect)})
		}
	}
	return t, nil
}

func renderConfig(raw json.RawMessage) (table, error) {
	cs, err := decodeOneOrMany[smr.ConfigEntry](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"KEY", "VALUE"}}
	for _, c := range cs {
		t.rows = append(t.rows, []string{c.Key, c.Value})
	}
	return t, nil
}

// ---- session ----

func newSessionCmd(g *globalOptions) *cobra.Command {
	return group(newClientEnv(g), "session", "Register, renew, remove and read sessions",
		newSessionRegisterCmd,
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "renew ID", "Restart the TTL of a session", 1, func(a []string) (smr.Command, error) {
				return smr.Command{Op: smr.OpRenewSession, SessionID: a[0]}, nil
			})
		},
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "unregister ID", "Remove a session", 1, func(a []string) (smr.Command, error) {
				return smr.Command{Op: smr.OpUnregisterSession, SessionID: a[0]}, nil
			})
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "get ID", "Show a live session", smr.QuerySession, true, renderSessions)
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "list", "List live sessions", smr.QuerySessions, false, renderSessions)
		},
	)
}

// sessionRegisterOptions are the flags of `session register`.
type sessionRegisterOptions struct {
	ttl  time.Duration
	meta []string
	seq  uint64
}

func newSessionRegisterCmd(e *clientEnv) *cobra.Command {
	o := &sessionRegisterOptions{}
	cmd := &cobra.Command{
		Use:   "register ID",
		Short: "Register a session",
		Long: `Register a session with optional metadata (--meta k=v, repeatable) and a
TTL (--ttl; 0, the default, means the session never expires; otherwise it
must be renewed within the TTL).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.ttl < 0 {
				return fmt.Errorf("--ttl: %s is negative; use 0 for no expiry", o.ttl)
			}
			if o.ttl > 0 && o.ttl%time.Millisecond != 0 {
				return fmt.Errorf("--ttl: %s is not a whole number of milliseconds", o.ttl)
			}
			meta, err := parseMeta(o.meta)
			if err != nil {
				return err
			}
			return e.write(cmd, o.seq, smr.Command{Op: smr.OpRegisterSession, SessionID: args[0], Metadata: meta, TTLMillis: o.ttl.Milliseconds()})
		},
	}
	cmd.Flags().DurationVar(&o.ttl, "ttl", 0, "session lifetime without renewal, e.g. 30s (0: never expires)")
	cmd.Flags().StringArrayVar(&o.meta, "meta", nil, "metadata entry key=value (repeatable)")
	bindSeq(cmd, &o.seq)
	return cmd
}

// parseMeta turns k=v strings into a map, refusing empty and repeated keys.
func parseMeta(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta: %q is not key=value", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--meta: key %q is given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func formatMeta(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// ---- tool ----

func newToolCmd(g *globalOptions) *cobra.Command {
	return group(newClientEnv(g), "tool", "Register, remove and read tools",
		newToolRegisterCmd,
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "unregister NAME", "Remove a tool", 1, func(a []string) (smr.Command, error) {
				return smr.Command{Op: smr.OpUnregisterTool, ToolName: a[0]}, nil
			})
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "get NAME", "Show a tool and its definition", smr.QueryTool, true, renderTools)
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "list", "List tools", smr.QueryTools, false, renderTools)
		},
	)
}

// toolRegisterOptions are the flags of `tool register`.
type toolRegisterOptions struct {
	definition string
	seq        uint64
	stdin      io.Reader
}

func newToolRegisterCmd(e *clientEnv) *cobra.Command {
	o := &toolRegisterOptions{}
	cmd := &cobra.Command{
		Use:   "register NAME --definition JSON|@FILE",
		Short: "Register (or replace) a tool",
		Long: `Register a tool. --definition is a JSON object given inline, or @FILE to
read it from a file, or @- to read it from standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.stdin = cmd.InOrStdin()
			def, err := o.readDefinition()
			if err != nil {
				return err
			}
			return e.write(cmd, o.seq, smr.Command{Op: smr.OpRegisterTool, ToolName: args[0], Definition: def})
		},
	}
	cmd.Flags().StringVar(&o.definition, "definition", "", "tool definition: a JSON object, @FILE or @- (stdin)")
	_ = cmd.MarkFlagRequired("definition")
	bindSeq(cmd, &o.seq)
	return cmd
}

// readDefinition returns the --definition JSON object, compacted.
func (o *toolRegisterOptions) readDefinition() (json.RawMessage, error) {
	src, data := "--definition", []byte(o.definition)
	if name, ok := strings.CutPrefix(o.definition, "@"); ok {
		var err error
		switch name {
		case "":
			return nil, errors.New("--definition: @ needs a file name (or @- for standard input)")
		case "-":
			src = "--definition @- (stdin)"
			data, err = io.ReadAll(o.stdin)
		default:
			src = "--definition file " + name
			data, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%s: want a JSON object ({...})", src)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %w", src, err)
	}
	return buf.Bytes(), nil
}

// ---- resource ----

func newResourceCmd(g *globalOptions) *cobra.Command {
	return group(newClientEnv(g), "resource", "Subscribe to resources and read subscriptions",
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "subscribe URI SUBSCRIBER", "Subscribe SUBSCRIBER to resource URI", 2, func(a []string) (smr.Command, error) {
				return smr.Command{Op: smr.OpSubscribeResource, ResourceURI: a[0], Subscriber: a[1]}, nil
			})
		},
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "unsubscribe URI SUBSCRIBER", "Remove SUBSCRIBER from resource URI", 2, func(a []string) (smr.Command, error) {
				return smr.Command{Op: smr.OpUnsubscribeResource, ResourceURI: a[0], Subscriber: a[1]}, nil
			})
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "get URI", "Show the subscribers of a resource", smr.QueryResource, true, renderResources)
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "list", "List resources with subscribers", smr.QueryResources, false, renderResources)
		},
	)
}

// ---- acl ----

// knownPermissions lists the permissions the ACL knows.
func knownPermissions() []smr.Permission {
	return []smr.Permission{
		smr.PermAdmin, smr.PermSessionWrite, smr.PermToolWrite,
		smr.PermResourceWrite, smr.PermConfigWrite, smr.PermACLWrite, smr.PermDatasetCreate,
	}
}

// aclCommand checks the arguments of an ACL change.
func aclCommand(effect smr.Effect) func(a []string) (smr.Command, error) {
	return func(a []string) (smr.Command, error) {
		if _, err := smr.ParseKey(a[0]); err != nil {
			return smr.Command{}, fmt.Errorf("SUBJECT: %w (a client public key as printed by `tandem keygen`)", err)
		}
		p := smr.Permission(a[1])
		if known := knownPermissions(); !slices.Contains(known, p) {
			names := make([]string, len(known))
			for i, n := range known {
				names[i] = string(n)
			}
			return smr.Command{}, fmt.Errorf("PERMISSION: %q is not one of %s", a[1], strings.Join(names, ", "))
		}
		return smr.Command{Op: smr.OpUpdateACL, Subject: a[0], Permission: p, Effect: effect}, nil
	}
}

func newACLCmd(g *globalOptions) *cobra.Command {
	return group(newClientEnv(g), "acl", "Grant, deny and remove permissions of client keys",
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "grant SUBJECT PERMISSION", "Allow a client key a permission", 2, aclCommand(smr.EffectAllow))
		},
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "deny SUBJECT PERMISSION", "Deny a client key a permission (overrides admin)", 2, aclCommand(smr.EffectDeny))
		},
		func(e *clientEnv) *cobra.Command {
			return writeVerb(e, "remove SUBJECT PERMISSION", "Remove the rule of a client key for a permission", 2, aclCommand(smr.EffectRemove))
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "get SUBJECT", "Show the rules of a client key", smr.QueryACL, true, renderACLs)
		},
		func(e *clientEnv) *cobra.Command {
			return readVerb(e, "list", "List the rules of every client key", smr.QueryACLs, false, renderACLs)
		},
	)
}

// ---- replicated cluster config ----

func newConfigSetCmd(e *clientEnv) *cobra.Command {
	return writeVerb(e, "set KEY VALUE", "Set a key of the replicated cluster config", 2, func(a []string) (smr.Command, error) {
		return smr.Command{Op: smr.OpSetConfig, Key: a[0], Value: a[1]}, nil
	})
}

func newConfigGetCmd(e *clientEnv) *cobra.Command {
	return readVerb(e, "get KEY", "Show a key of the replicated cluster config", smr.QueryConfig, true, renderConfig)
}

func newConfigDeleteCmd(e *clientEnv) *cobra.Command {
	return writeVerb(e, "delete KEY", "Delete a key of the replicated cluster config", 1, func(a []string) (smr.Command, error) {
		return smr.Command{Op: smr.OpDeleteConfig, Key: a[0]}, nil
	})
}

func newConfigListCmd(e *clientEnv) *cobra.Command {
	return readVerb(e, "list", "List the replicated cluster config", smr.QueryConfigs, false, renderConfig)
}

// ---- output helpers ----

// writeRawJSON writes a JSON value indented, followed by a newline.
func writeRawJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the cluster returned invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// compactJSON renders a JSON value on one line.
func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
