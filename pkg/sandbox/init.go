package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// scratch is where the sandbox's init builds its view: a tmpfs of its own
// over /tmp in the sandbox's mount namespace (the host's /tmp is not
// touched, and the sandbox never sees it).
const scratch = "/tmp"

// keepCaps is the bounding set of a chroot sandbox: file owners and modes,
// setuid/setgid to drop privileges, chroot, signals, binding low ports.
// Dropped: mounting, modules, raw devices and networking, ptrace, time,
// and the rest.
var keepCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP,
}

// devNodes are the only device nodes a chroot sandbox gets, bound from
// the host's.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// sandboxInit runs as pid 1 of the sandbox, in its new namespaces, before
// anything else in cosa's binary: it builds the mounts and execs the
// command, or reports why not and exits 125.
func sandboxInit() {
	// Capabilities are per thread: the thread that drops them must be the
	// one that execs.
	runtime.LockOSThread()
	if err := initAndExec(); err != nil {
		fmt.Fprintf(os.Stderr, "cosa sandbox: %v\n", err)
		os.Exit(125)
	}
}

func initAndExec() error {
	unix.CloseOnExec(4) // cosa's own binary, which the command must not get
	spec, fds, err := receive(3)
	if err != nil {
		return err
	}
	if len(fds) != len(spec.Mounts) || len(fds) == 0 {
		return fmt.Errorf("got %d mounts for %d places", len(fds), len(spec.Mounts))
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private mounts: %w", err)
	}
	if err := unix.Mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("scratch tmpfs: %w", err)
	}
	if !spec.Chroot {
		for i, g := range spec.Mounts {
			if i == 0 {
				g = spec.Guest
			}
			if err := attach(fds[i], g); err != nil {
				return err
			}
		}
		// The caller's working directory may be one the sandbox's
		// unprivileged root cannot reach (a service's 0770 state dir):
		// tools that stat it at start (perl's File::Temp) then complain.
		if err := os.Chdir("/"); err != nil {
			return err
		}
		return execute(spec, false)
	}

	root := filepath.Join(scratch, "root")
	if err := attach(fds[0], root); err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp"} {
		if err := mountPoint(d); err != nil {
			return err
		}
	}
	if err := unix.Mount("proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := unix.Mount("sysfs", "sys", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	if err := minimalDev("dev"); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting /run: %w", err)
	}
	for i := 1; i < len(fds); i++ {
		g := "." + filepath.Clean("/"+spec.Mounts[i])
		if err := os.MkdirAll(g, 0o755); err != nil {
			return fmt.Errorf("bind %s: %w", spec.Mounts[i], err)
		}
		if err := attach(fds[i], g); err != nil {
			return err
		}
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return execute(spec, !spec.KeepCaps)
}

// receive reads the spec and the mount fds from the control socket.
func receive(fd int) (*initSpec, []int, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(64*4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the control socket: %w", err)
	}
	unix.Close(fd)
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, err
	}
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, nil, err
		}
		fds = append(fds, f...)
	}
	var spec initSpec
	if err := json.Unmarshal(buf[:n], &spec); err != nil {
		return nil, nil, fmt.Errorf("control message: %w", err)
	}
	return &spec, fds, nil
}

// attach puts a detached mount at path, creating the directory.
func attach(fd int, path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching %s: %w", path, err)
	}
	unix.Close(fd)
	return nil
}

// mountPoint makes sure the tree has a real directory d to mount on: a
// symlink there would carry the mount (and what the script writes under
// it) somewhere else.
func mountPoint(d string) error {
	fi, err := os.Lstat(d)
	if errors.Is(err, os.ErrNotExist) {
		return os.Mkdir(d, 0o755)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the tree's /%s is not a directory (a symlink?); refusing to mount there", d)
	}
	return nil
}

func minimalDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, n := range devNodes {
		p := filepath.Join(dev, n)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+n, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", n, err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mounting /dev/pts: %w", err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

func execute(spec *initSpec, dropCaps bool) error {
	path := spec.Argv[0]
	if !strings.Contains(path, "/") {
		for _, kv := range spec.Env {
			if p, ok := strings.CutPrefix(kv, "PATH="); ok {
				os.Setenv("PATH", p)
			}
		}
		lp, err := exec.LookPath(path)
		if err != nil {
			return err
		}
		path = lp
	}
	if dropCaps {
		if err := dropCapabilities(); err != nil {
			return err
		}
	}
	return syscall.Exec(path, spec.Argv, spec.Env)
}

func dropCapabilities() error {
	last := unix.CAP_LAST_CAP
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	keep := map[int]bool{}
	for _, c := range keepCaps {
		keep[c] = true
	}
	for c := 0; c <= last; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	// Root regains its bounding set on exec, and inheritable capabilities
	// would be added to it: clear those, keep the rest.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	var mask [2]uint32
	for _, c := range keepCaps {
		mask[c/32] |= 1 << (c % 32)
	}
	for i := range data {
		data[i].Inheritable = 0
		data[i].Effective &= mask[i]
		data[i].Permitted &= mask[i]
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	return nil
}
