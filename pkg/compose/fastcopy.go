package compose

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// dracut copies every file into its image through dracut-install, which
// first tries a reflink (the FICLONE ioctl) and, when the file system has
// none (ext4 and tmpfs here), forks cp(1) for each file: 1,069 of them for
// the default image. A process costs 2.5 to 4.6 ms to start on this kind
// of VM (measured: 1,000 runs of a static busybox took 2.4 s, of cp 4.6 s),
// so those copies were 5 to 6 s of a 16 s dracut. fastCopySource is a
// preload for dracut-install alone that answers a FICLONE the file system
// refuses by copying the file in the kernel (sendfile), so dracut-install
// takes its in-process path and starts no cp. The image is the same byte
// for byte (checked by the e2e suite against a dracut run without it):
//   - dracut-install's clone path then fchown()s the copy, which clears a
//     set-user-ID bit that cp --preserve=mode keeps (mount and umount have
//     one), so the preload puts the mode back after that fchown;
//   - it removes LD_PRELOAD from its own environment as it loads, so the
//     ldd runs and programs dracut-install starts never see it (ldd would
//     otherwise list it as a dependency, and dracut would copy it in).
//
// It is built from this source with the host's C compiler the first time
// a build needs it and kept in the cache; without a compiler dracut runs
// as it always did. It calls only the kernel (syscall, sendfile) and
// unsetenv, all in every glibc since 2.2.5, so it loads in any glibc tree.
const fastCopySource = `/* cosa: FICLONE by copy for dracut-install (see pkg/compose/fastcopy.go) */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int copied_fd = -1;
static unsigned copied_mode;

__attribute__((constructor)) static void cosa_init(void)
{
	unsetenv("LD_PRELOAD");
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	long r = syscall(SYS_ioctl, fd, req, arg);
	if (r == 0 || req != FICLONE || (errno != EOPNOTSUPP && errno != EXDEV && errno != EINVAL))
		return (int)r;
	int src = (int)arg;
	struct stat st;
	if (syscall(SYS_fstat, src, &st) != 0 || !S_ISREG(st.st_mode) || syscall(SYS_ftruncate, fd, 0) != 0)
		return -1;
	off_t off = 0;
	while (off < st.st_size) {
		ssize_t n = sendfile(fd, src, &off, st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
	}
	copied_fd = fd;
	copied_mode = st.st_mode & 07777;
	return 0;
}

int fchown(int fd, uid_t uid, gid_t gid)
{
	long r = syscall(SYS_fchown, fd, uid, gid);
	if (fd == copied_fd) {
		int e = errno;
		syscall(SYS_fchmod, fd, copied_mode);
		errno = e;
		copied_fd = -1;
	}
	return (int)r;
}

int close(int fd)
{
	if (fd == copied_fd)
		copied_fd = -1;
	return (int)syscall(SYS_close, fd);
}
`

// fastCopyName is the preload's file name in the cache and in the stage
// directory: a new source is a new file.
var fastCopyName = toolName("dracut-fastcopy-", fastCopySource, ".so")

// toolName names a helper built from source: a new source is a new file.
func toolName(prefix, source, suffix string) string {
	h := sha256.Sum256([]byte(source))
	return prefix + hex.EncodeToString(h[:6]) + suffix
}

// toolBuild serializes builds of the helpers within one cosa.
var toolBuild sync.Mutex

// fastCopyLib returns the preload in cacheDir/tools, building it there
// first if needed; "" and the reason when there is no C compiler or it
// failed (dracut then runs without it).
func fastCopyLib(ctx context.Context, cacheDir string) (string, error) {
	return buildTool(ctx, cacheDir, fastCopyName, fastCopySource, 0o644, "-shared", "-fPIC")
}

