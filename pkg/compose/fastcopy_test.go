package compose

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloneDriver does what dracut-install does to copy a file: open both,
// FICLONE, and on success fchown the copy to the source's owner and set
// its times, then close.
const cloneDriver = `#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	struct stat sb;
	if (lstat(argv[1], &sb) != 0) return 2;
	int src = open(argv[1], O_RDONLY | O_CLOEXEC);
	int dst = open(argv[2], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, sb.st_mode & 07777);
	if (src < 0 || dst < 0) return 3;
	if (ioctl(dst, FICLONE, src) != 0) { perror("FICLONE"); return 1; }
	if (fchown(dst, sb.st_uid, sb.st_gid) != 0) return 4;
	struct timeval tv[2] = {{sb.st_atime, 0}, {sb.st_mtime, 0}};
	futimes(dst, tv);
	close(dst);
	close(src);
	return 0;
}
`

// The preload turns a FICLONE the file system refuses into a copy, keeps
// a set-user-ID bit through the fchown after it (as cp --preserve=mode
// does), and leaves the programs its process starts without LD_PRELOAD.
// Without it, the same FICLONE fails here (ext4 or tmpfs), so the test
// shows the preload at work.
func TestFastCopyPreload(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (make deps installs gcc)")
	}
	ctx := context.Background()
	cache := t.TempDir()
	lib, err := fastCopyLib(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(lib)
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("preload %s: %v, mode %v", lib, err, info.Mode())
	}
	if again, err := fastCopyLib(ctx, cache); err != nil || again != lib {
		t.Fatalf("second call: %s, %v; want the cached %s", again, err, lib)
	}
	if now, _ := os.Stat(lib); !os.SameFile(now, info) {
		t.Error("the cached preload was built again")
	}

	dir := t.TempDir()
	driver := filepath.Join(dir, "clone")
	c := exec.Command(cc, "-o", driver, "-x", "c", "-")
	c.Stdin = strings.NewReader(cloneDriver)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("building the driver: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "src")
	content := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	if err := os.WriteFile(src, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	run := func(dst string, preload bool) ([]byte, error) {
		c := exec.Command(driver, src, dst)
		c.Env = os.Environ()
		if preload {
			c.Env = append(c.Env, "LD_PRELOAD="+lib)
		}
		return c.CombinedOutput()
	}
	if out, err := run(filepath.Join(dir, "plain"), false); err == nil {
		t.Skipf("this file system clones (%s): the preload is never asked", out)
	}
	dst := filepath.Join(dir, "copy")
	if out, err := run(dst, true); err != nil {
		t.Fatalf("FICLONE with the preload: %v\n%s", err, out)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("the copy has %d bytes (%v), differing from its source's %d", len(got), err, len(content))
	}
	if st, err := os.Stat(dst); err != nil || st.Mode()&(os.ModeSetuid|os.ModePerm) != os.ModeSetuid|0o755 {
		t.Errorf("the copy's mode is %v, want the source's -rwsr-xr-x", st.Mode())
	}

	c = exec.Command("sh", "-c", `printf '[%s]' "$LD_PRELOAD"`)
	c.Env = append(os.Environ(), "LD_PRELOAD="+lib)
	if out, err := c.Output(); err != nil || string(out) != "[]" {
		t.Errorf("LD_PRELOAD seen under the preload: %q, %v; want it removed", out, err)
	}
}

// withFastCopy sets DRACUT_INSTALL for dracut-install alone, after env
// and before dracut's own arguments, and leaves dracutArgv (the initramfs
// cache key) as it was.
func TestWithFastCopy(t *testing.T) {
	argv := dracutArgv("6.1.0-1-amd64")
	before := strings.Join(argv, "\x00")
	got := withFastCopy(argv, "/run/cosa/x.so")
	if strings.Join(argv, "\x00") != before {
		t.Fatal("withFastCopy changed its input")
	}
	if len(got) != len(argv)+1 || got[0] != "env" || got[1] != "DRACUT_INSTALL=env LD_PRELOAD=/run/cosa/x.so /usr/lib/dracut/dracut-install" ||
		strings.Join(got[2:], "\x00") != strings.Join(argv[1:], "\x00") {
		t.Errorf("withFastCopy: %q", got)
	}
}

// The background build leaves both helpers in the cache, where the dracut
// step's own builds then find them without compiling again.
func TestPrebuildTools(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler (make deps installs gcc)")
	}
	ctx := context.Background()
	cache := t.TempDir()
	prebuildTools(ctx, cache)()
	want := map[string]os.FileMode{fastCopyName: 0o644, fastLddName: 0o755}
	for name, perm := range want {
		info, err := os.Stat(filepath.Join(cache, "tools", name))
		if err != nil || info.Mode().Perm() != perm {
			t.Fatalf("%s after prebuildTools: %v, %v (want mode %v)", name, err, info, perm)
		}
	}
	// Built already: the step's calls return the same files as they are.
	before, _ := os.Stat(filepath.Join(cache, "tools", fastLddName))
	lib, err := fastCopyLib(ctx, cache)
	if err != nil || filepath.Base(lib) != fastCopyName {
		t.Fatalf("fastCopyLib after prebuild: %q, %v", lib, err)
	}
	prog, err := fastLddProg(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(prog)
	if err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the direct ldd was built again: %v", err)
	}
}
