// Package sandbox runs code that cosa did not write (maintainer scripts,
// postprocess scripts, systemctl, dracut) so that it cannot act on the host.
//
// The process runs in new user, mount, pid, network, uts and ipc
// namespaces. Root inside is an unprivileged id outside: run as root, cosa
// maps ids 0-65535 of the sandbox to a range of ids that own nothing on the
// host (IDBase), and gives the sandbox the tree through an idmapped mount,
// so the tree's files keep their real owners on disk while the script, seen
// from the host, is nobody in particular. Run by an ordinary user inside
// cosa's own user namespace (rootless mode), the sandbox is a nested user
// namespace is cosa's own (its root is the user on the host): the script
// has the user's own rights, no more.
//
// In a chroot sandbox /dev holds only null, zero, full, random, urandom,
// tty, pts and shm; the network namespace holds a loopback that is down;
// and the capability bounding set keeps only what dpkg and its maintainer
// scripts use (owners, modes, setuid/setgid, chroot, kill).
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// IDBase is the first host id of the range root-run sandboxes map to: in
// the range systemd sets aside for containers, where no user owns files.
// COSA_SANDBOX_IDBASE overrides it.
const IDBase = 0x5F000000

// idCount ids are mapped: every id a Debian system uses (nobody is 65534).
const idCount = 65536

// Bind is a host directory made visible inside the sandbox at Guest.
type Bind struct{ Host, Guest string }

// Spec says what to run and how.
type Spec struct {
	// Root is the tree to chroot into; it is mounted (idmapped when run as
	// root) over itself in the sandbox's mount namespace.
	Root string
	// Chroot false runs Argv with the host's file system instead, and Root
	// (which must be an empty or missing directory) writable at Guest:
	// for mmdebstrap, which makes the tree and chroots by itself.
	Chroot bool
	// Guest is where Root appears when Chroot is false; also every Bind's
	// Guest is under it then.
	Guest string
	Binds []Bind
	Argv  []string
	Env   []string
	// KeepCaps keeps the full capability set inside the namespace
	// (mmdebstrap mounts /proc and /dev in the tree it makes).
	KeepCaps bool
}

// initSpec is what the init process gets: mounts by fd, the rest as data.
type initSpec struct {
	Chroot   bool     `json:"chroot"`
	Guest    string   `json:"guest"`
	Mounts   []string `json:"mounts"` // guest path of each fd after fd 3's control socket
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	KeepCaps bool     `json:"keep_caps"`
	Rootless bool     `json:"rootless"`
}

const initArg0 = "cosa-sandbox-init"

func init() {
	if len(os.Args) > 0 && os.Args[0] == initArg0 {
		sandboxInit()
	}
}

// Mode says how the sandbox maps ids on this host.
type Mode int

const (
	// Idmapped: cosa is root in the initial user namespace.
	Idmapped Mode = iota
	// Nested: cosa is root in a user namespace of its own (rootless).
	Nested
)

// CurrentMode tells which way sandboxes are made here, or why none can be.
func CurrentMode() (Mode, error) {
	if os.Geteuid() != 0 {
		return 0, fmt.Errorf("sandboxes need root, or cosa's rootless user namespace (run cosa as the user; it enters one itself)")
	}
	if InInitialUserNS() {
		return Idmapped, nil
	}
	return Nested, nil
}

// InInitialUserNS reports whether this process is in the host's user
// namespace (its uid map is the identity over all ids).
func InInitialUserNS() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

