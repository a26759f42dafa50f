package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shortSocketPath returns a socket path in a fresh short directory: t.TempDir
// paths embed the test name and can exceed the 108-byte unix socket limit.
func shortSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// ---- fake server ----

type fakeConn struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
}

type fakeCmd struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func (c *fakeConn) send(format string, a ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format+"\n", a...); err != nil {
		c.t.Errorf("fake server write: %v", err)
	}
}

func (c *fakeConn) recv(want string) fakeCmd {
	c.t.Helper()
	var cmd fakeCmd
	if err := c.dec.Decode(&cmd); err != nil {
		c.t.Errorf("fake server: reading %s: %v", want, err)
		return cmd
	}
	if cmd.Execute != want {
		c.t.Errorf("fake server: got command %q, want %q", cmd.Execute, want)
	}
	return cmd
}

func (c *fakeConn) reply(cmd fakeCmd, ret string) {
	c.t.Helper()
	c.send("%s", replyLine(cmd, ret))
}

func replyLine(cmd fakeCmd, ret string) string {
	if len(cmd.ID) == 0 { // go-qemu sends no ids
		return fmt.Sprintf(`{"return": %s}`, ret)
	}
	return fmt.Sprintf(`{"return": %s, "id": %s}`, ret, cmd.ID)
}

// fakeQMP serves one connection on a fresh socket, sending the greeting,
// accepting qmp_capabilities and then running script. The socket is created
// only when start is called.
func fakeQMP(t *testing.T, script func(c *fakeConn)) (path string, start func()) {
	t.Helper()
	return fakeQMPAfterCaps(t, "", script)
}

// fakeQMPAfterCaps is fakeQMP, also sending afterCaps (whole lines) in the
// same write as the qmp_capabilities reply, as a busy QEMU may.
func fakeQMPAfterCaps(t *testing.T, afterCaps string, script func(c *fakeConn)) (path string, start func()) {
	t.Helper()
	path = shortSocketPath(t)
	done := make(chan struct{})
	var (
		once sync.Once
		ln   net.Listener
	)
	start = func() {
		once.Do(func() {
			var err error
			ln, err = net.Listen("unix", path)
			if err != nil {
				t.Errorf("listen: %v", err)
				close(done)
				return
			}
			go func() {
				defer close(done)
				conn, err := ln.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("accept: %v", err)
					}
					return
				}
				defer conn.Close()
				c := &fakeConn{t: t, conn: conn, dec: json.NewDecoder(conn)}
				c.send(`{"QMP": {"version": {"qemu": {"micro": 3, "minor": 2, "major": 9}, "package": "fake"}, "capabilities": ["oob"]}}`)
				caps := c.recv("qmp_capabilities")
				if afterCaps == "" {
					c.reply(caps, `{}`)
				} else {
					c.send("%s\n%s", replyLine(caps, `{}`), afterCaps)
				}
				script(c)
			}()
		})
	}
	t.Cleanup(func() {
		once.Do(func() { close(done) }) // never started
		if ln != nil {
			ln.Close() // unblocks an Accept nobody connected to
		}
		<-done
	})
	return path, start
}

