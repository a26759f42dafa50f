package blueprint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// flock takes a flock on path (shared or exclusive) and returns its release.
// It polls the non-blocking form so that ctx can end the wait; holders keep
// the lock for a few git commands, so the first retries come quickly.
func flock(ctx context.Context, path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := fileutil.Flock(ctx, f, how, time.Millisecond, 50*time.Millisecond, nil); err != nil {
		f.Close()
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			return nil, fmt.Errorf("waiting for the blueprint store lock: %w", err)
		}
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
