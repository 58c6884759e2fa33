package api_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

// fakeBackend is an api.Backend whose answers are set per test. It records
// every call by method name, and what Submit and Query received.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string

	submitEnv  *smr.Envelope
	queryGot   smr.Query
	queryStale bool

	submit    func(*smr.Envelope) (smr.Result, error)
	submitCtx func(context.Context) // called with Submit's context first
	query     func(smr.Query, bool) (json.RawMessage, uint64, error)
	authorize func(ed25519.PublicKey, smr.Permission) error
	ready     func() error
	transfer  func(string) error
	snapshot  []byte
	restored  []byte
}

var _ api.Backend = (*fakeBackend)(nil)

func (f *fakeBackend) record(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

// called returns the recorded calls.
func (f *fakeBackend) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Submit(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	f.record("Submit")
	if f.submitCtx != nil {
		f.submitCtx(ctx)
	}
	f.mu.Lock()
	f.submitEnv = env
	f.mu.Unlock()
	if f.submit != nil {
		return f.submit(env)
	}
	return smr.Result{Index: 42, Seq: env.Seq, Value: json.RawMessage(`{"ok":true}`)}, nil
}

func (f *fakeBackend) Query(_ context.Context, q smr.Query, stale bool) (json.RawMessage, uint64, error) {
	f.record("Query")
	f.mu.Lock()
	f.queryGot, f.queryStale = q, stale
	f.mu.Unlock()
	if f.query != nil {
		return f.query(q, stale)
	}
	return json.RawMessage(`{"kind":"` + string(q.Kind) + `"}`), 7, nil
}

func (f *fakeBackend) Status(context.Context) api.NodeStatus {
	f.record("Status")
	return api.NodeStatus{Status: consensus.Status{NodeID: "node-1", Role: "leader"}, StateHash: "ab"}
}

func (f *fakeBackend) Members(context.Context) ([]consensus.Member, error) {
	f.record("Members")
	return []consensus.Member{{ID: "node-1", Address: "127.0.0.1:1", Voter: true, Leader: true}}, nil
}

func (f *fakeBackend) Authorize(key ed25519.PublicKey, perm smr.Permission) error {
	f.record("Authorize")
	if f.authorize != nil {
		return f.authorize(key, perm)
	}
	return nil
}

func (f *fakeBackend) Ready() error {
	f.record("Ready")
	if f.ready != nil {
		return f.ready()
	}
	return nil
}

func (f *fakeBackend) TransferLeader(_ context.Context, id string) error {
	f.record("TransferLeader")
	if f.transfer != nil {
		return f.transfer(id)
	}
	return nil
}

func (f *fakeBackend) SnapshotSave(_ context.Context, w io.Writer) (uint64, error) {
	f.record("SnapshotSave")
	if f.snapshot == nil {
		return 0, errors.New("no snapshot configured")
	}
	_, err := w.Write(f.snapshot)
	return 9, err
}

func (f *fakeBackend) SnapshotRestore(_ context.Context, r *smr.Restore) (smr.Result, error) {
	f.record("SnapshotRestore")
	f.mu.Lock()
	f.restored = append([]byte(nil), r.Snapshot...)
	f.mu.Unlock()
	if err := r.Verify(); err != nil {
		return smr.Result{}, err
	}
	return smr.Result{Index: 1}, nil
}

func (f *fakeBackend) AddMember(context.Context, consensus.Member) error {
	f.record("AddMember")
	return nil
}

func (f *fakeBackend) RemoveMember(context.Context, string) error {
	f.record("RemoveMember")
	return nil
}

// testLimit is MaxRequestBytes of the servers built by newServer.
const testLimit = 1024

// testNow is the admin clock of the servers built by newServer.
var testNow = time.Unix(1_800_000_000, 0)

func newServer(t *testing.T, b *fakeBackend) (*api.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := api.New(api.Config{
		Backend:         b,
		Logger:          testlog.New(t, slog.LevelWarn),
		Registry:        reg,
		MaxRequestBytes: testLimit,
		Now:             func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
