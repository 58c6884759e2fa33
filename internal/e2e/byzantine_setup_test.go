package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"io"

	"github.com/tandem-consensus/tandem/internal/devcluster"
)

// byzantineSetup is a 4-node cluster whose node4 (byzantineNode) runs the
// binary built with -tags byzantine and is told a behaviour through
// TANDEM_BYZANTINE; the other nodes run the normal binary, which has no
// byzantine code at all. Nothing is started by newByzantineSetup.
type byzantineSetup struct {
	layout  *devcluster.Layout
	c       *cluster
	byz     *devcluster.Cluster // node4's processes
	watch   *actWatch           // node4's log, and its first act
	correct []string
}

// newByzantineSetup lays out the cluster in mode with extra config (in
// cft mode initial_members also list the member keys, which the detector
// needs), and makes node4 run byzBinary with TANDEM_BYZANTINE=behaviour
// and env. watchFor is the log text of node4's first act.
func newByzantineSetup(t *testing.T, byzBinary, mode string, extra map[string]any, behaviour, watchFor string, env ...string) *byzantineSetup {
	t.Helper()
	layout, err := devcluster.Prepare(devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: mode, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	if mode == "cft" {
		listMemberKeys(t, layout)
	}
	out := processLog()
	c := newCluster(t, layout, out)
	watch := newActWatch(out, watchFor)
	byz := devcluster.New(layout, byzBinary, watch)
	t.Cleanup(func() { _ = byz.StopAll(5 * time.Second) })
	if err := byz.SetEnv(byzantineNode, append([]string{"TANDEM_BYZANTINE=" + behaviour}, env...)...); err != nil {
		t.Fatal(err)
	}
	return &byzantineSetup{layout: layout, c: c, byz: byz, watch: watch, correct: without(c.ids(), byzantineNode)}
}

// startCorrect starts every node but node4.
func (s *byzantineSetup) startCorrect(t *testing.T) {
	t.Helper()
	for _, id := range s.correct {
		if err := s.c.Start(id); err != nil {
			t.Fatal(err)
		}
	}
}

// startByzantine starts node4.
func (s *byzantineSetup) startByzantine(t *testing.T) {
	t.Helper()
	if err := s.byz.Start(byzantineNode); err != nil {
		t.Fatal(err)
	}
}

// launch starts the correct nodes, then node4, waits until every node is
// ready and returns the handles to check the cluster with; the admin
// HTTP client's idle connections are closed at cleanup.
func (s *byzantineSetup) launch(t *testing.T) *byzantineRun {
	t.Helper()
	s.startCorrect(t)
	s.startByzantine(t)
	s.c.waitReady(30 * time.Second)
	b := s.run(t)
	t.Cleanup(b.adm.http.CloseIdleConnections)
	return b
}

// endpoints returns the correct nodes' API endpoints.
func (s *byzantineSetup) endpoints() []string {
	var eps []string
	for _, id := range s.correct {
		eps = append(eps, s.c.endpoint(id))
	}
	return eps
}

// admin returns an admin-signed HTTP client of the cluster's API; the
// caller closes its idle connections.
func (s *byzantineSetup) admin() *adminHTTP {
	return &adminHTTP{key: s.c.admin, http: &http.Client{Transport: &http.Transport{TLSClientConfig: s.c.tls}, Timeout: 3 * time.Second}}
}

// equivocating is the log text of an equivocation by node4.
const equivocating = "byzantine: equivocating"

// actWatch passes the byzantine node's log through and records the time
// of its first line containing marker (the log's own time= field).
type actWatch struct {
	lineSplitter
	marker  string
	firstAt time.Time // guarded by lineSplitter.mu
}

func newActWatch(out io.Writer, marker string) *actWatch {
	w := &actWatch{marker: marker}
	w.lineSplitter = lineSplitter{out: out, line: func(l string) {
		if w.firstAt.IsZero() && strings.Contains(l, w.marker) {
			w.firstAt = logTime(l)
		}
	}}
	return w
}

// lineSplitter passes what is written on to out and hands each complete
// line to line, under mu.
type lineSplitter struct {
	out  io.Writer
	line func(string)

	mu  sync.Mutex
	buf []byte
}

func (w *lineSplitter) Write(p []byte) (int, error) {
	_, _ = w.out.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.line(line)
	}
	return len(p), nil
}

func (w *actWatch) first() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstAt
}
