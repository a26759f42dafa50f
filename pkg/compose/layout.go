package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// FindKernels lists kernels with modules and a /boot image in root.
func FindKernels(root string) ([]Kernel, error) {
	entries, err := os.ReadDir(filepath.Join(root, "usr/lib/modules"))
	if err != nil {
		return nil, fmt.Errorf("no kernel modules in the composed root: %w", err)
	}
	var ks []Kernel
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v := e.Name()
		if exists(filepath.Join(root, "boot", "vmlinuz-"+v)) || exists(filepath.Join(root, "usr/lib/modules", v, "vmlinuz")) {
			ks = append(ks, Kernel{Version: v})
		}
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("the composed root has no kernel (add a linux-image package to packages)")
	}
	return ks, nil
}

// ToOstreeLayout rearranges a composed Debian root into what `ostree commit
// --bootable` and `ostree admin deploy` expect (DESIGN.md section 9). The
// initramfs must already be at usr/lib/modules/KVER/initramfs.img.
func ToOstreeLayout(root string) error {
	ks, err := FindKernels(root)
	if err != nil {
		return err
	}
	for _, k := range ks {
		modDir := filepath.Join(root, "usr/lib/modules", k.Version)
		if src := filepath.Join(root, "boot", "vmlinuz-"+k.Version); exists(src) {
			if err := os.Rename(src, filepath.Join(modDir, "vmlinuz")); err != nil {
				return err
			}
		}
		for _, f := range []string{"vmlinuz", "initramfs.img"} {
			if err := os.Chmod(filepath.Join(modDir, f), 0o644); err != nil {
				return fmt.Errorf("kernel %s: %w", k.Version, err)
			}
		}
	}
	// Debian's kernel hooks leave /vmlinuz, /initrd.img (+.old) links into
	// /boot; ostree manages boot files itself, so /boot ships empty.
	for _, l := range []string{"vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"} {
		os.Remove(filepath.Join(root, l))
	}
	for _, d := range []string{"boot", "dev", "proc", "sys", "run", "tmp"} {
		if err := emptyDir(filepath.Join(root, d)); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky); err != nil {
		return err
	}

	// /var -> factory, plus tmpfiles.d lines to recreate it.
	factory := filepath.Join(root, factoryVar)
	if err := os.MkdirAll(filepath.Dir(factory), 0o755); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(root, "var"), factory); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(root, "var"), 0o755); err != nil {
		return err
	}
	var tmpfiles []string
	for _, l := range varLinks {
		p := filepath.Join(root, l.path)
		fi, err := os.Lstat(p)
		mode := "0755"
		if l.varDir == "roothome" {
			mode = "0700"
		}
		switch {
		case err == nil && fi.IsDir():
			dst := filepath.Join(factory, l.varDir)
			// Debian ships an empty /var/opt (and maybe others): the
			// top-level directory's content wins over an empty one.
			if n, err := os.ReadDir(dst); err == nil && len(n) == 0 {
				os.Remove(dst)
			}
			if err := os.Rename(p, dst); err != nil {
				return err
			}
			if n, _ := os.ReadDir(dst); len(n) > 0 {
				tmpfiles = append(tmpfiles, fmt.Sprintf("C /var/%s - - - - /%s/%s", l.varDir, factoryVar, l.varDir))
			} else {
				tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
			}
		case err == nil:
			if err := os.Remove(p); err != nil {
				return err
			}
			tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
		case os.IsNotExist(err):
			tmpfiles = append(tmpfiles, fmt.Sprintf("d /var/%s %s root root -", l.varDir, mode))
		default:
			return err
		}
		if err := os.Symlink(l.target, p); err != nil {
			return err
		}
	}
	// State that packages keep under /var/lib, /var/cache and /var/spool
	// (dpkg's database, debconf's answers, ...) is copied in on first boot.
	for _, sub := range []string{"lib", "cache", "spool"} {
		entries, _ := os.ReadDir(filepath.Join(factory, sub))
		for _, e := range entries {
			tmpfiles = append(tmpfiles, fmt.Sprintf("C /var/%s/%s - - - - /%s/%s/%s", sub, e.Name(), factoryVar, sub, e.Name()))
		}
	}
	sort.Strings(tmpfiles)
	conf := "# Written by cosa: recreate /var from " + "/" + factoryVar + " on first boot.\n" + strings.Join(tmpfiles, "\n") + "\n"
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/tmpfiles.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/tmpfiles.d/cosa-var.conf"), []byte(conf), 0o644); err != nil {
		return err
	}

	// /etc -> /usr/etc: ostree keeps the pristine config there and merges it
	// with the machine's /etc on every deploy.
	if exists(filepath.Join(root, "usr/etc")) {
		return fmt.Errorf("the composed root already has /usr/etc")
	}
	if err := os.Rename(filepath.Join(root, "etc"), filepath.Join(root, "usr/etc")); err != nil {
		return err
	}
	// An empty machine-id makes systemd treat the first boot as first boot.
	if err := os.WriteFile(filepath.Join(root, "usr/etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "sysroot"), 0o755); err != nil {
		return err
	}
	os.Remove(filepath.Join(root, "ostree"))
	return os.Symlink("sysroot/ostree", filepath.Join(root, "ostree"))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// emptyDir removes everything inside dir, creating dir if missing.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
