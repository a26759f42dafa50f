package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/intree"
	"github.com/cosa-build/cosa/pkg/progress"
	"github.com/cosa-build/cosa/pkg/sandbox"
)

// ComposeOptions configure Compose.
type ComposeOptions struct {
	Config   *config.Config
	Lock     *Lockfile
	CacheDir string
	WorkDir  string // scratch dir owned by the caller; the root is WorkDir/rootfs
	Progress *progress.Reporter
	Log      io.Writer // full output of every tool run
	// NoSkip runs every step even when its inputs provably did not change
	// (a cached initramfs is not reused), and dracut without the fast copy
	// (fastcopy.go); COSA_NO_SKIP=1 sets it.
	NoSkip bool
	// Installed, if set, is called with the root once mmdebstrap has
	// installed the packages into it, before the rest of the compose
	// changes it (not when the base root came from the cache). The caller
	// may read the root meanwhile, never write it.
	Installed func(root string)
}

// Package is one installed package, as dpkg reports it.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

// Result is a composed root in OSTree layout.
type Result struct {
	Root     string
	Packages []Package
	Kernels  []Kernel
	// ReusedInitramfs lists the kernel versions whose initramfs was the
	// cached one, dracut not having run (see initramfs.go).
	ReusedInitramfs []string
	// State says which paths of Root the build changed on top of the base
	// tree (see TreeState); nil when that is not known.
	State *TreeState
}

