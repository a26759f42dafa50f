// Package hostcmd is the one way cosa runs a program on the host.
//
// Every command runs under a context (cancelling it kills the command, and
// its process group when it has one), dies with cosa (Pdeathsig SIGKILL),
// can echo its output to a log, and keeps the last lines of its stderr for
// the error it returns, a *Error that names the command.
package hostcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTailLines is how many stderr lines an Error keeps when
// Cmd.TailLines is zero.
const DefaultTailLines = 20

// maxLineBytes bounds one kept line, so a command writing megabytes without
// a newline cannot make the tail large.
const maxLineBytes = 1024

// waitDelay bounds how long Wait waits for output pipes after the command
// exited or was cancelled: a grandchild that inherited stdout and lives on
// (a daemon, or one that ignores the kill) would otherwise hold Wait open.
const waitDelay = 5 * time.Second

// Cmd is a command to run. Set the fields before Run, Output or Start.
type Cmd struct {
	Name string
	Args []string
	Dir  string
	// Env is added to cosa's environment (later entries win); with
	// CleanEnv it is the whole environment.
	Env      []string
	CleanEnv bool
	Stdin    io.Reader
	// Stdout receives the command's stdout. An *os.File is handed to the
	// command as it is (no copying) when Echo is nil and Output is not
	// used.
	Stdout io.Writer
	// Stderr also receives the command's stderr (it is always tailed).
	Stderr io.Writer
	// Echo receives both stdout and stderr as they arrive: a log.
	Echo io.Writer
	// TailLines is how many stderr lines the error keeps (DefaultTailLines
	// when zero).
	TailLines int
	// Display, if set, is how errors name the command instead of its
	// whole command line (which may be long, or hold temporary paths).
	Display string
	// OwnGroup runs the command in a new process group, and cancelling
	// kills the whole group: for commands that start helpers of their own.
	OwnGroup bool

	cmd   *exec.Cmd
	tail  *Tail
	ctx   context.Context
	after []io.Closer // closed once the command has started
}

// Command returns a Cmd for name with args.
func Command(name string, args ...string) *Cmd {
	return &Cmd{Name: name, Args: args}
}

// Run runs name with args and returns a *Error if it fails.
func Run(ctx context.Context, name string, args ...string) error {
	return Command(name, args...).Run(ctx)
}

// Output runs name with args and returns its stdout.
func Output(ctx context.Context, name string, args ...string) (string, error) {
	return Command(name, args...).Output(ctx)
}

// Run starts the command and waits for it.
func (c *Cmd) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its stdout (also written to Stdout
// if that is set).
func (c *Cmd) Output(ctx context.Context) (string, error) {
	var out bytes.Buffer
	if c.Stdout != nil {
		c.Stdout = io.MultiWriter(&out, c.Stdout)
	} else {
		c.Stdout = &out
	}
	err := c.Run(ctx)
	return out.String(), err
}

// StdoutPipe returns a pipe that carries the command's stdout once it has
// started; read it to EOF before calling Wait.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdout = w
	c.after = append(c.after, w)
	return r, nil
}