func idBase() int {
	if v := os.Getenv("COSA_SANDBOX_IDBASE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return IDBase
}

// Command prepares the sandboxed process. The caller sets Stdout/Stderr
// and runs it; Cleanup must be called after it exits (or fails to start).
type Command struct {
	Cmd     *exec.Cmd
	closers []io.Closer
	sock    *os.File
	mounts  []int
	spec    initSpec
	mode    Mode
}

// New makes a Command for s. It fails without starting anything when the
// host cannot make the sandbox, saying why.
func New(ctx context.Context, s Spec) (*Command, error) {
	mode, err := CurrentMode()
	if err != nil {
		return nil, err
	}
	if len(s.Argv) == 0 {
		return nil, errors.New("sandbox: nothing to run")
	}
	if err := checkRoot(s.Root); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: finding cosa's own binary: %w", err)
	}
	c := &Command{mode: mode}
	c.spec = initSpec{Chroot: s.Chroot, Guest: s.Guest, Argv: s.Argv, Env: s.Env, KeepCaps: s.KeepCaps, Rootless: mode == Nested}
	if !s.Chroot && !filepath.IsAbs(s.Guest) {
		return nil, errors.New("sandbox: Guest must be an absolute path")
	}
	// The tree and every bind are handed over as detached mounts made here,
	// where every host path resolves; the sandbox's root could not walk a
	// 0700 parent directory on its own.
	trees := append([]Bind{{s.Root, "/"}}, s.Binds...)
	for _, b := range trees {
		fd, err := unix.OpenTree(unix.AT_FDCWD, b.Host, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			c.Cleanup()
			return nil, fmt.Errorf("sandbox: cloning the mount of %s: %w", b.Host, err)
		}
		c.mounts = append(c.mounts, fd)
		c.spec.Mounts = append(c.spec.Mounts, b.Guest)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.Cleanup()
		return nil, err
	}
	c.sock = os.NewFile(uintptr(pair[0]), "sandbox-control")
	child := os.NewFile(uintptr(pair[1]), "sandbox-control-child")
	c.closers = append(c.closers, child)

	// The binary is run through an open fd: the sandbox's root may not
	// be allowed to walk to where cosa (or a test binary) lives.
	exe, err := os.Open(self)
	if err != nil {
		c.Cleanup()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	c.closers = append(c.closers, exe)
	// Not a hostcmd.Cmd: the sandbox needs extra files, namespaces and id
	// maps, which only exec.Cmd offers; Start still goes through
	// hostcmd.StartExec (Pdeathsig from a thread that stays).
	cmd := exec.CommandContext(ctx, "/proc/self/fd/4")
	cmd.Args = []string{initArg0}
	cmd.ExtraFiles = []*os.File{child, exe}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		// If cosa dies, the sandbox's init dies, and with it every
		// process in its pid namespace.
		Pdeathsig: syscall.SIGKILL,
	}
	if mode == Idmapped {
		m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: idBase(), Size: idCount}}
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings, cmd.SysProcAttr.GidMappings = m, m
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// cosa's own uid is not in the map: become the namespace's root,
		// or exec would drop every capability.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	// Rootless, cosa's own namespace already makes its root the user on
	// the host. A nested one could not map its root to that root anyway
	// (the kernel refuses to map a parent's root without CAP_SETFCAP over
	// the host's namespace), so the sandbox stays in cosa's.
	c.Cmd = cmd
	return c, nil
}

// Start starts the process and hands it its mounts.
func (c *Command) Start() error {
	if err := hostcmd.StartExec(c.Cmd); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, cl := range c.closers {
		cl.Close()
	}
	c.closers = nil
	if err := c.handOver(); err != nil {
		c.Cmd.Process.Kill()
		c.Cmd.Wait()
		return err
	}
	return nil
}

func (c *Command) handOver() error {
	if c.mode == Idmapped {
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", c.Cmd.Process.Pid))
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		defer ns.Close()
		// Only the tree is idmapped: binds are cosa's own directories and
		// the sandbox reads them as "other".
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
		if err := unix.MountSetattr(c.mounts[0], "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("sandbox: idmapped mount of the tree (needs Linux 5.12+ and a file system that supports it): %w", err)
		}
	}
	data, err := json.Marshal(c.spec)
	if err != nil {
		return err
	}
	rights := unix.UnixRights(c.mounts...)
	if err := unix.Sendmsg(int(c.sock.Fd()), data, rights, nil, 0); err != nil {
		return fmt.Errorf("sandbox: handing over the mounts: %w", err)
	}
	return nil
}

// Cleanup closes what New opened.
func (c *Command) Cleanup() {
	for _, fd := range c.mounts {
		unix.Close(fd)
	}
	c.mounts = nil
	for _, cl := range c.closers {
		cl.Close()
	}
	c.closers = nil
	if c.sock != nil {
		c.sock.Close()
		c.sock = nil
	}
}

// Run runs s with output to out and waits for it.
func Run(ctx context.Context, s Spec, stdout, stderr io.Writer) error {
	c, err := New(ctx, s)
	if err != nil {
		return err
	}
	defer c.Cleanup()
	c.Cmd.Stdout, c.Cmd.Stderr = stdout, stderr
	if err := c.Start(); err != nil {
		return err
	}
	return c.Cmd.Wait()
}

// checkRoot refuses a tree whose top is a symlink: mounting it would mount
// whatever the link names.
func checkRoot(root string) error {
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("sandbox: %s is not a directory", root)
	}
	return nil
}
