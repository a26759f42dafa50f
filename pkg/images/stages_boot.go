package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/pkg/intree"
)

func init() {
	register("org.cosa.ostree.fstab", func() StageImpl { return &OSTreeFstab{} })
	register("org.cosa.grub2.bls-config", func() StageImpl { return &GrubBLSConfig{} })
}

// FstabEntry is one line of /etc/fstab, filesystems found by label.
type FstabEntry struct {
	Label   string `json:"label"`
	Path    string `json:"path"`
	FSType  string `json:"fstype"`
	Options string `json:"options"`
	Freq    int    `json:"freq"`
	PassNo  int    `json:"passno"`
}

// OSTreeFstab writes /etc/fstab into every deployment of osname. The root
// filesystem is mounted by the initramfs (root= karg), so it needs no line.
type OSTreeFstab struct {
	OSName  string       `json:"osname"`
	Entries []FstabEntry `json:"entries"`
}

func (s *OSTreeFstab) Validate() error {
	if !osnameRE.MatchString(s.OSName) {
		return fmt.Errorf("osname: %q is not a valid OS name", s.OSName)
	}
	for i, e := range s.Entries {
		if e.Label == "" || !strings.HasPrefix(e.Path, "/") || e.FSType == "" || strings.ContainsAny(e.Label+e.Path+e.FSType+e.Options, " \t\n") {
			return fmt.Errorf("entries[%d]: needs label, absolute path, fstype, and no whitespace", i)
		}
	}
	return nil
}
func (s *OSTreeFstab) Inputs() []string { return nil }
func (s *OSTreeFstab) Run(ctx context.Context, e *Env) error {
	deploys, _ := filepath.Glob(filepath.Join(e.Tree, "ostree/deploy", s.OSName, "deploy", "*.0"))
	if len(deploys) == 0 {
		return fmt.Errorf("no deployment of %s to write fstab into", s.OSName)
	}
	var b strings.Builder
	b.WriteString("# Written by cosa at image build time.\n")
	for _, x := range s.Entries {
		opts := x.Options
		if opts == "" {
			opts = "defaults"
		}
		fmt.Fprintf(&b, "LABEL=%s %s %s %s %d %d\n", x.Label, x.Path, x.FSType, opts, x.Freq, x.PassNo)
	}
	for _, d := range deploys {
		// The deployment's /etc came from the commit, which a config and
		// its packages made: an etc/fstab symlink must not redirect this
		// write onto the host, so it is replaced, never written through.
		if err := intree.ReplaceFileIn(d, "etc/fstab", []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("fstab in %s: %w", filepath.Base(d), err)
		}
	}
	return nil
}

// GrubBLSConfig writes boot/grub/grub.cfg with one menuentry per Boot
// Loader Specification entry, newest first: Debian's GRUB 2.06 has no
// blscfg command to read the entries itself. It also puts GRUB's module
// directories on /boot so `insmod` works from either firmware.
type GrubBLSConfig struct {
	Timeout int  `json:"timeout"`
	Serial  bool `json:"serial"` // GRUB on the first serial port as well as the screen
}

func (s *GrubBLSConfig) Validate() error {
	if s.Timeout < 0 || s.Timeout > 600 {
		return fmt.Errorf("timeout: %d is out of range 0..600", s.Timeout)
	}
	return nil
}
func (s *GrubBLSConfig) Inputs() []string { return nil }
func (s *GrubBLSConfig) Run(ctx context.Context, e *Env) error {
	boot := filepath.Join(e.Tree, "boot")
	entries, _ := filepath.Glob(filepath.Join(boot, "loader", "entries", "*.conf"))
	if len(entries) == 0 {
		return fmt.Errorf("no BLS entries in boot/loader/entries")
	}
	cfg, err := GrubConfigFromBLS(entries, s.Timeout, s.Serial)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(filepath.Join(boot, "grub")); err == nil && !fi.IsDir() {
		return fmt.Errorf("boot/grub is not a directory")
	}
	if err := os.MkdirAll(filepath.Join(boot, "grub"), 0o755); err != nil {
		return err
	}
	if err := intree.ReplaceFileIn(boot, "grub/grub.cfg", []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, platform := range []string{"i386-pc", "x86_64-efi"} {
		src := filepath.Join("/usr/lib/grub", platform)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("GRUB modules for %s not installed (%s): install grub-pc-bin and grub-efi-amd64-bin", platform, src)
		}
		dst := filepath.Join(boot, "grub", platform)
		if err := e.Cmd(ctx, "cp", "-r", src, dst); err != nil {
			return err
		}
		for _, pat := range []string{"*.image", "*.module"} {
			junk, _ := filepath.Glob(filepath.Join(dst, pat))
			for _, j := range junk {
				os.Remove(j)
			}
		}
	}
	return nil
}

// BLSEntry is the part of a Boot Loader Specification entry GRUB needs.
type BLSEntry struct {
	Title, Linux, Initrd, Options, Version string
}

// ParseBLS reads one entry file.
func ParseBLS(path string) (*BLSEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e := &BLSEntry{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			e.Title = v
		case "linux":
			e.Linux = v
		case "initrd":
			e.Initrd = v
		case "options":
			e.Options = v
		case "version":
			e.Version = v
		}
	}
	if e.Linux == "" {
		return nil, fmt.Errorf("%s: BLS entry without a linux line", path)
	}
	return e, nil
}

// GrubConfigFromBLS renders grub.cfg for entries; ostree names them
// ostree-<N>-<os>.conf with a higher N for newer deployments.
func GrubConfigFromBLS(paths []string, timeout int, serial bool) (string, error) {
	type ent struct {
		n int
		e *BLSEntry
	}
	var list []ent
	for _, p := range paths {
		e, err := ParseBLS(p)
		if err != nil {
			return "", err
		}
		n := 0
		fmt.Sscanf(filepath.Base(p), "ostree-%d-", &n)
		list = append(list, ent{n, e})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].n > list[j].n })
	var b strings.Builder
	b.WriteString("# Generated by cosa from /loader/entries/*.conf; regenerated on every deploy.\n")
	if serial {
		b.WriteString("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n")
	}
	fmt.Fprintf(&b, "set timeout=%d\nset default=0\n", timeout)
	for _, x := range list {
		title := strings.ReplaceAll(x.e.Title, "'", "")
		fmt.Fprintf(&b, "menuentry '%s' {\n  insmod gzio\n  linux %s %s\n", title, x.e.Linux, x.e.Options)
		if x.e.Initrd != "" {
			fmt.Fprintf(&b, "  initrd %s\n", x.e.Initrd)
		}
		b.WriteString("}\n")
	}
	return b.String(), nil
}
