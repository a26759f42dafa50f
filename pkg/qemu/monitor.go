package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/digitalocean/go-qemu/qmp"
)

// Monitor returns q as a go-qemu qmp.Monitor, so that go-qemu's generated
// QAPI bindings (qmp/raw) and its qemu.Domain can drive this connection.
// qmp.Monitor's methods take no context; ctx bounds every command run through
// the returned Monitor, as Execute's ctx does.
func (q *QMP) Monitor(ctx context.Context) qmp.Monitor {
	return monitor{q: q, ctx: ctx}
}

type monitor struct {
	q   *QMP
	ctx context.Context
}

var _ qmp.Monitor = monitor{}

// Connect reports whether the connection is still open: DialQMP has already
// done the handshake that go-qemu's Connect would do.
func (m monitor) Connect() error {
	m.q.mu.Lock()
	defer m.q.mu.Unlock()
	if m.q.closed {
		return ErrClosed
	}
	return nil
}

// Disconnect closes the connection (see QMP.Close).
func (m monitor) Disconnect() error { return m.q.Close() }

// Run executes a command encoded as go-qemu encodes them, {"execute": NAME,
// "arguments": {...}}, and returns the reply as {"return": ...}, which is
// what go-qemu's bindings decode. An error reply is a *QMPError, keeping the
// class that go-qemu's own SocketMonitor drops.
func (m monitor) Run(command []byte) ([]byte, error) {
	var c struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(command, &c); err != nil || c.Execute == "" {
		return nil, fmt.Errorf("qmp: not a QMP command: %.200s", command)
	}
	var args any
	if a := bytes.TrimSpace(c.Arguments); len(a) > 0 && !bytes.Equal(a, []byte("null")) {
		args = c.Arguments
	}
	var ret json.RawMessage
	if err := m.q.Execute(m.ctx, c.Execute, args, &ret); err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Return json.RawMessage `json:"return"`
	}{ret})
}

// Events delivers the events that arrive from now on, until ctx ends or the
// connection does; then the channel is closed. Like Events on QMP, a
// subscriber that falls eventBuffer events behind loses the newest ones
// (counted by DroppedEvents) instead of stalling the connection.
func (m monitor) Events(ctx context.Context) (<-chan qmp.Event, error) {
	in := make(chan Event, eventBuffer)
	m.q.mu.Lock()
	if m.q.closed {
		m.q.mu.Unlock()
		return nil, ErrClosed
	}
	m.q.subs[in] = struct{}{}
	m.q.mu.Unlock()

	out := make(chan qmp.Event)
	go func() {
		defer close(out)
		defer func() {
			m.q.mu.Lock()
			delete(m.q.subs, in) // no-op once shutdown has closed them all
			m.q.mu.Unlock()
		}()
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- goQEMUEvent(ev):
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func goQEMUEvent(ev Event) qmp.Event {
	e := qmp.Event{Event: ev.Name}
	if ev.Data != nil {
		// QEMU's event data is always a JSON object; anything else is left out.
		_ = json.Unmarshal(ev.Data, &e.Data)
	}
	e.Timestamp.Seconds = ev.Time.Unix()
	e.Timestamp.Microseconds = int64(ev.Time.Nanosecond() / 1000)
	return e
}
