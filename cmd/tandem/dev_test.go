package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/internal/devcluster"
)

func TestByzantineFlagNeedsTaggedBuild(t *testing.T) {
	_, err := parseByzantine([]string{"node3=equivocate"}, 4, false)
	if err == nil || !strings.Contains(err.Error(), "-tags byzantine") {
		t.Fatalf("untagged build: %v, want an error saying to build with -tags byzantine", err)
	}
	got, err := parseByzantine(nil, 4, false)
	if err != nil || got != nil {
		t.Fatalf("no --byzantine in an untagged build: %v %v", got, err)
	}
}

func TestByzantineFlagParses(t *testing.T) {
	got, err := parseByzantine([]string{"node3=equivocate"}, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(got["node3"], []string{"equivocate"}) {
		t.Fatalf("got %v", got)
	}
	got, err = parseByzantine([]string{"node2=equivocate", "node7=equivocate,equivocate"}, 7, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got["node7"], []string{"equivocate"}) {
		t.Fatalf("got %v", got)
	}
}

func TestByzantineFlagRejects(t *testing.T) {
	for _, c := range []struct {
		specs []string
		n     int
		want  string
	}{
		{[]string{"node3"}, 4, "want node=behaviour"},
		{[]string{"=equivocate"}, 4, "want node=behaviour"},
		{[]string{"node3="}, 4, "want node=behaviour"},
		{[]string{"node5=equivocate"}, 4, `no node "node5" in a 4-node cluster`},
		{[]string{"node0=equivocate"}, 4, `no node "node0"`},
		{[]string{"node03=equivocate"}, 4, `no node "node03"`},
		{[]string{"n3=equivocate"}, 4, `no node "n3"`},
		{[]string{"node3=lie"}, 4, `unknown behaviour "lie" (known: equivocate)`},
		{[]string{"node3=equivocate,"}, 4, `unknown behaviour ""`},
		{[]string{"node3=equivocate", "node3=equivocate"}, 4, "node3 is given twice"},
		{[]string{"node1=equivocate", "node2=equivocate"}, 4, "too many"},
		{[]string{"node1=equivocate", "node2=equivocate"}, 6, "at most 1"},
		{[]string{"node1=equivocate"}, 3, "at most 0"},
	} {
		_, err := parseByzantine(c.specs, c.n, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v on %d nodes: %v, want %q", c.specs, c.n, err, c.want)
		}
	}
}

// devDefaults returns options as the flags set them by default.
func devDefaults(dir string) *devOptions {
	return &devOptions{nodes: 4, dir: dir, basePort: 7100, mode: "cft", rate: 10}
}

func TestDevByzantineValidation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	o := devDefaults(dir)
	o.byzantineSpecs = []string{"node3=equivocate"}
	err := o.validate()
	if !byzantineBuild {
		if err == nil || !strings.Contains(err.Error(), "-tags byzantine") {
			t.Fatalf("untagged build: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "auto" {
		t.Fatalf("--byzantine without --mode: mode %q, want auto", o.mode)
	}

	o = devDefaults(dir)
	o.byzantineSpecs, o.modeSet = []string{"node3=equivocate"}, true
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "needs --mode auto") {
		t.Fatalf("--mode cft --byzantine: %v", err)
	}
	o = devDefaults(dir)
	o.byzantineSpecs, o.modeSet, o.mode = []string{"node3=equivocate"}, true, "bft"
	if err := o.validate(); err != nil || o.mode != "bft" {
		t.Fatalf("--mode bft --byzantine: %v, mode %s", err, o.mode)
	}
	o = devDefaults(dir)
	o.byzantineSpecs, o.rate = []string{"node3=equivocate"}, 0
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Fatalf("--rate 0: %v", err)
	}

	// A directory with a cluster in it needs --fresh.
	if _, err := devcluster.Prepare(devcluster.Options{Dir: dir, Nodes: 4, Mode: "auto"}); err != nil {
		t.Fatal(err)
	}
	o = devDefaults(dir)
	o.byzantineSpecs = []string{"node3=equivocate"}
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("existing cluster: %v", err)
	}
	o.fresh = true
	if err := o.validate(); err != nil {
		t.Fatalf("existing cluster with --fresh: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("validate changed the directory: %v", err)
	}
}

func TestDevValidation(t *testing.T) {
	for _, c := range []struct {
		mut  func(*devOptions)
		want string
	}{
		{func(o *devOptions) { o.nodes = 0 }, "--nodes"},
		{func(o *devOptions) { o.nodes = 10 }, "--nodes"},
		{func(o *devOptions) { o.basePort = 80 }, "--base-port"},
		{func(o *devOptions) { o.mode = "fast" }, "--mode"},
		{func(o *devOptions) { o.mode, o.nodes = "auto", 3 }, "too few"},
	} {
		o := devDefaults(t.TempDir())
		c.mut(o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
	o := devDefaults(t.TempDir())
	o.basePort = 0
	if err := o.validate(); err != nil {
		t.Fatalf("--base-port 0 (ephemeral): %v", err)
	}
}