// Compose builds the root filesystem; see the package doc for the steps.
func Compose(ctx context.Context, o ComposeOptions) (*Result, error) {
	// The manifest as it applies to the arch the packages were fetched for.
	archManifest := o.Config.Manifest.ForArch(o.Lock.Arch)
	m := &archManifest
	p := o.Progress
	debs := DebsDir(o.CacheDir)
	step := p.Start("compose: verify package cache")
	err := o.Lock.VerifyCache(debs)
	if err := step.Done(err); err != nil {
		return nil, err
	}
	root := filepath.Join(o.WorkDir, "rootfs")
	stage := filepath.Join(o.WorkDir, "stage") // bound at /run/cosa in the sandbox
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return nil, err
	}

	if !o.NoSkip {
		wait := prebuildTools(ctx, o.CacheDir)
		defer wait()
	}
	key := BaseKey(m, o.Lock)
	var baseID string // the base tree's instance, for the initramfs cache
	if hasBase(o.CacheDir, key) {
		step = p.Start(fmt.Sprintf("compose: copy the cached base root (%d packages, unchanged)", len(o.Lock.Packages)))
		baseID, err = restoreBase(ctx, o.CacheDir, key, root)
		if err := step.Done(err); err != nil {
			return nil, err
		}
	} else {
		step = p.Start(fmt.Sprintf("compose: install %d packages with mmdebstrap (offline)", len(o.Lock.Packages)))
		err = runMmdebstrap(ctx, o, m, root, debs)
		if err := step.Done(err); err != nil {
			return nil, err
		}
		step = p.Start("compose: cache the base root")
		baseID, err = saveBase(ctx, o.CacheDir, key, root)
		if err := step.Done(err); err != nil {
			return nil, err
		}
		// Not before saveBase's copy: that keeps both cores busy (cp and
		// the kernel's writeback), where the steps after it leave one idle.
		if o.Installed != nil {
			o.Installed(root)
		}
	}
	// Everything changed in the tree from here on has a ctime at or after
	// the mark; without one, nothing is reused.
	baseDone, err := changeMark(o.WorkDir)
	if err != nil {
		p.Infof("warning: initramfs cache: %v", err)
		baseID = ""
	}
	var origins map[uint64]string
	if baseID != "" {
		if origins, err = dirOrigins(root); err != nil {
			p.Infof("warning: tree state: %v", err)
			origins = nil
		}
	}
	// mmdebstrap leaves its own apt/dpkg settings and our file:// source;
	// the image should point at the real archive.
	var list strings.Builder
	for _, s := range o.Lock.Sources {
		list.WriteString(s + "\n")
	}
	if err := pointAptAtArchive(root, list.String()); err != nil {
		return nil, err
	}
	if err := installImageKeyrings(o.Config, m.Repos, root); err != nil {
		return nil, err
	}
	sandbox := func(argv ...string) error {
		return RunInRoot(ctx, root, []Bind{{Host: stage, Guest: "/run/cosa"}}, argv, o.Log)
	}

	overlays, err := o.Config.OverlayDirs()
	if err != nil {
		return nil, err
	}
	if len(overlays) > 0 {
		step = p.Start(fmt.Sprintf("compose: apply %d overlays", len(overlays)))
		err = applyOverlays(ctx, overlays, stage, sandbox)
		if err := step.Done(err); err != nil {
			return nil, err
		}
	}

	u := m.Units
	if len(u.Enable)+len(u.Disable)+len(u.Mask) > 0 {
		step = p.Start("compose: systemd units")
		err = nil
		for _, x := range []struct {
			verb  string
			units []string
		}{{"enable", u.Enable}, {"disable", u.Disable}, {"mask", u.Mask}} {
			if len(x.units) > 0 && err == nil {
				err = sandbox(append([]string{"systemctl", x.verb}, x.units...)...)
			}
		}
		if err := step.Done(err); err != nil {
			return nil, err
		}
	}

	// Hostname and users come before the postprocess scripts, so that
	// those can build on them.
	if m.Hostname != "" {
		step = p.Start("compose: hostname " + m.Hostname)
		err := sandbox(hostnameArgv(m.Hostname)...)
		if err := step.Done(err); err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
	}
	if len(m.Users) > 0 {
		step = p.Start(fmt.Sprintf("compose: %d users", len(m.Users)))
		err := applyUsers(m.Users, stage, sandbox)
		if err := step.Done(err); err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
	}

	for _, script := range m.Postprocess {
		step = p.Start("compose: postprocess " + script)
		err := runPostprocess(o.Config.Dir, script, stage, sandbox)
		if err := step.Done(err); err != nil {
			return nil, fmt.Errorf("postprocess %s: %w", script, err)
		}
	}

	kernels, err := FindKernels(root)
	if err != nil {
		return nil, err
	}
	var delta []deltaEntry
	if baseID != "" && len(kernels) > 0 {
		if delta, err = scanDelta(root, baseDone); err != nil {
			return nil, err
		}
	}
	var reused []string
	for _, k := range kernels {
		// NoSkip runs dracut but still caches its image: a no-skip build
		// is a correct one.
		if img, rec, ok := lookupInitramfs(o.CacheDir, baseID, k.Version, delta); ok && !o.NoSkip {
			step = p.Start("compose: initramfs for " + k.Version + ": reused (nothing dracut reads changed)")
			err := installInitramfs(ctx, img, rec, k.Version, stage, sandbox)
			if err := step.Done(err); err != nil {
				return nil, err
			}
			reused = append(reused, k.Version)
			continue
		}
		argv, label := dracutArgv(k.Version), "compose: initramfs for "+k.Version
		if !o.NoSkip {
			// NoSkip is also the reference for the fast copy and the
			// fast ldd: dracut as it comes.
			var fast []string
			if guest, why := fastCopyInto(ctx, o.CacheDir, root, stage); guest != "" {
				argv, fast = withFastCopy(argv, guest), append(fast, "in-process copies")
			} else if why != nil {
				p.Infof("note: dracut copies its files with cp(1): %v", why)
			}
			if guest, why := fastLddInto(ctx, o.CacheDir, root, stage); guest != "" {
				argv, fast = withFastLdd(argv, guest), append(fast, "direct ldd")
			} else if why != nil {
				p.Infof("note: dracut runs ldd(1) as it comes: %v", why)
			}
			if len(fast) > 0 {
				label += " (" + strings.Join(fast, ", ") + ")"
			}
		}
		step = p.Start(label)
		err := sandbox(argv...)
		var files []string
		if err == nil {
			files, err = compressInitramfs(ctx, root, k.Version)
		}
		if err := step.Done(err); err != nil {
			return nil, err
		}
		if baseID != "" {
			// A cache that cannot be written costs the next build time,
			// not this build.
			if err := storeInitramfs(ctx, o.CacheDir, baseID, k.Version, filepath.Join(root, initramfsPath(k.Version)), delta, files); err != nil {
				p.Infof("warning: initramfs cache: %v", err)
			}
		}
	}
	if len(m.RemoveFiles) > 0 {
		args := []string{"rm", "-rf", "--"}
		for _, f := range m.RemoveFiles {
			args = append(args, "/"+strings.TrimPrefix(f, "/"))
		}
		if err := sandbox(args...); err != nil {
			return nil, err
		}
	}
	pkgs, err := installedPackages(ctx, root, stage)
	if err != nil {
		return nil, err
	}
	step = p.Start("compose: convert to the OSTree layout")
	err = ToOstreeLayout(root)
	if err := step.Done(err); err != nil {
		return nil, err
	}
	res := &Result{Root: root, Packages: pkgs, Kernels: kernels, ReusedInitramfs: reused}
	if origins != nil {
		// Without it the commit hashes the whole tree: slower, not wrong.
		if res.State, err = scanTreeState(root, baseID, baseDone, origins); err != nil {
			p.Infof("warning: tree state: %v", err)
			res.State = nil
		}
	}
	return res, nil
}

