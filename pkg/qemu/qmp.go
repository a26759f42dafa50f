package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"
)

// QMP is a client for the QEMU Machine Protocol on a unix socket, as
// created by `-qmp unix:PATH,server=on,wait=off`.
//
// One goroutine reads the socket and hands each reply to the Execute call
// waiting for its id, and each asynchronous event to Events and WaitEvent.
// All methods are safe for concurrent use. Monitor adapts it to go-qemu's
// qmp.Monitor, so go-qemu's typed command set runs over this connection.
//
// The transport is ours rather than go-qemu's qmp.SocketMonitor because that
// one's reader has defects no layer above it can repair (each is shown by a
// test in goqemu_test.go): a reply closely followed by a long message is
// overwritten while Run decodes it (a data race); an error reply's class is
// discarded; a reply or event longer than 64 KiB (query-qmp-schema is ~200
// KiB) ends the session, or is handed as an error to whichever command runs
// next; and events QEMU sends right after the capabilities reply are lost.
type QMP struct {
	conn                net.Conn
	major, minor, micro int

	events  chan Event
	dropped atomic.Uint64
	subs    map[chan Event]struct{} // Monitor().Events subscribers; under mu

	writeMu  sync.Mutex // serialises writes and id allocation, so ids hit the wire in increasing order
	nextID   uint64
	sendHook func(id uint64, cmd string) // tests: called under writeMu after each command is written

	mu      sync.Mutex
	closed  bool
	pending map[uint64]chan qmpReply
	backlog []Event // events no WaitEvent has taken yet, oldest first
	waiters []*eventWaiter

	done      chan struct{} // closed when the reader has stopped
	closeOnce sync.Once
	closeErr  error
}

// Event is an asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage // nil when the event carries no data
	Time time.Time       // QEMU's timestamp
}

// Status is the answer to query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "shutdown", ...
}

// QMPError is an error reply from QEMU.
type QMPError struct {
	Class   string // e.g. "GenericError", "CommandNotFound"
	Desc    string
	Command string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrClosed is returned by commands issued after the QMP connection ended,
// and by commands still waiting for their reply when it ends.
var ErrClosed = errors.New("qmp: connection closed")

const (
	eventBuffer  = 64  // capacity of the Events channel
	eventBacklog = 128 // events kept for WaitEvent; the oldest go first
	maxUnixPath  = 107 // sun_path is 108 bytes including the terminating NUL
)

type qmpReply struct {
	ret    json.RawMessage
	err    *qmpErrorBody
	closed bool
}

type qmpErrorBody struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// qmpMessage is anything QEMU sends: greeting, reply or event.
type qmpMessage struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
		} `json:"version"`
	} `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *qmpErrorBody   `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type qmpCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

type eventWaiter struct {
	name string
	ch   chan Event // buffered 1; written once, under QMP.mu
}

