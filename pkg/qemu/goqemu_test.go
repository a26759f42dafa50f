package qemu

// Each test here runs one scenario twice: on go-qemu's qmp.SocketMonitor,
// asserting the defect that keeps pkg/qemu on its own QMP transport, and on
// QMP, asserting the behaviour we rely on. If a go-qemu test starts failing,
// go-qemu has changed: revisit the choice (see the QMP type's comment).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	goqemu "github.com/digitalocean/go-qemu/qemu"
	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// stallTime is how long a go-qemu call must stay blocked for a test to call
// it stuck. Nothing happens when a call hangs, so there is no event to wait
// for; a test only ever waits this long on the go-qemu side.
const stallTime = 300 * time.Millisecond

// stalled reports whether done stays open for stallTime.
func stalled(done <-chan struct{}) bool {
	select {
	case <-done:
		return false
	case <-time.After(stallTime):
		return true
	}
}

func dialGoQEMU(t *testing.T, path string) *qmp.SocketMonitor {
	t.Helper()
	mon, err := qmp.NewSocketMonitor("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Connect(); err != nil {
		t.Fatal(err)
	}
	return mon
}

// idField is the "id" member of a reply to cmd, or nothing when cmd had none.
func idField(cmd fakeCmd) string {
	if len(cmd.ID) == 0 {
		return ""
	}
	return fmt.Sprintf(`, "id": %s`, cmd.ID)
}

// replyMayFail is reply for a client that may have given up on the session
// and hung up already, as go-qemu does once its reader has failed.
func (c *fakeConn) replyMayFail(cmd fakeCmd, ret string) {
	fmt.Fprintln(c.conn, replyLine(cmd, ret))
}

const runningStatus = `{"status": "running", "singlestep": false, "running": true}`

