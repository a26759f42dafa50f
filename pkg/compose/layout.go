package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/pkg/intree"
)

// factoryVar is where the composed /var goes: ostree 2022.7 does not deploy
// /var from a commit, so its content is shipped under /usr and recreated on
// first boot by systemd-tmpfiles.
const factoryVar = "usr/share/factory/var"

// varLinks are top-level directories that hold machine-local state; on an
// OSTree system they live in /var, and the root keeps symlinks to them.
var varLinks = []struct{ path, target, varDir string }{
	{"home", "var/home", "home"},
	{"root", "var/roothome", "roothome"},
	{"opt", "var/opt", "opt"},
	{"srv", "var/srv", "srv"},
	{"mnt", "var/mnt", "mnt"},
}

// Kernel is one kernel found in the composed root.
type Kernel struct {
	Version string // e.g. 6.1.0-26-amd64
}

// The composed root is made by packages and a config cosa does not trust,
// and this code runs on the host as the user who runs cosa: every path in
// it goes through an os.Root, so a symlink in the tree (/tmp -> /etc) is
// resolved inside the tree or refused, never followed onto the host.

// FindKernels lists kernels with modules and a /boot image in root.
func FindKernels(root string) ([]Kernel, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return findKernels(r)
}

func findKernels(r *os.Root) ([]Kernel, error) {
	entries, err := fs.ReadDir(r.FS(), "usr/lib/modules")
	if err != nil {
		return nil, fmt.Errorf("no kernel modules in the composed root: %w", intree.Explain(err))
	}
	var ks []Kernel
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v := e.Name()
		if isFile(r, "boot/vmlinuz-"+v) || isFile(r, "usr/lib/modules/"+v+"/vmlinuz") {
			ks = append(ks, Kernel{Version: v})
		}
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("the composed root has no kernel (add a linux-image package to packages)")
	}
	return ks, nil
}

// ToOstreeLayout rearranges a composed Debian root into what `ostree commit
// --bootable` and `ostree admin deploy` expect (docs/architecture.md#the-ostree-layout). The
// initramfs must already be at usr/lib/modules/KVER/initramfs.img.
func ToOstreeLayout(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := toOstreeLayout(r); err != nil {
		return fmt.Errorf("OSTree layout: %w", intree.Explain(err))
	}
	return nil
}

