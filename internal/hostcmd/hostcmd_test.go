package hostcmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a parent that starts a child with
// hostcmd, prints the child's pid and waits to be killed.
const helperEnv = "HOSTCMD_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		c := Command("sleep", "300")
		if err := c.Start(context.Background()); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Println(c.Pid())
		c.Wait()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gone waits (bounded) until pid no longer runs: it is reaped, or a zombie.
func gone(t *testing.T, pid int) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// The state follows the ")" that ends the command name.
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestOutputAndTypedError(t *testing.T) {
	out, err := Output(context.Background(), "sh", "-c", "echo hello")
	if err != nil || out != "hello\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	_, err = Output(context.Background(), "sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not a *Error", err, err)
	}
	if e.Name != "sh" || e.ExitCode != 3 || e.Stderr != "first\nthe reason" {
		t.Errorf("Error = %+v", e)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "sh -c ") || !strings.Contains(msg, "exit status 3") || !strings.HasSuffix(msg, ": the reason") {
		t.Errorf("Error() = %q: want one line naming the command, the status and the last stderr line", msg)
	}
}

func TestDisplay(t *testing.T) {
	c := Command("sh", "-c", "exit 2", "/tmp/long-temporary-path")
	c.Display = "sh script"
	err := c.Run(context.Background())
	if err == nil || err.Error() != "sh script: exit status 2" {
		t.Errorf("err = %v", err)
	}
}

func TestMissingProgramIsError(t *testing.T) {
	err := Run(context.Background(), "/nonexistent/cosa-no-such-tool")
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != -1 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v (%T)", err, err)
	}
}

func TestCancelKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := Command("sleep", "300")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := c.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != -1 {
		t.Errorf("error = %#v", err)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := Command("sh", "-c", "sleep 300 & echo $!; wait")
	c.OwnGroup = true
	pipe, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(pipe).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	bg, _ := strconv.Atoi(strings.TrimSpace(line))
	cancel()
	if err := c.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v", err)
	}
	if !gone(t, bg) {
		syscall.Kill(bg, syscall.SIGKILL)
		t.Fatalf("background child %d of the group outlived the cancel", bg)
	}
}

// TestDiesWithParent: a command started by a process that is then killed
// dies too (Pdeathsig).
func TestDiesWithParent(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), helperEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	parent.Process.Kill()
	parent.Wait()
	if !gone(t, child) {
		syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("child %d outlived its killed parent", child)
	}
}

// TestLockedThreadExitDoesNotKill: Pdeathsig follows the forking thread.
// A command started from a goroutine locked to its thread must survive that
// goroutine returning (which ends the thread).
func TestLockedThreadExitDoesNotKill(t *testing.T) {
	c := Command("sh", "-c", "read x")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin = r
	tid := make(chan int)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- c.Start(context.Background())
		tid <- syscall.Gettid()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	id := <-tid
	r.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", id)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			// The runtime does not always end the thread at once; with
			// it alive there is nothing to check.
			w.Close()
			c.Wait()
			t.Skip("the locked thread did not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Close() // sh's read now sees EOF and it exits 1, unless it was killed
	err = c.Wait()
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 1 {
		t.Fatalf("Wait = %v: want exit status 1 (killed when the starting thread ended?)", err)
	}
}

func TestStartExecSetsPdeathsig(t *testing.T) {
	cmd := exec.Command("true")
	if err := StartExec(cmd); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL || cmd.WaitDelay == 0 {
		t.Errorf("SysProcAttr = %+v, WaitDelay %v", cmd.SysProcAttr, cmd.WaitDelay)
	}
}

func TestTailBounded(t *testing.T) {
	tl := NewTail(3)
	for i := range 100 {
		fmt.Fprintf(tl, "line %d\n", i)
	}
	tl.Write([]byte("partial"))
	if got := tl.String(); got != "line 98\nline 99\npartial" {
		t.Errorf("tail = %q", got)
	}
	tl.Write(bytes.Repeat([]byte("x"), 10*maxLineBytes))
	tl.Write([]byte("\n"))
	if got := tl.String(); len(got) > 2*len("line 99\n")+maxLineBytes {
		t.Errorf("tail grew to %d bytes", len(got))
	}

	c := Command("sh", "-c", "i=0; while [ $i -lt 500 ]; do echo err $i >&2; i=$((i+1)); done; exit 1")
	c.TailLines = 5
	err := c.Run(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Stderr != "err 495\nerr 496\nerr 497\nerr 498\nerr 499" {
		t.Fatalf("err = %v", err)
	}
}

func TestEchoAndStreams(t *testing.T) {
	var echo, errs bytes.Buffer
	c := Command("sh", "-c", "echo out; echo err >&2")
	c.Echo, c.Stderr = &echo, &errs
	c.Env = []string{"COSA_HOSTCMD_TEST=1"}
	out, err := c.Output(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out != "out\n" || errs.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", out, errs.String())
	}
	// The two streams are copied concurrently: either order is right.
	if e := echo.String(); e != "out\nerr\n" && e != "err\nout\n" {
		t.Errorf("echo = %q", e)
	}
}

func TestEnv(t *testing.T) {
	c := Command("sh", "-c", `echo "$COSA_A:$HOME"`)
	c.Env = []string{"COSA_A=x"}
	out, err := c.Output(context.Background())
	if err != nil || out != "x:"+os.Getenv("HOME")+"\n" {
		t.Errorf("added env: %q %v", out, err)
	}
	c = Command("/bin/sh", "-c", `echo "$COSA_A:$HOME"`)
	c.Env, c.CleanEnv = []string{"COSA_A=y"}, true
	out, err = c.Output(context.Background())
	if err != nil || out != "y:\n" {
		t.Errorf("clean env: %q %v", out, err)
	}
}
