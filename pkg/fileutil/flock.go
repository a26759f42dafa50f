package fileutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Flock takes a flock of kind how (syscall.LOCK_SH or LOCK_EX) on f. flock
// has no blocking form that ctx can interrupt, so it polls the non-blocking
// form, waiting minDelay at first and doubling up to maxDelay: holders that
// keep the lock briefly are picked up quickly, long ones cost few wake-ups.
// busy, if not nil, is called after each refused attempt with the number of
// attempts refused before it. The error is ctx.Err() itself when ctx ends
// first (so callers can say what they were waiting for), otherwise
// "locking PATH: ...".
func Flock(ctx context.Context, f *os.File, how int, minDelay, maxDelay time.Duration, busy func(polls int)) error {
	delay := minDelay
	for polls := 0; ; polls++ {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if busy != nil {
			busy(polls)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, maxDelay)
	}
}
