package weldr

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSocketOwnershipAndModes(t *testing.T) {
	s := newServer(t)
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(s.sock), SocketDirMode}, {s.sock, SocketMode}} {
		st, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, st.Mode().Perm(), c.mode)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != os.Getuid() || int(sys.Gid) != os.Getgid() {
			t.Errorf("%s: owner %d:%d, want %d:%d", c.path, sys.Uid, sys.Gid, os.Getuid(), os.Getgid())
		}
	}
	if st, _ := os.Lstat(s.sock); st.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket", s.sock)
	}
}

func TestSocketFixesExistingDirMode(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	l, err := Listen(SocketOptions{Path: filepath.Join(dir, "api.socket"), Group: currentGroup(t), UID: os.Getuid()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, _ := os.Stat(dir); st.Mode().Perm() != SocketDirMode {
		t.Errorf("existing dir mode %v, want %v", st.Mode().Perm(), SocketDirMode)
	}
}

func TestSocketUnknownGroup(t *testing.T) {
	_, err := Listen(SocketOptions{Path: filepath.Join(shortTempDir(t), "api.socket"), Group: "no-such-group-xyz", UID: os.Getuid()})
	if err == nil || !strings.Contains(err.Error(), `group "no-such-group-xyz" does not exist`) {
		t.Errorf("error %v, want one naming the missing group", err)
	}
}

func TestSocketStaleAndLive(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "api.socket")
	opt := SocketOptions{Path: sock, Group: currentGroup(t), UID: os.Getuid()}
	// A stale socket (a killed service's) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(opt)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is refused.
	if _, err := Listen(opt); err == nil || !strings.Contains(err.Error(), "another service is listening") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	l.Close()
	// A regular file is never removed.
	os.WriteFile(sock, []byte("x"), 0o644)
	if _, err := Listen(opt); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a file: %v", err)
	}
}

func TestServeShutsDownAndRemovesSocket(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "api.socket")
	l, err := Listen(SocketOptions{Path: sock, Group: currentGroup(t), UID: os.Getuid()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, New(Options{}), time.Second) }()
	resp, err := unixClient(sock).Get("http://localhost/api/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after shutdown: %v", err)
	}
}

func TestActivatedNotBySystemd(t *testing.T) {
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "1")
	if l, err := Activated(); l != nil || err != nil {
		t.Errorf("another process's LISTEN_PID taken: %v %v", l, err)
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "2")
	if _, err := Activated(); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("two sockets: %v", err)
	}
}