// DialQMP connects to the QMP socket at socketPath, reads QEMU's greeting and
// leaves capabilities-negotiation mode. QEMU creates the socket a little after
// it starts, so while the socket is missing or refuses connections DialQMP
// keeps retrying, until ctx ends. QEMU serves one QMP client per socket at a
// time; a second client gets no greeting until the first disconnects.
func DialQMP(ctx context.Context, socketPath string) (*QMP, error) {
	if len(socketPath) > maxUnixPath {
		return nil, fmt.Errorf("qmp: socket path %q is %d bytes, unix sockets allow %d; use a shorter directory", socketPath, len(socketPath), maxUnixPath)
	}
	conn, err := dialUnixRetry(ctx, socketPath)
	if err != nil {
		return nil, err
	}

	// Read the greeting in this goroutine; ctx interrupts a silent peer.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	dec := json.NewDecoder(conn)
	var raw json.RawMessage
	err = dec.Decode(&raw)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: waiting for greeting: %w", socketPath, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: reading greeting: %w", socketPath, err)
	}
	var g qmpMessage
	if err := json.Unmarshal(raw, &g); err != nil || g.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: not a QMP greeting: %.200s", socketPath, raw)
	}

	q := &QMP{
		conn:    conn,
		major:   g.QMP.Version.QEMU.Major,
		minor:   g.QMP.Version.QEMU.Minor,
		micro:   g.QMP.Version.QEMU.Micro,
		events:  make(chan Event, eventBuffer),
		subs:    make(map[chan Event]struct{}),
		pending: make(map[uint64]chan qmpReply),
		done:    make(chan struct{}),
	}
	go q.readLoop(dec)
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func dialUnixRetry(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	backoff := 5 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("qmp: %w", err)
		}
		// Polling for QEMU to create the socket; there is nothing to wait on.
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("qmp: connecting to %s: %w (last attempt: %v)", path, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// Version is QEMU's version from the greeting.
func (q *QMP) Version() (major, minor, micro int) {
	return q.major, q.minor, q.micro
}

// Events delivers every asynchronous event, in arrival order. The channel is
// buffered; when it is full the event is dropped from it (see DroppedEvents)
// rather than stalling the connection. It is closed when the connection ends.
// Events reach WaitEvent whether or not anyone reads this channel.
func (q *QMP) Events() <-chan Event { return q.events }

// DroppedEvents counts events the Events channel, or a Monitor().Events
// subscriber, had no room for.
func (q *QMP) DroppedEvents() uint64 { return q.dropped.Load() }

// Execute runs cmd with args (nil for none; otherwise anything that marshals
// to a JSON object) and, when result is non-nil, unmarshals the reply's
// "return" value into it. An error reply is a *QMPError. If the connection
// ends first the error is ErrClosed. If ctx ends first Execute returns its
// error; the command may still run in QEMU.
func (q *QMP) Execute(ctx context.Context, cmd string, args any, result any) error {
	_, err := q.execute(ctx, cmd, args, result)
	return err
}

// execute is Execute, also reporting whether the command was written out.
func (q *QMP) execute(ctx context.Context, cmd string, args any, result any) (sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	ch := make(chan qmpReply, 1)

	q.writeMu.Lock()
	q.nextID++
	id := q.nextID
	msg, err := json.Marshal(qmpCommand{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		q.writeMu.Unlock()
		return false, fmt.Errorf("qmp %s: encoding arguments: %w", cmd, err)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.writeMu.Unlock()
		return false, ErrClosed
	}
	q.pending[id] = ch
	q.mu.Unlock()
	deadline, _ := ctx.Deadline() // zero means none
	q.conn.SetWriteDeadline(deadline)
	_, werr := q.conn.Write(append(msg, '\n'))
	if werr == nil && q.sendHook != nil {
		q.sendHook(id, cmd)
	}
	q.writeMu.Unlock()

	if werr != nil {
		q.forget(id)
		// A failed write may have left half a command on the wire, so the
		// stream is unusable either way: close it, failing everyone else too.
		q.conn.Close()
		if ctx.Err() != nil {
			return false, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
		}
		return false, ErrClosed
	}

	select {
	case r := <-ch:
		return true, r.decode(cmd, result)
	case <-ctx.Done():
		q.forget(id)
		select {
		case r := <-ch: // the reply won the race
			return true, r.decode(cmd, result)
		default:
		}
		return true, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

func (q *QMP) forget(id uint64) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}

func (r qmpReply) decode(cmd string, result any) error {
	switch {
	case r.closed:
		return ErrClosed
	case r.err != nil:
		return &QMPError{Class: r.err.Class, Desc: r.err.Desc, Command: cmd}
	case result != nil:
		if err := json.Unmarshal(r.ret, result); err != nil {
			return fmt.Errorf("qmp %s: decoding reply: %w", cmd, err)
		}
	}
	return nil
}

// WaitEvent returns the oldest event called name that no earlier WaitEvent
// returned, waiting for one to arrive if there is none. Events that arrived
// before the call count: QEMU sends an event such as STOP before its reply to
// the command that caused it, so `Execute(ctx, "stop", ...)` followed by
// `WaitEvent(ctx, "STOP")` works. The most recent eventBacklog unclaimed
// events are kept. Once the connection has ended and no matching event is
// kept, WaitEvent returns ErrClosed.
func (q *QMP) WaitEvent(ctx context.Context, name string) (Event, error) {
	q.mu.Lock()
	for i, ev := range q.backlog {
		if ev.Name == name {
			q.backlog = append(q.backlog[:i], q.backlog[i+1:]...)
			q.mu.Unlock()
			return ev, nil
		}
	}
	if q.closed {
		q.mu.Unlock()
		return Event{}, ErrClosed
	}
	w := &eventWaiter{name: name, ch: make(chan Event, 1)}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()

	select {
	case ev := <-w.ch:
		return ev, nil
	case <-q.done:
	case <-ctx.Done():
		q.mu.Lock()
		for i, x := range q.waiters {
			if x == w {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				q.mu.Unlock()
				return Event{}, fmt.Errorf("qmp: waiting for event %s: %w", name, ctx.Err())
			}
		}
		q.mu.Unlock()
		// Gone from the list: either it got its event or the connection ended.
	}
	select {
	case ev := <-w.ch:
		return ev, nil
	default:
		return Event{}, ErrClosed
	}
}

// QueryStatus runs query-status.
// The typed bindings are go-qemu's (qmp/raw), run over this connection.
func (q *QMP) QueryStatus(ctx context.Context) (*Status, error) {
	si, err := raw.NewMonitor(q.Monitor(ctx)).QueryStatus()
	if err != nil {
		return nil, err
	}
	return &Status{Running: si.Running, Status: si.Status.String()}, nil
}

// SystemPowerdown asks the guest to power off (an ACPI power button press);
// QEMU sends a POWERDOWN event, and SHUTDOWN once the guest has complied.
func (q *QMP) SystemPowerdown(ctx context.Context) error {
	return raw.NewMonitor(q.Monitor(ctx)).SystemPowerdown()
}

// Quit tells QEMU to exit and waits until it has closed the connection, so
// afterwards commands fail with ErrClosed and every event QEMU sent (such as
// SHUTDOWN) is available. The connection ending before the reply arrives
// counts as success, provided the quit command was written.
func (q *QMP) Quit(ctx context.Context) error {
	sent, err := q.execute(ctx, "quit", nil, nil)
	if err != nil && !(sent && errors.Is(err, ErrClosed)) {
		return err
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qmp quit: acknowledged, but QEMU has not closed the connection: %w", ctx.Err())
	}
}

// Close ends the connection, failing pending commands with ErrClosed, and
// waits for the reader to stop. It does not stop QEMU.
func (q *QMP) Close() error {
	q.closeOnce.Do(func() {
		if err := q.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			q.closeErr = err
		}
	})
	<-q.done
	return q.closeErr
}

func (q *QMP) readLoop(dec *json.Decoder) {
	defer q.shutdown()
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return // EOF, closed by us, or a corrupt stream: all end the session
		}
		var m qmpMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			continue // valid JSON of an unexpected shape; skip it
		}
		switch {
		case m.Event != "":
			q.dispatchEvent(Event{
				Name: m.Event,
				Data: m.Data,
				Time: time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*int64(time.Microsecond)),
			})
		case m.Return != nil || m.Error != nil:
			var id uint64
			if json.Unmarshal(m.ID, &id) != nil {
				continue // not one of ours (we always send a numeric id)
			}
			q.mu.Lock()
			ch := q.pending[id]
			delete(q.pending, id)
			q.mu.Unlock()
			if ch != nil {
				ch <- qmpReply{ret: m.Return, err: m.Error}
			}
		}
	}
}

func (q *QMP) dispatchEvent(ev Event) {
	select {
	case q.events <- ev:
	default:
		q.dropped.Add(1)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for ch := range q.subs {
		select {
		case ch <- ev:
		default:
			q.dropped.Add(1)
		}
	}
	for i, w := range q.waiters {
		if w.name == ev.Name {
			w.ch <- ev
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return
		}
	}
	if len(q.backlog) == eventBacklog {
		q.backlog = append(q.backlog[:0], q.backlog[1:]...)
	}
	q.backlog = append(q.backlog, ev)
}

func (q *QMP) shutdown() {
	q.conn.Close()
	q.mu.Lock()
	q.closed = true
	for id, ch := range q.pending {
		ch <- qmpReply{closed: true}
		delete(q.pending, id)
	}
	q.waiters = nil
	for ch := range q.subs {
		close(ch)
	}
	q.subs = nil
	q.mu.Unlock()
	close(q.events)
	close(q.done)
}