// pointAptAtArchive drops mmdebstrap's own apt/dpkg settings and writes
// the real sources.list. Packages made the tree, so it is opened as an
// os.Root: a symlinked etc/apt cannot redirect these writes to the host.
func pointAptAtArchive(root, sources string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, f := range []string{"etc/apt/apt.conf.d/99mmdebstrap", "etc/dpkg/dpkg.cfg.d/99mmdebstrap"} {
		if err := r.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("composed root: %w", intree.Explain(err))
		}
	}
	if err := intree.ReplaceFile(r, "etc/apt/sources.list", []byte(sources), 0o644); err != nil {
		return fmt.Errorf("composed root: %w", intree.Explain(err))
	}
	return nil
}

// installImageKeyrings puts the config repos' keyrings where the image's
// apt sources (written by pointAptAtArchive from the lock) expect them.
func installImageKeyrings(cfg *config.Config, repos []config.Repo, root string) error {
	if len(repos) == 0 {
		return nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	dir := strings.TrimPrefix(ImageKeyringDir, "/")
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("composed root: %w", intree.Explain(err))
	}
	for _, repo := range repos {
		data, err := readKeyring(cfg, repo)
		if err != nil {
			return err
		}
		if err := intree.ReplaceFile(r, dir+"/"+KeyringName(repo), data, 0o644); err != nil {
			return fmt.Errorf("composed root: %w", intree.Explain(err))
		}
	}
	return nil
}

// MmdebstrapArgs are the mmdebstrap arguments Compose uses to install the
// config's packages into root from the flat repo of .debs at debs (an
// absolute path). Exported so the benchmark's reference run is the same
// call, not a copy that can drift.
func MmdebstrapArgs(m *config.Manifest, suite, root, debs string) []string {
	excluded := map[string]bool{}
	for _, e := range m.ExcludePackages {
		excluded[e] = true
	}
	var include []string
	for _, p := range m.Packages {
		if !excluded[p] {
			include = append(include, p)
		}
	}
	return []string{
		"--mode=unshare",
		"--variant=" + m.Distro.Variant,
		"--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
		"--include=" + strings.Join(include, ","),
		`--aptopt=APT::Install-Recommends "false"`,
		"--dpkgopt=force-unsafe-io",
		suite, root,
		"deb [trusted=yes] file://" + debs + " ./",
	}
}

// Where mmdebstrap's sandbox sees the tree it makes and the package cache.
const (
	guestRoot = "/tmp/rootfs"
	guestDebs = "/tmp/debs"
)