// prebuildTools compiles dracut's helpers into cacheDir/tools in the
// background. A fresh workdir otherwise pays the compiler (0.4 s here)
// inside the dracut step, on the critical path; started before the
// package installation, which leaves a core idle, it is off that path. The
// returned wait must be called before Compose returns. Errors are left to
// the dracut step, whose own build of each helper says why it is not used.
func prebuildTools(ctx context.Context, cacheDir string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fastCopyLib(ctx, cacheDir)
		fastLddProg(ctx, cacheDir)
	}()
	return func() { <-done }
}

// buildTool returns the helper name (mode perm) in cacheDir/tools,
// compiling it there from the C source with ccArgs first if needed.
func buildTool(ctx context.Context, cacheDir, name, source string, perm os.FileMode, ccArgs ...string) (string, error) {
	dir := filepath.Join(cacheDir, "tools")
	lib := filepath.Join(dir, name)
	if info, err := os.Stat(lib); err == nil && info.Mode().IsRegular() {
		return lib, nil
	}
	toolBuild.Lock()
	defer toolBuild.Unlock()
	if info, err := os.Stat(lib); err == nil && info.Mode().IsRegular() {
		return lib, nil
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", fmt.Errorf("no C compiler (cc) to build it")
	}
	// The compiler works in the system's temp dir, so a killed build
	// leaves nothing in the cache; the result is then placed atomically.
	tmp, err := os.MkdirTemp("", "cosa-tool-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "tool.c")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, name)
	args := append([]string{"-O2", "-Wall", "-Werror"}, ccArgs...)
	if err := hostcmd.Run(ctx, cc, append(args, "-o", out, src)...); err != nil {
		return "", err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Another cosa may have put the same file there meanwhile: either is
	// the same build of the same source.
	if err := fileutil.WriteFileAtomic(lib, data, perm); err != nil {
		return "", err
	}
	return lib, nil
}

// dracutInstallPath is where Debian's dracut keeps dracut-install.
const dracutInstallPath = "usr/lib/dracut/dracut-install"

// fastCopyFits reports whether the preload can load into root's
// dracut-install: a regular ELF file for the same machine and class.
func fastCopyFits(root *os.Root, lib string) bool {
	info, err := root.Lstat(dracutInstallPath)
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	f, err := root.Open(dracutInstallPath)
	if err != nil {
		return false
	}
	defer f.Close()
	tree, err := elf.NewFile(f)
	if err != nil {
		return false
	}
	ours, err := elf.Open(lib)
	if err != nil {
		return false
	}
	defer ours.Close()
	return tree.Machine == ours.Machine && tree.Class == ours.Class
}

// withFastCopy returns dracut's argv (which starts with env) with
// dracut-install run under the preload at guestLib. dracut unsets
// LD_PRELOAD for itself, but takes the dracut-install command line from
// DRACUT_INSTALL (split at spaces), so env sets the preload there for
// dracut-install alone. It is not part of the initramfs cache key: the
// image is the same with it or without.
func withFastCopy(argv []string, guestLib string) []string {
	out := append([]string{}, argv[0], "DRACUT_INSTALL=env LD_PRELOAD="+guestLib+" /"+dracutInstallPath)
	return append(out, argv[1:]...)
}

// fastCopyInto puts the preload in the stage directory (/run/cosa in the
// sandbox) when it fits root's dracut-install, and returns its path there;
// "" when dracut runs without it, with the reason when that is worth
// saying.
func fastCopyInto(ctx context.Context, cacheDir, root, stage string) (string, error) {
	lib, err := fastCopyLib(ctx, cacheDir)
	if err != nil {
		return "", err
	}
	return stageTool(root, stage, lib, fastCopyName, 0o644)
}

// stageTool copies the helper at path into the stage directory as name
// (mode perm) when it fits root's dracut-install, and returns its path in
// the sandbox; "" when it does not fit.
func stageTool(root, stage, path, name string, perm os.FileMode) (string, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return "", err
	}
	defer r.Close()
	if !fastCopyFits(r, path) {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stage, name), data, perm); err != nil {
		return "", err
	}
	return "/run/cosa/" + name, nil
}
