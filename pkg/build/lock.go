package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// A waiting Lock retries the non-blocking flock, first quickly (meta.json
// updates hold the lock for milliseconds) and then backing off to
// lockPollMax. flock has no blocking-with-timeout form, and polling keeps
// ctx and the timeout simple.
const (
	lockPollMin = 5 * time.Millisecond
	lockPollMax = 100 * time.Millisecond
)

// LockTimeoutError is returned when Lock gives up waiting.
type LockTimeoutError struct {
	Timeout time.Duration
	Name    string // e.g. "builds/"
	Holder  string // e.g. "held by pid 1234: cosa build"
}

func (e *LockTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for lock on %s (%s)", e.Timeout, e.Name, e.Holder)
}

// Lock takes an exclusive flock on builds/.lock, waiting up to timeout
// (timeout <= 0: only ctx bounds the wait). Once held, "PID PURPOSE" is
// written into the file so that a process left waiting can say who it is
// waiting for; that notice goes to waitMsg (if not nil) once. The returned
// release function is safe to call more than once. The lock is not
// re-entrant: a second Lock from the same process waits like any other.
func (d *Dir) Lock(ctx context.Context, timeout time.Duration, purpose string, waitMsg io.Writer) (release func(), err error) {
	path := filepath.Join(d.Root, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	name := filepath.Base(d.Root) + "/"

	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	announced := waitMsg == nil
	busy := func(polls int) {
		// The holder writes its name just after it gets the lock, so an
		// empty file most likely means "give it a moment"; announce once
		// the name is there, or after a few polls regardless.
		if !announced {
			if holder, known := lockHolder(path); known || polls >= 8 {
				fmt.Fprintf(waitMsg, "waiting for lock on %s (%s)...\n", name, holder)
				announced = true
			}
		}
	}
	if err := fileutil.Flock(wctx, f, syscall.LOCK_EX, lockPollMin, lockPollMax, busy); err != nil {
		f.Close()
		if werr := wctx.Err(); werr == nil || !errors.Is(err, werr) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for lock on %s: %w", name, ctx.Err())
		}
		holder, _ := lockHolder(path)
		return nil, &LockTimeoutError{Timeout: timeout, Name: name, Holder: holder}
	}

	purpose = strings.Join(strings.Fields(purpose), " ") // keep it one line
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), purpose)), 0)
	}
	return sync.OnceFunc(func() {
		// Clear the holder first so a waiter never blames a process
		// that has already let go.
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}), nil
}

// lockHolder describes who holds the lock from the "PID PURPOSE" line in it;
// known is false when the file does not (yet) say.
func lockHolder(path string) (desc string, known bool) {
	data, _ := os.ReadFile(path)
	pid, purpose, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	if pid == "" {
		return "held by another process", false
	}
	if purpose == "" {
		return "held by pid " + pid, true
	}
	return fmt.Sprintf("held by pid %s: %s", pid, purpose), true
}

// WithLock runs fn while holding the builds/ lock, using d.LockTimeout and
// d.LockWait.
func (d *Dir) WithLock(ctx context.Context, purpose string, fn func() error) error {
	timeout := d.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	var w io.Writer = os.Stderr
	if d.LockWait != nil {
		w = d.LockWait
	}
	release, err := d.Lock(ctx, timeout, purpose, w)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}
