package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// servePayload returns a peer that answers every request with body.
func servePayload(t *testing.T, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func mustTransfer(t *testing.T, c *Certificate, snap []byte) []byte {
	t.Helper()
	b, err := encodeTransfer(c, snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// honestPeer returns a peer serving a store holding c and snap.
func honestPeer(t *testing.T, c *Certificate, snap []byte) *httptest.Server {
	t.Helper()
	s := openTestStore(t, t.TempDir())
	if err := s.Save(c, snap); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(s, 0))
	t.Cleanup(srv.Close)
	return srv
}

func fetchConfig(t *testing.T, peers ...Peer) FetchConfig {
	return FetchConfig{Peers: peers, Committee: testCommittee(t, 4), Info: smr.SnapshotInfo,
		MinIndex: 10, Timeout: 5 * time.Second, MaxBytes: 1 << 20}
}

// TestFetchSkipsBadPeers defends DESIGN invariant 12 (state transfer is
// verified before it is installed): peers that are down, slow, forge the
// certificate or tamper with the snapshot are each rejected with their
// reason, and the honest peer's checkpoint is returned.
func TestFetchSkipsBadPeers(t *testing.T) {
	good, snap := stableCheckpoint(t, 1, 10, 10, 3)
	otherSnap, otherSum := realSnapshot(t, 10, 11)

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	stalls := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := mustTransfer(t, good, snap)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(stalls.Close)

	// Signed by keys that are not the committee's, under non-member and
	// member names.
	nonMembers := &Certificate{Statement: good.Statement}
	for _, i := range []int{11, 12, 13} {
		nonMembers.Sigs = append(nonMembers.Sigs, Signature{Signer: memberID(i), Sig: mustSign(t, i, good.Statement).Sig})
	}
	impostors := &Certificate{Statement: good.Statement}
	for _, i := range []int{1, 2, 3} {
		v, _ := Sign(testKey(20+i), memberID(i), good.Statement)
		impostors.Sigs = append(impostors.Sigs, Signature{Signer: memberID(i), Sig: v.Sig})
	}
	tooFew := certOf(t, good.Statement, 1, 2)
	// A quorum certificate for another state, served with our snapshot,
	// and the good certificate served with another snapshot.
	otherCert := certOf(t, Statement{Kind: KindCheckpoint, Epoch: 1, Index: 10, StateHash: otherSum}, 1, 2, 3)
	tampered := slices.Clone(snap)
	tampered[len(tampered)-40] ^= 1

	peers := []struct {
		id, url, reason string
	}{
		{"down", down.URL, ReasonUnreachable},
		{"slow", slow.URL, ReasonTimeout},
		{"stalls", stalls.URL, ReasonTimeout},
		{"garbage", servePayload(t, []byte("<html>hello</html>")).URL, ReasonMalformed},
		{"non-members", servePayload(t, mustTransfer(t, nonMembers, snap)).URL, ReasonForged},
		{"impostors", servePayload(t, mustTransfer(t, impostors, snap)).URL, ReasonForged},
		{"too-few", servePayload(t, mustTransfer(t, tooFew, snap)).URL, ReasonForged},
		{"tampered", servePayload(t, mustTransfer(t, good, tampered)).URL, ReasonBadSnapshot},
		{"swapped-snapshot", servePayload(t, mustTransfer(t, good, otherSnap)).URL, ReasonMismatch},
		{"swapped-cert", servePayload(t, mustTransfer(t, otherCert, snap)).URL, ReasonMismatch},
		{"honest", honestPeer(t, good, snap).URL, ""},
	}
	cfg := fetchConfig(t)
	cfg.Timeout = 300 * time.Millisecond
	for _, p := range peers {
		cfg.Peers = append(cfg.Peers, Peer{ID: p.id, URL: p.url})
	}
	cert, got, rejected, err := Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Fetch: %v (rejections %v)", err, rejected)
	}
	if !cert.Statement.Equal(good.Statement) || string(got) != string(snap) {
		t.Fatalf("Fetch returned %s", cert.Statement)
	}
	if len(rejected) != len(peers)-1 {
		t.Fatalf("%d rejections, want %d: %v", len(rejected), len(peers)-1, rejected)
	}
	for i, r := range rejected {
		if r.Peer != peers[i].id || r.Reason != peers[i].reason || r.Err == nil {
			t.Errorf("rejection %d: %v, want peer %s reason %q", i, r, peers[i].id, peers[i].reason)
		}
	}

	// Without the honest peer nothing is returned.
	cfg.Peers = cfg.Peers[3 : len(cfg.Peers)-1]
	cert, got, rejected, err = Fetch(context.Background(), cfg)
	if cert != nil || got != nil || !errors.Is(err, ErrNoTransfer) || len(rejected) != len(cfg.Peers) {
		t.Fatalf("no honest peer: %v %d bytes %v, %d rejections", cert, len(got), err, len(rejected))
	}
}

// TestFetchChecksIndexWantAndSize: a checkpoint below MinIndex, one the
// caller's Want refuses, or one above MaxBytes is rejected.
func TestFetchChecksIndexWantAndSize(t *testing.T) {
	good, snap := stableCheckpoint(t, 1, 10, 10, 3)
	honest := Peer{ID: "honest", URL: honestPeer(t, good, snap).URL}
	stale := Peer{ID: "stale", URL: servePayload(t, mustTransfer(t, good, snap)).URL} // ignores min_index

	cfg := fetchConfig(t, honest, stale)
	cfg.MinIndex = 11
	_, _, rejected, err := Fetch(context.Background(), cfg)
	if !errors.Is(err, ErrNoTransfer) || len(rejected) != 2 || rejected[0].Reason != ReasonNotFound || rejected[1].Reason != ReasonStale {
		t.Fatalf("MinIndex above the stored checkpoint: %v %v", err, rejected)
	}
	if !strings.Contains(rejected[0].Err.Error(), "below min_index 11") {
		t.Errorf("404 text not passed on: %v", rejected[0].Err)
	}

	cfg = fetchConfig(t, honest)
	cfg.Want = func(c *Certificate) error {
		if c.Statement.Kind != KindHandoff {
			return fmt.Errorf("want a handoff, got a %s", c.Statement.Kind)
		}
		return nil
	}
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || rejected[0].Reason != ReasonUnwanted {
		t.Fatalf("Want: %v %v", err, rejected)
	}

	cfg = fetchConfig(t, honest)
	cfg.MaxBytes = int64(len(snap)) // the body is larger than the snapshot alone
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || rejected[0].Reason != ReasonTooLarge {
		t.Fatalf("MaxBytes: %v %v", err, rejected)
	}
}

func TestFetchStopsWhenContextEnds(t *testing.T) {
	good, snap := stableCheckpoint(t, 1, 10, 10, 3)
	ctx, cancel := context.WithCancel(context.Background())
	blocks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
	}))
	t.Cleanup(blocks.Close)
	cfg := fetchConfig(t, Peer{ID: "blocks", URL: blocks.URL}, Peer{ID: "honest", URL: honestPeer(t, good, snap).URL})
	cert, got, _, err := Fetch(ctx, cfg)
	if cert != nil || got != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch after cancel: %v %v", cert, err)
	}
}