func toOstreeLayout(r *os.Root) error {
	ks, err := findKernels(r)
	if err != nil {
		return err
	}
	for _, k := range ks {
		modDir := "usr/lib/modules/" + k.Version
		if src := "boot/vmlinuz-" + k.Version; isFile(r, src) {
			if err := r.Rename(src, modDir+"/vmlinuz"); err != nil {
				return err
			}
		}
		for _, f := range []string{"vmlinuz", "initramfs.img"} {
			// Both must be regular files: a symlink here would make the
			// chmod land on whatever it names.
			p := modDir + "/" + f
			if !isFile(r, p) {
				return fmt.Errorf("kernel %s: /%s is not a regular file", k.Version, p)
			}
			if err := r.Chmod(p, 0o644); err != nil {
				return fmt.Errorf("kernel %s: %w", k.Version, err)
			}
		}
	}
	// Debian's kernel hooks leave /vmlinuz, /initrd.img (+.old) links into
	// /boot; ostree manages boot files itself, so /boot ships empty.
	for _, l := range []string{"vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"} {
		if err := r.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for _, d := range []string{"boot", "dev", "proc", "sys", "run", "tmp"} {
		if err := intree.EmptyDir(r, d); err != nil {
			return err
		}
	}
	if err := r.Chmod("tmp", 0o777|os.ModeSticky); err != nil {
		return err
	}

	// /var -> factory, plus tmpfiles.d lines to recreate it.
	if err := realDir(r, "var"); err != nil {
		return err
	}
	if err := r.MkdirAll(path.Dir(factoryVar), 0o755); err != nil {
		return err
	}
	if err := r.Rename("var", factoryVar); err != nil {
		return err
	}
	if err := r.Mkdir("var", 0o755); err != nil {
		return err
	}
	var tmpfiles []string
	for _, l := range varLinks {
		fi, err := r.Lstat(l.path)
		mode := "0755"
		if l.varDir == "roothome" {
			mode = "0700"
		}
		switch {
		case err == nil && fi.IsDir():
			dst := factoryVar + "/" + l.varDir
			// Debian ships an empty /var/opt (and maybe others): the
			// top-level directory's content wins over an empty one.
			if fi, err := r.Lstat(dst); err == nil && fi.IsDir() {
				if n, err := fs.ReadDir(r.FS(), dst); err == nil && len(n) == 0 {
					r.Remove(dst)
				}
			}
			if err := r.Rename(l.path, dst); err != nil {
				return err
			}
			if n, _ := fs.ReadDir(r.FS(), dst); len(n) > 0 {
				tmpfiles = append(tmpfiles, fmt.Sprintf("C /var/%s - - - - /%s/%s", l.varDir, factoryVar, l.varDir))
			} else {
				tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
			}
		case err == nil:
			if err := r.Remove(l.path); err != nil {
				return err
			}
			tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
		case errors.Is(err, fs.ErrNotExist):
			tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
		default:
			return err
		}
		if err := r.Symlink(l.target, l.path); err != nil {
			return err
		}
	}
	// State that packages keep under /var/lib, /var/cache and /var/spool
	// (dpkg's database, debconf's answers, ...) is copied in on first boot.
	for _, sub := range []string{"lib", "cache", "spool"} {
		p := factoryVar + "/" + sub
		if fi, err := r.Lstat(p); err != nil || !fi.IsDir() {
			continue
		}
		entries, _ := fs.ReadDir(r.FS(), p)
		for _, e := range entries {
			tmpfiles = append(tmpfiles, fmt.Sprintf("C /var/%s/%s - - - - /%s/%s/%s", sub, e.Name(), factoryVar, sub, e.Name()))
		}
	}
	sort.Strings(tmpfiles)
	conf := "# Written by cosa: recreate /var from " + "/" + factoryVar + " on first boot.\n" + strings.Join(tmpfiles, "\n") + "\n"
	if err := r.MkdirAll("usr/lib/tmpfiles.d", 0o755); err != nil {
		return err
	}
	if err := intree.ReplaceFile(r, "usr/lib/tmpfiles.d/cosa-var.conf", []byte(conf), 0o644); err != nil {
		return err
	}

	// /etc -> /usr/etc: ostree keeps the pristine config there and merges it
	// with the machine's /etc on every deploy.
	if _, err := r.Lstat("usr/etc"); err == nil {
		return fmt.Errorf("the composed root already has /usr/etc")
	}
	if err := realDir(r, "etc"); err != nil {
		return err
	}
	if err := r.Rename("etc", "usr/etc"); err != nil {
		return err
	}
	// An empty machine-id makes systemd treat the first boot as first boot.
	// 0644, as Debian ships it: with 0444 systemd 252 finished first boot
	// later, after the serial getty took the console, so "Reached target
	// Multi-User System" never reached the console (seen in the e2e boot).
	if err := intree.ReplaceFile(r, "usr/etc/machine-id", nil, 0o644); err != nil {
		return err
	}
	if err := intree.EmptyDir(r, "sysroot"); err != nil {
		return err
	}
	if err := r.Remove("ostree"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if err := r.RemoveAll("ostree"); err != nil {
			return err
		}
	}
	return r.Symlink("sysroot/ostree", "ostree")
}

// isFile reports whether name is a regular file (not a symlink to one).
func isFile(r *os.Root, name string) bool {
	fi, err := r.Lstat(name)
	return err == nil && fi.Mode().IsRegular()
}

// realDir insists that name is a directory, not a symlink to one: the
// layout moves these, and a moved link would leave the tree's content
// behind.
func realDir(r *os.Root, name string) error {
	fi, err := r.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("/%s must be a directory, but the composed root has %s there", name, kind(fi))
	}
	return nil
}

func kind(fi fs.FileInfo) string {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "a symlink"
	case fi.Mode().IsRegular():
		return "a file"
	}
	return "a special file"
}
