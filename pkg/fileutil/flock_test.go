package fileutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestFlockWaitsAndGivesUpWithCtx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	holder, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := Flock(context.Background(), holder, syscall.LOCK_EX, time.Millisecond, time.Millisecond, nil); err != nil {
		t.Fatalf("free lock: %v", err)
	}

	waiter, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	ctx, cancel := context.WithCancel(context.Background())
	refused := 0
	err = Flock(ctx, waiter, syscall.LOCK_SH, time.Millisecond, time.Millisecond, func(polls int) {
		if polls != refused {
			t.Errorf("busy got polls=%d, want %d", polls, refused)
		}
		refused++
		if refused == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || err != ctx.Err() {
		t.Fatalf("err = %v, want ctx.Err() itself", err)
	}
	if refused != 3 {
		t.Fatalf("busy called %d times, want 3", refused)
	}

	// Once the holder lets go, the waiter gets it.
	syscall.Flock(int(holder.Fd()), syscall.LOCK_UN)
	if err := Flock(context.Background(), waiter, syscall.LOCK_SH, time.Millisecond, time.Millisecond, nil); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