// Start starts the command; Wait waits for it.
func (c *Cmd) Start(ctx context.Context) error {
	if c.cmd != nil {
		return errors.New("hostcmd: " + c.Name + " already started")
	}
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	if c.CleanEnv {
		cmd.Env = append([]string{}, c.Env...)
	} else if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdin = c.Stdin
	n := c.TailLines
	if n <= 0 {
		n = DefaultTailLines
	}
	c.tail = NewTail(n)
	// One lock for both streams: Stdout, Stderr and Echo may be the same
	// writer, and the two streams are copied by two goroutines.
	var mu sync.Mutex
	stdout := c.Stdout
	if c.Echo != nil {
		stdout = joinWriters(stdout, c.Echo)
	}
	if _, isFile := stdout.(*os.File); isFile || stdout == nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = &lockedWriter{mu: &mu, w: stdout}
	}
	cmd.Stderr = &lockedWriter{mu: &mu, w: joinWriters(c.tail, c.Stderr, c.Echo)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: c.OwnGroup}
	cmd.WaitDelay = waitDelay
	if c.OwnGroup {
		cmd.Cancel = func() error {
			// With Setpgid the command leads a group whose id is its pid.
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	c.cmd, c.ctx = cmd, ctx
	err := StartExec(cmd)
	for _, cl := range c.after {
		cl.Close()
	}
	c.after = nil
	if err != nil {
		return c.wrap(err)
	}
	return nil
}

// Wait waits for a started command and returns a *Error if it failed.
func (c *Cmd) Wait() error {
	if c.cmd == nil {
		return errors.New("hostcmd: " + c.Name + " not started")
	}
	if err := c.cmd.Wait(); err != nil {
		return c.wrap(err)
	}
	return nil
}

// Pid is the process id of the started command.
func (c *Cmd) Pid() int { return c.cmd.Process.Pid }

func (c *Cmd) wrap(err error) *Error {
	e := &Error{Name: c.Name, Args: c.Args, Display: c.Display, ExitCode: -1, Stderr: c.tail.String(), Err: err}
	if ps := c.cmd.ProcessState; ps != nil {
		e.ExitCode = ps.ExitCode()
	}
	// A command killed because ctx ended failed because of ctx: say so,
	// and let errors.Is see context.Canceled or DeadlineExceeded.
	if c.ctx != nil && c.ctx.Err() != nil {
		e.Err = c.ctx.Err()
	}
	return e
}

// StartExec starts an exec.Cmd the way every host command starts: with
// Pdeathsig SIGKILL, from a thread that lives as long as cosa. It is for
// the one caller that needs what Cmd does not offer (pkg/sandbox: extra
// files, namespaces and id maps); everything else uses Cmd.
//
// Pdeathsig fires when the thread that forked the child exits, not the
// process. Go ends a thread when a goroutine locked to it (LockOSThread)
// returns, so a command started from such a goroutine would be killed
// when it returns. A new goroutine is never locked and runs on a thread
// Go keeps, so the fork happens there.
func StartExec(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = waitDelay
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Start() }()
	return <-errc
}

// Error is a host command that failed: it could not start, exited non-zero,
// was killed, or was cancelled.
type Error struct {
	Name     string
	Args     []string
	ExitCode int    // -1 when it did not exit normally
	Stderr   string // the last lines of its stderr
	Err      error  // *exec.ExitError, a start error, or ctx's error
	Display  string // Cmd.Display
}

// maxCmdline bounds how much of the command line Error prints.
const maxCmdline = 200

// Error is one line: the command, why it failed, and its last stderr line.
func (e *Error) Error() string {
	cl := e.Display
	if cl == "" {
		cl = strings.Join(append([]string{e.Name}, e.Args...), " ")
	}
	if len(cl) > maxCmdline {
		cl = cl[:maxCmdline] + "..."
	}
	msg := fmt.Sprintf("%s: %v", cl, e.Err)
	if last := e.LastLine(); last != "" {
		msg += ": " + last
	}
	return msg
}

// LastLine is the last non-blank line of the stderr tail.
func (e *Error) LastLine() string {
	lines := strings.Split(strings.TrimSpace(e.Stderr), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (e *Error) Unwrap() error { return e.Err }

// Tail is an io.Writer that keeps the last lines written to it, each at
// most maxLineBytes long.
type Tail struct {
	max   int
	lines []string
	part  []byte
}

// NewTail keeps the last n lines.
func NewTail(n int) *Tail { return &Tail{max: max(n, 1)} }

func (t *Tail) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLineBytes - len(t.part); room > 0 {
			t.part = append(t.part, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		t.push(string(t.part))
		t.part = t.part[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *Tail) push(line string) {
	if len(t.lines) == t.max {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:t.max-1]
	}
	t.lines = append(t.lines, line)
}

// String is the kept lines, the unfinished last one included.
func (t *Tail) String() string {
	l := t.lines
	if len(t.part) > 0 {
		l = append(l[:len(l):len(l)], string(t.part))
		if len(l) > t.max {
			l = l[1:]
		}
	}
	return strings.Join(l, "\n")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// joinWriters is io.MultiWriter without the nil writers (nil for none).
// Only the first writer's errors count: the others are logs, and a log
// that cannot be written must not fail the command.
func joinWriters(ws ...io.Writer) io.Writer {
	var keep []io.Writer
	for _, w := range ws {
		if w != nil {
			keep = append(keep, w)
		}
	}
	switch len(keep) {
	case 0:
		return nil
	case 1:
		return keep[0]
	}
	return multi(keep)
}

type multi []io.Writer

func (m multi) Write(p []byte) (int, error) {
	n, err := m[0].Write(p)
	for _, w := range m[1:] {
		w.Write(p)
	}
	return n, err
}
