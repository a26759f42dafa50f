package weldr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Socket modes, lorax's: only the owner (root) and the group may reach the
// API, which has no authentication of its own.
const (
	SocketDirMode os.FileMode = 0o770
	SocketMode    os.FileMode = 0o660
)

// SocketOptions say where the API socket goes and who may use it.
type SocketOptions struct {
	Path  string // default /run/weldr/api.socket
	Group string // default "weldr"
	// UID owns the directory and socket; 0 (root) in production. Tests
	// running unprivileged pass their own uid.
	UID int
}

// GroupID looks a group up by name; a group that does not exist is an
// error naming it and saying how to make it.
func GroupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("group %q does not exist: create it (groupadd --system %s) and add the users allowed to use the API, or pass --group", name, name)
		}
		return 0, fmt.Errorf("looking up group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has a non-numeric gid %q", name, g.Gid)
	}
	return gid, nil
}

// Listen makes the socket directory (or fixes an existing one) and the
// socket, owned UID:GROUP with modes 0770 and 0660. A stale socket left by
// a killed service is replaced; a live one is an error.
func Listen(o SocketOptions) (net.Listener, error) {
	if o.Path == "" {
		o.Path = "/run/weldr/api.socket"
	}
	if o.Group == "" {
		o.Group = "weldr"
	}
	gid, err := GroupID(o.Group)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(o.Path)
	if err := os.MkdirAll(dir, SocketDirMode); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if err := os.Lchown(dir, o.UID, gid); err != nil {
		return nil, fmt.Errorf("socket directory %s: setting owner %d:%s: %w", dir, o.UID, o.Group, err)
	}
	if err := os.Chmod(dir, SocketDirMode); err != nil {
		return nil, fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if err := removeStale(o.Path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", o.Path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", o.Path, err)
	}
	// The directory's mode already keeps others out between listen and
	// these calls.
	if err := os.Lchown(o.Path, o.UID, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: setting owner %d:%s: %w", o.Path, o.UID, o.Group, err)
	}
	if err := os.Chmod(o.Path, SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", o.Path, err)
	}
	return l, nil
}

func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another --socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another service is listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: checking for a running service: %w", path, err)
	}
	return os.Remove(path)
}

// Serve answers h on l until ctx ends, then stops taking connections, lets
// requests under way finish (a download for up to grace) and removes the
// socket.
func Serve(ctx context.Context, l net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	<-errc
	return err
}

// Activated returns the socket systemd passed (socket activation:
// LISTEN_PID is this process and LISTEN_FDS is 1, the socket is fd 3), or
// nil when the service was not started that way. The unit's SocketMode,
// SocketGroup and DirectoryMode then carry lorax's rules.
func Activated() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n != 1 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q, want exactly one socket", os.Getenv("LISTEN_FDS"))
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	f := os.NewFile(3, "systemd-socket")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	return l, nil
}