func runMmdebstrap(ctx context.Context, o ComposeOptions, m *config.Manifest, root, debs string) error {
	absDebs, err := filepath.Abs(debs)
	if err != nil {
		return err
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	// mmdebstrap and the maintainer scripts it runs are sandboxed like the
	// postprocess scripts: their root is an unprivileged id on the host,
	// which sees only the (idmapped) tree as its own, reads the package
	// cache, and has no network, proving the build needs none. Every mount
	// mmdebstrap makes dies with the sandbox's mount namespace, even if it
	// is killed, so no later rm -rf of the root can reach through one.
	args := MmdebstrapArgs(m, o.Lock.Suite, guestRoot, guestDebs)
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "TMPDIR=/tmp",
		// INITRD=No stops Debian's kernel hook from building an initramfs
		// we would throw away; Compose builds the ostree-capable one itself.
		"INITRD=No", "LC_ALL=C.UTF-8",
	}
	tail := hostcmd.NewTail(30)
	var w io.Writer = tail
	if o.Log != nil {
		w = io.MultiWriter(o.Log, tail)
	}
	err = sandbox.Run(ctx, sandbox.Spec{Root: root, Guest: guestRoot, Binds: []sandbox.Bind{{Host: absDebs, Guest: guestDebs}},
		Argv: append([]string{"mmdebstrap"}, args...), Env: env, KeepCaps: true}, w, w)
	if err != nil {
		return fmt.Errorf("mmdebstrap: %v\n%s", err, tail.String())
	}
	return nil
}

// applyOverlays copies each overlay tree over the root from inside the
// sandbox, so symlinks in the root resolve inside it and never onto the host;
// tar keeps existing directory symlinks (/lib -> usr/lib) intact.
func applyOverlays(ctx context.Context, overlays []string, stage string, sandbox func(...string) error) error {
	for i, dir := range overlays {
		name := fmt.Sprintf("overlay-%02d.tar", i)
		if err := hostcmd.Run(ctx, "tar", "-C", dir, "--owner=0", "--group=0", "--numeric-owner",
			"--sort=name", "-cf", filepath.Join(stage, name), "."); err != nil {
			return fmt.Errorf("overlay %s: %w", filepath.Base(dir), err)
		}
		if err := sandbox("tar", "-xpf", "/run/cosa/"+name, "-C", "/", "--keep-directory-symlink", "--no-overwrite-dir"); err != nil {
			return fmt.Errorf("overlay %s: %w", filepath.Base(dir), err)
		}
		os.Remove(filepath.Join(stage, name))
	}
	return nil
}

func runPostprocess(configDir, script, stage string, sandbox func(...string) error) error {
	data, err := os.ReadFile(filepath.Join(configDir, script))
	if err != nil {
		return err
	}
	name := "postprocess-" + filepath.Base(script)
	if err := os.WriteFile(filepath.Join(stage, name), data, 0o755); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(stage, name))
	argv := []string{"/run/cosa/" + name}
	if !bytes.HasPrefix(data, []byte("#!")) {
		argv = []string{"/bin/sh", "-e", "/run/cosa/" + name}
	}
	return sandbox(argv...)
}

func installedPackages(ctx context.Context, root, stage string) ([]Package, error) {
	var out bytes.Buffer
	if err := RunInRoot(ctx, root, nil, []string{"dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"}, &out); err != nil {
		return nil, err
	}
	var pkgs []Package
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 3 {
			pkgs = append(pkgs, Package{f[0], f[1], f[2]})
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("dpkg-query listed no packages in the composed root")
	}
	return pkgs, nil
}

// installInitramfs puts the cached image into the tree from inside the
// sandbox, so it gets the owner dracut's would have had, with the mode
// dracut gave it.
func installInitramfs(ctx context.Context, img string, rec *initramfsRecord, kver, stage string, sandbox func(...string) error) error {
	name := "initramfs-" + kver + ".img"
	staged := filepath.Join(stage, name)
	os.Remove(staged)
	if err := copyFile(ctx, img, staged); err != nil {
		return err
	}
	defer os.Remove(staged)
	// The copy is the host's: readable by all, or the sandbox's root,
	// which is nobody to the host, cannot read it.
	if err := os.Chmod(staged, 0o644); err != nil {
		return err
	}
	return sandbox("install", "-m", fmt.Sprintf("%o", rec.Mode.Perm()), "/run/cosa/"+name, initramfsPath(kver))
}
