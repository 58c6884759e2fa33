package devcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cluster runs one `tandem serve` process per node of a Layout.
type Cluster struct {
	layout *Layout
	binary string
	logOut io.Writer

	mu    sync.Mutex
	procs map[string]*proc
	env   map[string][]string // extra environment per node
	outMu sync.Mutex          // serialises prefixed log lines
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is drained
	err  error
}

// New prepares a runner; binary is the tandem executable, logOut receives
// every node's output, each line prefixed with "[nodeN] ".
func New(layout *Layout, binary string, logOut io.Writer) *Cluster {
	return &Cluster{layout: layout, binary: binary, logOut: logOut, procs: map[string]*proc{}, env: map[string][]string{}}
}

// SetEnv sets extra environment variables ("KEY=value") for the node's
// process from its next Start on; they override the inherited environment.
func (c *Cluster) SetEnv(id string, env ...string) error {
	if _, err := c.node(id); err != nil {
		return err
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("environment of %s: %q is not KEY=value", id, kv)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.env[id] = slices.Clone(env)
	return nil
}

// Layout returns the cluster's layout.
func (c *Cluster) Layout() *Layout { return c.layout }

// StartAll starts every node.
func (c *Cluster) StartAll() error {
	for _, n := range c.layout.Nodes {
		if err := c.Start(n.ID); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) node(id string) (NodeLayout, error) {
	for _, n := range c.layout.Nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return NodeLayout{}, fmt.Errorf("no node %q in the layout", id)
}

// Start starts the node's process; it is an error if it is running.
func (c *Cluster) Start(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.procs[id]; ok {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running (pid %d)", id, p.cmd.Process.Pid)
		}
	}
	cmd := exec.Command(c.binary, "serve", "--config", n.ConfigPath)
	// Later entries win over inherited ones of the same key.
	cmd.Env = append(append(os.Environ(), "TANDEM_LOG_FORMAT=text"), c.env[id]...)
	// Own process group: Ctrl-C at the terminal reaches only `tandem dev`,
	// which then stops the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	c.procs[id] = p
	go func() {
		c.copyPrefixed(id, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return nil
}

func (c *Cluster) copyPrefixed(id string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := "[" + id + "] "
	for sc.Scan() {
		c.outMu.Lock()
		_, _ = fmt.Fprintln(c.logOut, prefix+sc.Text())
		c.outMu.Unlock()
	}
}

// Pid returns the node's process id, or 0 if it is not running.
func (c *Cluster) Pid(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[id]
	if !ok {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Kill sends SIGKILL (a crash) and waits for the process to exit.
func (c *Cluster) Kill(id string) error { return c.signal(id, syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM and waits up to timeout, then SIGKILL.
func (c *Cluster) Stop(id string, timeout time.Duration) error {
	err := c.signal(id, syscall.SIGTERM, timeout)
	if errors.Is(err, context.DeadlineExceeded) {
		return c.Kill(id)
	}
	return err
}

func (c *Cluster) signal(id string, sig syscall.Signal, wait time.Duration) error {
	c.mu.Lock()
	p, ok := c.procs[id]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s to %s: %w", sig, id, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("%s did not exit within %s after %s: %w", id, wait, sig, context.DeadlineExceeded)
	}
}

// StopAll stops every node (SIGTERM, then SIGKILL after timeout).
func (c *Cluster) StopAll(timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.layout.Nodes))
	for i, n := range c.layout.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Stop(n.ID, timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Exited reports whether the node's process has exited, and its error.
func (c *Cluster) Exited(id string) (bool, error) {
	c.mu.Lock()
	p, ok := c.procs[id]
	c.mu.Unlock()
	if !ok {
		return true, nil
	}
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}