func TestFetchConfigErrors(t *testing.T) {
	cfg := fetchConfig(t, Peer{ID: "x", URL: "http://127.0.0.1:1"})
	for name, f := range map[string]func(*FetchConfig){
		"no committee": func(c *FetchConfig) { c.Committee = nil },
		"no info":      func(c *FetchConfig) { c.Info = nil },
		"no peers":     func(c *FetchConfig) { c.Peers = nil },
		"negative":     func(c *FetchConfig) { c.Timeout = -1 },
	} {
		c := cfg
		f(&c)
		if _, _, _, err := Fetch(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHandler(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	srv := httptest.NewServer(NewHandler(s, 0))
	t.Cleanup(srv.Close)
	get := func(method, query string) (int, []byte) {
		req, _ := http.NewRequest(method, srv.URL+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get(http.MethodGet, ""); code != http.StatusNotFound {
		t.Fatalf("empty store: %d", code)
	}
	c, snap := stableCheckpoint(t, 1, 10, 10, 3)
	if err := s.Save(c, snap); err != nil {
		t.Fatal(err)
	}
	code, body := get(http.MethodGet, "?min_index=10")
	if code != http.StatusOK || string(body) != string(mustTransfer(t, c, snap)) {
		t.Fatalf("GET: %d, %d bytes", code, len(body))
	}
	for q, want := range map[string]int{"?min_index=11": 404, "?min_index=-1": 400, "?min_index=x": 400} {
		if code, _ := get(http.MethodGet, q); code != want {
			t.Errorf("%s: %d, want %d", q, code, want)
		}
	}
	if code, _ := get(http.MethodPost, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
	small := httptest.NewServer(NewHandler(s, 100))
	t.Cleanup(small.Close)
	resp, err := http.Get(small.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("above maxBytes: %d", resp.StatusCode)
	}
}