func dialFake(t *testing.T, ctx context.Context, script func(c *fakeConn)) *QMP {
	t.Helper()
	path, start := fakeQMP(t, script)
	start()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQMPFakeEventBetweenCommandAndReply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := dialFake(t, ctx, func(c *fakeConn) {
		cmd := c.recv("query-status")
		c.send(`{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "STOP", "data": {"x": 1}}`)
		c.reply(cmd, `{"status": "paused", "singlestep": false, "running": false}`)
		c.recv("query-block")
		// Hang up with query-block unanswered.
	})

	if maj, min, mic := q.Version(); maj != 9 || min != 2 || mic != 3 {
		t.Errorf("Version() = %d.%d.%d, want 9.2.3", maj, min, mic)
	}
	st, err := q.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Status != "paused" {
		t.Errorf("QueryStatus = %+v, want paused", st)
	}

	wantTime := time.Unix(1700000000, 123456000)
	check := func(how string, ev Event) {
		t.Helper()
		if ev.Name != "STOP" || !ev.Time.Equal(wantTime) || string(ev.Data) != `{"x": 1}` {
			t.Errorf("%s: got %+v (data %s), want STOP at %v with data {\"x\": 1}", how, ev, ev.Data, wantTime)
		}
	}
	// The reader handled the event before the reply, so it is already queued.
	select {
	case ev := <-q.Events():
		check("Events()", ev)
	default:
		t.Fatal("event not on Events() although its successor reply was delivered")
	}
	ev, err := q.WaitEvent(ctx, "STOP")
	if err != nil {
		t.Fatal(err)
	}
	check("WaitEvent", ev)

	if err := q.Execute(ctx, "query-block", nil, nil); err != ErrClosed {
		t.Fatalf("pending command when the server hung up: err = %v, want ErrClosed", err)
	}
	if err := q.Execute(ctx, "query-status", nil, nil); err != ErrClosed {
		t.Errorf("command after hang-up: err = %v, want ErrClosed", err)
	}
	if _, err := q.WaitEvent(ctx, "STOP"); err != ErrClosed {
		t.Errorf("WaitEvent after hang-up: err = %v, want ErrClosed", err)
	}
	if _, ok := <-q.Events(); ok {
		t.Error("Events() still open after hang-up")
	}
	if err := q.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestQMPFakeDispatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const flood = eventBuffer + 36
	q := dialFake(t, ctx, func(c *fakeConn) {
		// Two commands in flight, answered in reverse order.
		a, b := c.recv("echo"), c.recv("echo")
		c.reply(b, string(b.Arguments))
		c.reply(a, string(a.Arguments))

		c.send(`{"id": %s, "error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}`, c.recv("bogus").ID)

		cmd := c.recv("flood")
		for i := range flood {
			c.send(`{"timestamp": {"seconds": 1, "microseconds": %d}, "event": "TICK", "data": {"n": %d}}`, i, i)
		}
		c.reply(cmd, `{}`)

		cmd = c.recv("trigger")
		c.send(`{"timestamp": {"seconds": 2, "microseconds": 0}, "event": "RESET"}`)
		c.reply(cmd, `{}`)

		c.recv("quit")
		// Hang up without replying, as QEMU may.
	})

	var wg sync.WaitGroup
	for _, word := range []string{"left", "right"} {
		wg.Go(func() {
			var got struct{ Word string }
			if err := q.Execute(ctx, "echo", map[string]string{"word": word}, &got); err != nil {
				t.Errorf("echo %s: %v", word, err)
			} else if got.Word != word {
				t.Errorf("echo %s: got %q (reply for the other call)", word, got.Word)
			}
		})
	}
	wg.Wait()

	err := q.Execute(ctx, "bogus", nil, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "bogus" {
		t.Errorf("bogus: err = %#v, want *QMPError CommandNotFound", err)
	} else if want := "qmp bogus: CommandNotFound: The command bogus has not been found"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}

	// Nobody reads Events(): the reader must drop, not block, and still
	// deliver the reply that follows the flood.
	if err := q.Execute(ctx, "flood", nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := q.DroppedEvents(); n != flood-eventBuffer {
		t.Errorf("DroppedEvents() = %d, want %d", n, flood-eventBuffer)
	}
	// WaitEvent still sees them, oldest first.
	for i := range 3 {
		ev, err := q.WaitEvent(ctx, "TICK")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"n": %d}`, i); string(ev.Data) != want {
			t.Errorf("TICK %d: data %s, want %s", i, ev.Data, want)
		}
	}

	// A waiter may register before or after the event arrives; both work.
	got := make(chan error, 1)
	go func() {
		ev, err := q.WaitEvent(ctx, "RESET")
		if err == nil && (ev.Name != "RESET" || ev.Data != nil || !ev.Time.Equal(time.Unix(2, 0))) {
			err = fmt.Errorf("got %+v", ev)
		}
		got <- err
	}()
	if err := q.Execute(ctx, "trigger", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("WaitEvent(RESET): %v", err)
	}

	// A WaitEvent that gives up leaves no waiter behind to steal events.
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if _, err := q.WaitEvent(short, "NEVER"); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitEvent with cancelled ctx: %v", err)
	}
	q.mu.Lock()
	if len(q.waiters) != 0 {
		t.Errorf("%d waiters left registered", len(q.waiters))
	}
	q.mu.Unlock()

	if err := q.Quit(ctx); err != nil {
		t.Errorf("Quit with EOF instead of a reply: %v", err)
	}
	if err := q.Execute(ctx, "query-status", nil, nil); err != ErrClosed {
		t.Errorf("after Quit: err = %v, want ErrClosed", err)
	}
}

func TestQMPDialWaitsForSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path, start := fakeQMP(t, func(c *fakeConn) {
		c.reply(c.recv("query-status"), `{"status": "running", "running": true}`)
	})
	type result struct {
		q   *QMP
		err error
	}
	res := make(chan result, 1)
	go func() {
		q, err := DialQMP(ctx, path)
		res <- result{q, err}
	}()
	start() // the socket appears while DialQMP is (most likely) retrying
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.q.Close()
	if st, err := r.q.QueryStatus(ctx); err != nil || !st.Running {
		t.Errorf("QueryStatus = %+v, %v", st, err)
	}
}

func TestQMPDialGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := DialQMP(ctx, shortSocketPath(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialQMP on a socket that never appears: %v", err)
	}
	if _, err := DialQMP(context.Background(), "/"+string(bytes.Repeat([]byte("x"), 120))); err == nil {
		t.Error("DialQMP accepted an over-long socket path")
	}
}

// ---- real QEMU ----

type qemuProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{}
	err    error
}

func startQEMU(t *testing.T) (*qemuProc, string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install -y qemu-system-x86)")
	}
	sock := shortSocketPath(t)
	p := &qemuProc{exited: make(chan struct{})}
	p.cmd = exec.Command("qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill() // our own child, by PID
			<-p.exited
		}
	})
	return p, sock
}

func dialQEMU(t *testing.T, ctx context.Context) (*qemuProc, *QMP) {
	t.Helper()
	p, sock := startQEMU(t)
	// Stop retrying the moment QEMU dies, instead of at the deadline.
	dialCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-dialCtx.Done():
		}
	}()
	q, err := DialQMP(dialCtx, sock)
	if err != nil {
		select {
		case <-p.exited:
			t.Fatalf("QEMU exited (%v): %s", p.err, p.stderr.String())
		default:
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return p, q
}

func TestQMPWithQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, q := dialQEMU(t, ctx)

	t.Run("Version", func(t *testing.T) {
		maj, min, mic := q.Version()
		t.Logf("QEMU %d.%d.%d", maj, min, mic)
		if maj < 5 {
			t.Errorf("Version() = %d.%d.%d, want major >= 5", maj, min, mic)
		}
	})

	t.Run("QueryStatus", func(t *testing.T) {
		st, err := q.QueryStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running || st.Status != "running" {
			t.Errorf("QueryStatus = %+v, want running", st)
		}
	})

	t.Run("UnknownCommand", func(t *testing.T) {
		err := q.Execute(ctx, "no-such-command", nil, nil)
		var qe *QMPError
		if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "no-such-command" {
			t.Errorf("err = %v, want *QMPError with Class CommandNotFound", err)
		}
	})

	t.Run("BadArguments", func(t *testing.T) {
		err := q.Execute(ctx, "query-status", map[string]int{"bogus": 1}, nil)
		var qe *QMPError
		if !errors.As(err, &qe) || qe.Class != "GenericError" {
			t.Errorf("err = %v, want *QMPError with Class GenericError", err)
		}
	})

	t.Run("StopCont", func(t *testing.T) {
		if err := q.Execute(ctx, "stop", nil, nil); err != nil {
			t.Fatal(err)
		}
		st, err := q.QueryStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Running || st.Status != "paused" {
			t.Errorf("after stop: QueryStatus = %+v, want paused", st)
		}
		if ev, err := q.WaitEvent(ctx, "STOP"); err != nil {
			t.Fatal(err)
		} else if time.Since(ev.Time).Abs() > time.Minute {
			t.Errorf("STOP timestamp %v is not recent", ev.Time)
		}

		if err := q.Execute(ctx, "cont", nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := q.WaitEvent(ctx, "RESUME"); err != nil {
			t.Fatal(err)
		}
		if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
			t.Errorf("after cont: QueryStatus = %+v, %v", st, err)
		}
	})

	t.Run("SystemPowerdown", func(t *testing.T) {
		// -machine none has no ACPI, so nothing powers off, but QEMU
		// still reports the request.
		if err := q.SystemPowerdown(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := q.WaitEvent(ctx, "POWERDOWN"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		var mu sync.Mutex
		var ids []uint64
		q.writeMu.Lock()
		q.sendHook = func(id uint64, cmd string) {
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
		q.writeMu.Unlock()
		defer func() {
			q.writeMu.Lock()
			q.sendHook = nil
			q.writeMu.Unlock()
		}()

		const n = 20
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
					t.Errorf("QueryStatus = %+v, %v", st, err)
				}
			})
		}
		wg.Wait()

		mu.Lock()
		defer mu.Unlock()
		if len(ids) != n {
			t.Fatalf("%d commands sent, want %d", len(ids), n)
		}
		for i := 1; i < n; i++ {
			if ids[i] <= ids[i-1] {
				t.Errorf("ids not strictly increasing on the wire: %v", ids)
				break
			}
		}
		q.mu.Lock()
		if len(q.pending) != 0 {
			t.Errorf("%d replies still pending", len(q.pending))
		}
		q.mu.Unlock()
	})

	t.Run("ContextEndsWhileQEMUIsFrozen", func(t *testing.T) {
		// A stopped QEMU process reads nothing and answers nothing: the
		// command must give up at its deadline, and the reply QEMU sends
		// once it runs again must not reach the next command.
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
		start := time.Now()
		err := q.Execute(sctx, "stop", nil, nil)
		took := time.Since(start)
		scancel()
		if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("command to a frozen QEMU: err = %v, want context.DeadlineExceeded", err)
		}
		if took > time.Second {
			t.Errorf("command took %v to give up after a 100ms deadline", took)
		}
		// The abandoned stop still runs once QEMU resumes; this
		// query-status gets its own reply, not stop's.
		if st, err := q.QueryStatus(ctx); err != nil || st.Status != "paused" {
			t.Errorf("QueryStatus after the abandoned stop = %+v, %v", st, err)
		}
		if _, err := q.WaitEvent(ctx, "STOP"); err != nil {
			t.Fatal(err)
		}
		if err := q.Execute(ctx, "cont", nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := q.WaitEvent(ctx, "RESUME"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Quit", func(t *testing.T) {
		if err := q.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("QEMU exit: %v: %s", p.err, p.stderr.String())
			}
		case <-ctx.Done():
			t.Fatal("QEMU still running after quit")
		}
		if err := q.Execute(ctx, "query-status", nil, nil); err != ErrClosed {
			t.Errorf("after Quit: err = %v, want ErrClosed", err)
		}
		ev, err := q.WaitEvent(ctx, "SHUTDOWN")
		if err != nil {
			t.Fatalf("SHUTDOWN sent before QEMU exited: %v", err)
		}
		var data struct{ Reason string }
		if json.Unmarshal(ev.Data, &data); data.Reason != "host-qmp-quit" {
			t.Errorf("SHUTDOWN data %s, want reason host-qmp-quit", ev.Data)
		}
	})
}