func TestGoQEMUErrorReplyLosesClass(t *testing.T) {
	script := func(c *fakeConn) {
		cmd := c.recv("bogus")
		c.send(`{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}%s}`, idField(cmd))
		cmd = c.recv("quiet-failure")
		c.send(`{"error": {"class": "GenericError", "desc": ""}%s}`, idField(cmd))
	}

	t.Run("go-qemu", func(t *testing.T) {
		path, start := fakeQMP(t, script)
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		_, err := mon.Run([]byte(`{"execute":"bogus"}`))
		if err == nil || err.Error() != "The command bogus has not been found" || fmt.Sprintf("%T", err) != "*errors.errorString" {
			t.Errorf("go-qemu now reports an error reply as %T %v: revisit", err, err)
		}
		out, err := mon.Run([]byte(`{"execute":"quiet-failure"}`))
		if err != nil {
			t.Errorf("go-qemu now fails an error reply with an empty desc (%v): revisit", err)
		} else {
			t.Logf("go-qemu: error reply with empty desc returned as success: %s", out)
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := dialFake(t, ctx, script)
		var qe *QMPError
		if err := q.Execute(ctx, "bogus", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Desc != "The command bogus has not been found" {
			t.Errorf("bogus: err = %v, want *QMPError CommandNotFound", err)
		}
		// Through the go-qemu Monitor adapter, the class survives too.
		if _, err := q.Monitor(ctx).Run([]byte(`{"execute":"quiet-failure"}`)); !errors.As(err, &qe) || qe.Class != "GenericError" {
			t.Errorf("quiet-failure: err = %v, want *QMPError GenericError", err)
		}
	})
}

// big is longer than bufio.Scanner's default 64 KiB token limit.
var big = strings.Repeat("x", 100<<10)

func TestGoQEMULongReplyEndsSession(t *testing.T) {
	script := func(c *fakeConn) {
		c.reply(c.recv("big"), `"`+big+`"`)
		c.replyMayFail(c.recv("query-status"), runningStatus)
	}

	t.Run("go-qemu", func(t *testing.T) {
		path, start := fakeQMP(t, script)
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		if _, err := mon.Run([]byte(`{"execute":"big"}`)); !errors.Is(err, bufio.ErrTooLong) {
			t.Errorf("long reply: err = %v, want bufio.ErrTooLong (else go-qemu changed: revisit)", err)
		}
		// The socket is still open and the server answers, but nobody reads.
		if out, err := mon.Run([]byte(`{"execute":"query-status"}`)); err == nil {
			t.Errorf("go-qemu now survives a long reply (next reply %s): revisit", out)
		} else {
			t.Logf("go-qemu: next command after a long reply: %v", err)
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := dialFake(t, ctx, script)
		var s string
		if err := q.Execute(ctx, "big", nil, &s); err != nil || s != big {
			t.Errorf("big: %d bytes, %v; want %d bytes", len(s), err, len(big))
		}
		if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
			t.Errorf("QueryStatus after a long reply = %+v, %v", st, err)
		}
	})
}

func TestGoQEMULongEventFailsNextCommand(t *testing.T) {
	// The event comes while no command is in flight: only after the client
	// has its ping reply (pinged), so that go-qemu's reader does not
	// overwrite that reply under it (see TestGoQEMUReplyOverwritten).
	script := func(pinged <-chan struct{}) func(c *fakeConn) {
		return func(c *fakeConn) {
			c.reply(c.recv("ping"), `{}`)
			<-pinged
			c.send(`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "BIG", "data": {"s": "%s"}}`, big)
			c.replyMayFail(c.recv("query-status"), runningStatus)
		}
	}

	t.Run("go-qemu", func(t *testing.T) {
		pinged := make(chan struct{})
		path, start := fakeQMP(t, script(pinged))
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		_, err := mon.Run([]byte(`{"execute":"ping"}`))
		close(pinged)
		if err != nil {
			t.Fatal(err)
		}
		// The reader fails on the event and hands its error to the next
		// command to run, whatever QEMU replies to that.
		if _, err := mon.Run([]byte(`{"execute":"query-status"}`)); !errors.Is(err, bufio.ErrTooLong) {
			t.Errorf("command after a long event: err = %v, want bufio.ErrTooLong (else go-qemu changed: revisit)", err)
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pinged := make(chan struct{})
		q := dialFake(t, ctx, script(pinged))
		err := q.Execute(ctx, "ping", nil, nil)
		close(pinged)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
			t.Errorf("QueryStatus after a long event = %+v, %v", st, err)
		}
		ev, err := q.WaitEvent(ctx, "BIG")
		var data struct{ S string }
		if err != nil || json.Unmarshal(ev.Data, &data) != nil || data.S != big {
			t.Errorf("BIG event: %d bytes of data, %v", len(data.S), err)
		}
	})
}

// TestGoQEMUReplyOverwritten: go-qemu hands Run a slice of its reader's
// scan buffer and reads on, so a message that follows a reply closely can
// overwrite the reply while Run decodes it, or after Run has returned it.
// That is a data race, so this test runs only without the race detector.
func TestGoQEMUReplyOverwritten(t *testing.T) {
	const reply = `{"status": "paused", "running": false}`
	// The reply and, in the same write, an event longer than the scanner's
	// first 4 KiB buffer: the scanner moves the event's start over the reply
	// to make room for the rest.
	script := func(c *fakeConn) {
		cmd := c.recv("query-status")
		c.send("%s\n"+`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "PADDED", "data": {"s": "%s"}}`,
			replyLine(cmd, reply), strings.Repeat("p", 10<<10))
	}

	t.Run("go-qemu", func(t *testing.T) {
		if raceDetector {
			t.Skip("demonstrates a data race inside go-qemu")
		}
		path, start := fakeQMP(t, script)
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		events, err := mon.Events(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out, err := mon.Run([]byte(`{"execute":"query-status"}`))
		if e := <-events; e.Event != "PADDED" { // the reader has scanned it
			t.Fatalf("event %+v", e)
		}
		if want := `{"return": ` + reply + `}`; err == nil && string(out) == want {
			t.Error("go-qemu's reply survived the message after it: revisit")
		} else {
			t.Logf("go-qemu: Run returned %q, %v", out, err)
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := dialFake(t, ctx, script)
		var ret json.RawMessage
		if err := q.Execute(ctx, "query-status", nil, &ret); err != nil || string(ret) != reply {
			t.Errorf("query-status = %s, %v; want %s", ret, err, reply)
		}
		if _, err := q.WaitEvent(ctx, "PADDED"); err != nil {
			t.Error(err)
		}
		if string(ret) != reply {
			t.Errorf("reply changed to %s once the event was read", ret)
		}
	})
}

func TestGoQEMUEventAfterCapabilitiesLost(t *testing.T) {
	const ev = `{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "RTC_CHANGE", "data": {"offset": 1}}`
	script := func(c *fakeConn) { c.reply(c.recv("query-status"), runningStatus) }

	t.Run("go-qemu", func(t *testing.T) {
		path, start := fakeQMPAfterCaps(t, ev, script)
		start()
		mon := dialGoQEMU(t, path)
		events, err := mon.Events(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []string)
		go func() {
			var names []string
			for e := range events { // closed when the server hangs up
				names = append(names, e.Event)
			}
			got <- names
		}()
		if _, err := mon.Run([]byte(`{"execute":"query-status"}`)); err != nil {
			t.Fatal(err)
		}
		if names := <-got; len(names) != 0 {
			t.Errorf("go-qemu now delivers the event sent with the capabilities reply (%v): revisit", names)
		}
		mon.Disconnect()
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		path, start := fakeQMPAfterCaps(t, ev, script)
		start()
		q, err := DialQMP(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		if _, err := q.QueryStatus(ctx); err != nil {
			t.Fatal(err)
		}
		if e, err := q.WaitEvent(ctx, "RTC_CHANGE"); err != nil || string(e.Data) != `{"offset": 1}` {
			t.Errorf("WaitEvent(RTC_CHANGE) = %+v, %v", e, err)
		}
	})
}

func TestGoQEMUUnreadEventStallsConnection(t *testing.T) {
	script := func(c *fakeConn) {
		cmd := c.recv("stop")
		c.send(`{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}`)
		c.reply(cmd, `{}`)
	}

	t.Run("go-qemu", func(t *testing.T) {
		path, start := fakeQMP(t, script)
		start()
		mon := dialGoQEMU(t, path)
		events, err := mon.Events(context.Background()) // subscribed, not yet read
		if err != nil {
			t.Fatal(err)
		}
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			mon.Run([]byte(`{"execute":"stop"}`))
		}()
		if !stalled(ran) {
			t.Error("go-qemu now returns a reply that follows an unread event: revisit")
		}
		disconnected := make(chan struct{})
		go func() {
			defer close(disconnected)
			mon.Disconnect()
		}()
		if !stalled(disconnected) {
			t.Error("go-qemu's Disconnect now returns with an event unread: revisit")
		}
		for range events { // unblocks the reader, then Run and Disconnect
		}
		<-ran
		<-disconnected
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := dialFake(t, ctx, script)
		if _, err := q.Monitor(ctx).Events(ctx); err != nil { // subscribed, never read
			t.Fatal(err)
		}
		if err := q.Execute(ctx, "stop", nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := q.DroppedEvents(); n != 0 {
			t.Errorf("DroppedEvents() = %d with room for %d", n, eventBuffer)
		}
	})
}

func TestGoQEMUHangUpMidCommand(t *testing.T) {
	script := func(c *fakeConn) { c.recv("query-status") } // then hang up

	t.Run("go-qemu", func(t *testing.T) {
		path, start := fakeQMP(t, script)
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		_, err := mon.Run([]byte(`{"execute":"query-status"}`))
		var se *json.SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("go-qemu now reports a hang-up as %T %v: revisit", err, err)
		} else {
			t.Logf("go-qemu: hang-up mid-command reported as: %v", err)
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := dialFake(t, ctx, script)
		if err := q.Execute(ctx, "query-status", nil, nil); err != ErrClosed {
			t.Errorf("err = %v, want ErrClosed", err)
		}
	})
}

// silentServer accepts one connection on a fresh socket and never writes,
// like QEMU while another client holds its monitor.
func silentServer(t *testing.T) string {
	t.Helper()
	path := shortSocketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		ln.Close()
		if c, ok := <-accepted; ok {
			c.Close()
		}
	})
	return path
}

func TestGoQEMUSilentPeerBlocksConnect(t *testing.T) {
	t.Run("go-qemu", func(t *testing.T) {
		path := silentServer(t)
		mon, err := qmp.NewSocketMonitor("unix", path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		connected := make(chan struct{})
		go func() {
			defer close(connected)
			mon.Connect() // returns once cleanup closes the server side
		}()
		if !stalled(connected) {
			t.Error("go-qemu's Connect now gives up on a silent peer: revisit")
		}
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := DialQMP(ctx, silentServer(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("DialQMP to a silent peer: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("DialQMP took %v after its 100ms deadline", d)
		}
	})
}

// TestGoQEMUWithQEMU shows the long-reply defect on real QEMU, and go-qemu's
// typed bindings running over our transport.
func TestGoQEMUWithQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("go-qemu", func(t *testing.T) {
		p, sock := startQEMU(t)
		mon, err := qmp.NewSocketMonitor("unix", sock, 5*time.Second)
		for errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			// QEMU creates the socket a moment after it starts.
			select {
			case <-p.exited:
				t.Fatalf("QEMU exited (%v): %s", p.err, p.stderr.String())
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
			mon, err = qmp.NewSocketMonitor("unix", sock, 5*time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := mon.Connect(); err != nil {
			t.Fatal(err)
		}
		defer mon.Disconnect()
		// Usually ErrTooLong; under load go-qemu's racy reader (defect 1)
		// can instead hand back some other line with no error. Either
		// way the schema itself never arrives.
		out, err := mon.Run([]byte(`{"execute":"query-qmp-schema"}`))
		var schema struct {
			Return []json.RawMessage `json:"return"`
		}
		if err == nil && json.Unmarshal(out, &schema) == nil && len(schema.Return) > 100 {
			t.Errorf("go-qemu now returns the %d-byte schema: revisit", len(out))
		}
		if err != nil && !errors.Is(err, bufio.ErrTooLong) {
			t.Logf("query-qmp-schema: %v (not ErrTooLong)", err)
		}
		if _, err := mon.Run([]byte(`{"execute":"query-status"}`)); err == nil {
			t.Error("go-qemu now survives query-qmp-schema: revisit")
		}
	})

	t.Run("ours", func(t *testing.T) {
		_, q := dialQEMU(t, ctx)
		var schema []json.RawMessage
		if err := q.Execute(ctx, "query-qmp-schema", nil, &schema); err != nil {
			t.Fatal(err)
		}
		if len(schema) < 100 {
			t.Errorf("query-qmp-schema: %d entries", len(schema))
		}

		m := raw.NewMonitor(q.Monitor(ctx))
		st, err := m.QueryStatus()
		if err != nil || !st.Running || st.Status != raw.RunStateRunning {
			t.Errorf("raw QueryStatus = %+v, %v", st, err)
		}
		ectx, ecancel := context.WithCancel(ctx)
		defer ecancel()
		events, err := q.Monitor(ctx).Events(ectx)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-events:
			if e.Event != "STOP" || time.Since(time.Unix(e.Timestamp.Seconds, 0)).Abs() > time.Minute {
				t.Errorf("first event after stop: %+v", e)
			}
		case <-ctx.Done():
			t.Fatal("no event after stop")
		}
		if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStatePaused {
			t.Errorf("raw QueryStatus after stop = %+v, %v", st, err)
		}
		var qe *QMPError
		if _, err := q.Monitor(ctx).Run([]byte(`{"execute":"no-such-command"}`)); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
			t.Errorf("unknown command through Monitor: %v", err)
		}
		ecancel()
		for range events { // closed once ectx ends
		}
		if err := m.Quit(); err != nil && err != ErrClosed {
			t.Errorf("raw Quit: %v", err)
		}
	})
}

func TestGoQEMUDomainOverOurs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, q := dialQEMU(t, ctx)
	d, err := goqemu.NewDomain(q.Monitor(ctx), "cosa")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(); err != nil || st != goqemu.StatusRunning {
		t.Errorf("Domain.Status() = %v, %v; want running", st, err)
	}
	if v, err := d.Version(); err != nil || !strings.HasPrefix(v, fmt.Sprintf("%d.", majorOf(q.Version()))) {
		t.Errorf("Domain.Version() = %q, %v", v, err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Domain.Close: %v", err)
	}
	if err := q.Execute(ctx, "query-status", nil, nil); err != ErrClosed {
		t.Errorf("after Domain.Close: err = %v, want ErrClosed", err)
	}
}

func majorOf(major, _, _ int) int { return major }

func TestMonitorAdapter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := dialFake(t, ctx, func(c *fakeConn) {
		cmd := c.recv("echo")
		c.reply(cmd, string(cmd.Arguments))
		cmd = c.recv("query-status")
		if cmd.Arguments != nil {
			t.Errorf("query-status sent with arguments %s", cmd.Arguments)
		}
		c.send(`{"timestamp": {"seconds": 7, "microseconds": 250}, "event": "STOP"}`)
		c.send(`{"timestamp": {"seconds": 8, "microseconds": 0}, "event": "RESUME", "data": {"n": 2}}`)
		c.reply(cmd, runningStatus)
		c.recv("hang") // then hang up
	})
	m := q.Monitor(ctx)
	if err := m.Connect(); err != nil {
		t.Errorf("Connect on an open connection: %v", err)
	}

	out, err := m.Run([]byte(`{"execute": "echo", "arguments": {"word": "hi"}}`))
	if err != nil || string(out) != `{"return":{"word":"hi"}}` {
		t.Errorf("Run(echo) = %s, %v", out, err)
	}
	if _, err := m.Run([]byte(`{"arguments": {}}`)); err == nil || !strings.Contains(err.Error(), "not a QMP command") {
		t.Errorf("Run without execute: %v", err)
	}

	// One subscriber gives up early; the other sees both events.
	early, cancelEarly := context.WithCancel(ctx)
	gone, err := m.Events(early)
	if err != nil {
		t.Fatal(err)
	}
	cancelEarly()
	if _, ok := <-gone; ok {
		t.Error("Events channel open after its context ended")
	}
	q.mu.Lock()
	if len(q.subs) != 0 {
		t.Errorf("%d subscribers left after their context ended", len(q.subs))
	}
	q.mu.Unlock()
	events, err := m.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run([]byte(`{"execute": "query-status", "arguments": null}`)); err != nil {
		t.Fatal(err)
	}
	e := <-events
	if e.Event != "STOP" || e.Data != nil || e.Timestamp.Seconds != 7 || e.Timestamp.Microseconds != 250 {
		t.Errorf("first event = %+v, want STOP at 7s 250us", e)
	}
	e = <-events
	if e.Event != "RESUME" || e.Data["n"] != 2.0 {
		t.Errorf("second event = %+v, want RESUME with n=2", e)
	}

	if _, err := m.Run([]byte(`{"execute": "hang"}`)); err != ErrClosed {
		t.Errorf("Run when the server hangs up: %v, want ErrClosed", err)
	}
	if _, ok := <-events; ok {
		t.Error("Events channel open after the connection ended")
	}
	if err := m.Connect(); err != ErrClosed {
		t.Errorf("Connect after hang-up: %v, want ErrClosed", err)
	}
	if _, err := m.Events(ctx); err != ErrClosed {
		t.Errorf("Events after hang-up: %v, want ErrClosed", err)
	}
}

func TestGoQEMURunHasNoContext(t *testing.T) {
	// QEMU is slow to answer "slow": it has it once received is closed, and
	// answers once release is; a second command is issued meanwhile.
	script := func(received chan<- struct{}, release <-chan struct{}) func(c *fakeConn) {
		return func(c *fakeConn) {
			slow := c.recv("slow")
			close(received)
			<-release
			c.reply(slow, `{}`)
			c.reply(c.recv("query-status"), runningStatus)
		}
	}

	t.Run("go-qemu", func(t *testing.T) {
		received, release := make(chan struct{}), make(chan struct{})
		path, start := fakeQMP(t, script(received, release))
		start()
		mon := dialGoQEMU(t, path)
		defer mon.Disconnect()
		slowDone, nextDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(slowDone)
			mon.Run([]byte(`{"execute":"slow"}`))
		}()
		go func() {
			defer close(nextDone)
			// Nothing can abandon slow, so this waits behind it.
			<-received
			mon.Run([]byte(`{"execute":"query-status"}`))
		}()
		if !stalled(nextDone) {
			t.Error("go-qemu ran a command while an earlier one was unanswered: revisit")
		}
		close(release)
		<-slowDone
		<-nextDone
	})

	t.Run("ours", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		release := make(chan struct{})
		q := dialFake(t, ctx, script(make(chan struct{}), release))
		sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer scancel()
		start := time.Now()
		if err := q.Execute(sctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("slow: err = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("slow gave up %v after its 50ms deadline", d)
		}
		close(release)
		// slow's late reply is dropped; query-status gets its own.
		if st, err := q.QueryStatus(ctx); err != nil || !st.Running {
			t.Errorf("QueryStatus = %+v, %v", st, err)
		}
	})
}
