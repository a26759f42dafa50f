package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifyWriter records what Lock prints and signals the first write, so a
// test can act exactly when the waiter has started waiting.
type notifyWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	once    sync.Once
	written chan struct{}
}

func newNotifyWriter() *notifyWriter { return &notifyWriter{written: make(chan struct{})} }

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.once.Do(func() { close(w.written) })
	return len(p), nil
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

const lockHelperEnv = "COSA_TEST_LOCK_HELPER_DIR"

// TestLockHelperProcess is not a test: it is the other process in the
// cross-process lock tests. It takes the lock on the directory in
// $COSA_TEST_LOCK_HELPER_DIR, prints "locked", and holds the lock until its
// stdin is closed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockHelperEnv)
	if dir == "" {
		t.Skip("helper process for the cross-process lock tests")
	}
	d := &Dir{Root: dir}
	release, err := d.Lock(context.Background(), 0, "cosa build", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	release()
	os.Exit(0)
}

// startLockHolder runs the helper process and returns once it holds the
// lock. Closing the returned writer makes it release and exit.
func startLockHolder(t *testing.T, root string) (pid int, release io.WriteCloser, wait func() error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+root)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	return cmd.Process.Pid, stdin, cmd.Wait
}

func TestLockAcrossProcessesWaitsThenAcquires(t *testing.T) {
	d, _ := Open(filepath.Join(t.TempDir(), "builds"))
	pid, holder, wait := startLockHolder(t, d.Root)

	msg := newNotifyWriter()
	type result struct {
		release func()
		err     error
	}
	done := make(chan result, 1)
	go func() {
		r, err := d.Lock(context.Background(), time.Minute, "cosa buildextend-qemu", msg)
		done <- result{r, err}
	}()
	<-msg.written
	want := fmt.Sprintf("waiting for lock on builds/ (held by pid %d: cosa build)...\n", pid)
	if msg.String() != want {
		t.Errorf("wait message = %q, want %q", msg.String(), want)
	}
	select {
	case r := <-done:
		t.Fatalf("Lock returned while the other process held it: %v", r.err)
	default:
	}
	holder.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.release()
	if err := wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
	content, _ := os.ReadFile(filepath.Join(d.Root, ".lock"))
	if want := fmt.Sprintf("%d cosa buildextend-qemu\n", os.Getpid()); string(content) != want {
		t.Errorf(".lock = %q, want %q", content, want)
	}
	if strings.Count(msg.String(), "\n") != 1 {
		t.Errorf("wait message printed more than once: %q", msg.String())
	}
}

func TestLockTimeoutAcrossProcesses(t *testing.T) {
	d, _ := Open(filepath.Join(t.TempDir(), "builds"))
	pid, _, _ := startLockHolder(t, d.Root)

	_, err := d.Lock(context.Background(), 100*time.Millisecond, "cosa prune", nil)
	want := fmt.Sprintf("timed out after 100ms waiting for lock on builds/ (held by pid %d: cosa build)", pid)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var lte *LockTimeoutError
	if !errors.As(err, &lte) || lte.Timeout != 100*time.Millisecond {
		t.Errorf("err is not a *LockTimeoutError: %#v", err)
	}
}

func TestLockBetweenGoroutines(t *testing.T) {
	root := t.TempDir()
	first, second := &Dir{Root: root}, &Dir{Root: root}
	release1, err := first.Lock(context.Background(), time.Second, "cosa build", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := newNotifyWriter()
	done := make(chan error, 1)
	go func() {
		release2, err := second.Lock(context.Background(), time.Minute, "cosa meta", msg)
		if err == nil {
			release2()
		}
		done <- err
	}()
	<-msg.written
	if want := fmt.Sprintf("(held by pid %d: cosa build)", os.Getpid()); !strings.Contains(msg.String(), want) {
		t.Errorf("message %q lacks %q", msg.String(), want)
	}
	release1()
	release1() // idempotent
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if content, _ := os.ReadFile(filepath.Join(root, ".lock")); len(content) != 0 {
		t.Errorf(".lock still names a holder after release: %q", content)
	}
}

func TestLockContextCancel(t *testing.T) {
	root := t.TempDir()
	release, err := (&Dir{Root: root}).Lock(context.Background(), 0, "holder", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	msg := newNotifyWriter()
	go func() { <-msg.written; cancel() }()
	_, err = (&Dir{Root: root}).Lock(ctx, 0, "waiter", msg)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
