package main

// The mkosi reference: Debian 12's mkosi (version 14) building a bootable
// GPT disk image (ESP with systemd-boot and a unified kernel image made
// with dracut, ext4 root) from cosa's config, as far as mkosi can express
// it. Three things of this host get in mkosi's way, each worked around
// from outside mkosi:
//
//   - the kernel has no vfat driver, so mkosi's mount of the ESP fails:
//     wrapper mount/umount scripts first in PATH stage a vfat partition in
//     a directory (bind-mounted where mkosi asked) and write it back with
//     mkfs.fat and mcopy when it is unmounted;
//   - there is no system bus, so systemd-nspawn must not ask for a scope
//     unit ([Host] NspawnKeepUnit=yes);
//   - bootctl refuses an ESP that is not vfat on a GPT partition, which a
//     staged directory is not: a systemd-nspawn wrapper sets
//     SYSTEMD_RELAX_ESP_CHECKS=1 in every container mkosi starts (mkosi 14
//     passes no environment to the one that runs `bootctl install`).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cosa-build/cosa/pkg/boottest"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/qemu"
)

// mkosiSpec is cosa's config in the terms mkosi 14 takes.
type mkosiSpec struct {
	Suite       string   `json:"suite"`
	Mirror      string   `json:"mirror,omitempty"` // "" for mkosi's default
	Components  []string `json:"components"`       // apt components
	Packages    []string `json:"packages"`
	KernelArgs  []string `json:"kernel_args"`
	Hostname    string   `json:"hostname,omitempty"`
	ExtraTrees  []string `json:"extra_trees"`  // absolute directories, copied over the image in order
	RemoveFiles []string `json:"remove_files"` // absolute globs
	Output      string   `json:"output"`       // the qcow2
	Cache       string   `json:"cache"`        // apt's archives, kept between runs
	Incremental bool     `json:"incremental"`
	Postinst    string   `json:"postinst,omitempty"` // absolute path of the post-installation script, "" for none
}

// mkosiSpecFrom maps cfg onto mkosi for arch. extraTrees are the copies of
// cfg's overlay directories mkosi gets (the bench changes one of them for
// the incremental figure without touching cosa's). leftOut says what of
// cfg mkosi 14 cannot express.
func mkosiSpecFrom(cfg *config.Config, arch string, extraTrees []string) (spec mkosiSpec, leftOut []string) {
	m := cfg.Manifest.ForArch(arch)
	excluded := map[string]bool{}
	for _, e := range m.ExcludePackages {
		excluded[e] = true
	}
	for _, p := range m.Packages {
		if !excluded[p] {
			spec.Packages = append(spec.Packages, p)
		}
	}
	if len(m.ExcludePackages) > 0 {
		leftOut = append(leftOut, "exclude-packages ("+strings.Join(m.ExcludePackages, ", ")+"): mkosi has no exclusion; apt installs with --no-install-recommends")
	}
	spec.Suite, spec.Mirror, spec.Components = m.Distro.Suite, m.Distro.Mirror, m.Distro.Components
	if m.Distro.Variant != "" && m.Distro.Variant != "minbase" {
		leftOut = append(leftOut, "distro.variant "+m.Distro.Variant+": mkosi's debootstrap always uses minbase")
	}
	spec.KernelArgs = append(append([]string{}, m.KernelArgs...), cfg.Image.ForPlatform("qemu").ExtraKargs...)
	spec.Hostname = m.Hostname
	spec.ExtraTrees = extraTrees
	for _, f := range m.RemoveFiles {
		spec.RemoveFiles = append(spec.RemoveFiles, "/"+strings.TrimLeft(f, "/"))
	}
	if len(m.Users) > 0 {
		leftOut = append(leftOut, "users: mkosi 14 creates none")
	}
	if len(m.Repos) > 0 {
		leftOut = append(leftOut, "repos: not passed to mkosi")
	}
	return spec, leftOut
}

// config is the mkosi.default file for spec. mkosi turns every line into a
// command-line option and splits lists at commas (kernel arguments at
// spaces), so a value that would be split wrongly is an error.
func (s mkosiSpec) config() (string, error) {
	var b strings.Builder
	list := func(key string, vals []string, sep string) error {
		for _, v := range vals {
			if v == "!*" && key == "KernelCommandLine" {
				continue
			}
			if v == "" || strings.ContainsAny(v, sep+"\n\"'#") || strings.HasPrefix(v, "!") {
				return fmt.Errorf("mkosi config: %s value %q cannot be written (mkosi splits it at %q)", key, v, sep)
			}
		}
		if len(vals) > 0 {
			fmt.Fprintf(&b, "%s=%s\n", key, strings.Join(vals, sep))
		}
		return nil
	}
	one := func(key, v string) error {
		if strings.ContainsAny(v, "\n#") {
			return fmt.Errorf("mkosi config: %s value %q cannot be written (newline or #)", key, v)
		}
		if v != "" {
			fmt.Fprintf(&b, "%s=%s\n", key, v)
		}
		return nil
	}
	yes := func(v bool) string { return map[bool]string{true: "yes", false: "no"}[v] }
	if s.Suite == "" || s.Output == "" {
		return "", fmt.Errorf("mkosi config: suite and output are required")
	}
	b.WriteString("[Distribution]\nDistribution=debian\n")
	if err := one("Release", s.Suite); err != nil {
		return "", err
	}
	if err := one("Mirror", s.Mirror); err != nil {
		return "", err
	}
	if err := list("Repositories", s.Components, ","); err != nil {
		return "", err
	}
	b.WriteString("\n[Output]\nFormat=gpt_ext4\nBootable=yes\nQCow2=yes\n")
	if err := one("Output", s.Output); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "Incremental=%s\n", yes(s.Incremental))
	// "!*" first drops mkosi's own defaults (rhgb selinux=0 audit=0), so
	// the command line is cosa's (mkosi appends "rw").
	if err := list("KernelCommandLine", append([]string{"!*"}, s.KernelArgs...), " "); err != nil {
		return "", err
	}
	if err := one("Hostname", s.Hostname); err != nil {
		return "", err
	}
	b.WriteString("\n[Content]\n")
	if err := list("Packages", s.Packages, ","); err != nil {
		return "", err
	}
	if err := one("Cache", s.Cache); err != nil {
		return "", err
	}
	if err := list("ExtraTrees", s.ExtraTrees, ","); err != nil {
		return "", err
	}
	if err := list("RemoveFiles", s.RemoveFiles, ","); err != nil {
		return "", err
	}
	if err := one("PostInstallationScript", s.Postinst); err != nil {
		return "", err
	}
	b.WriteString("\n[Host]\nNspawnKeepUnit=yes\n")
	return b.String(), nil
}

// mkosiPostinst is the script mkosi runs inside the image after the extra
// trees are copied: cosa's unit settings, then cosa's postprocess scripts
// (each as cosa runs it: executed when it has a #! line, else `sh -e`).
func mkosiPostinst(u config.Units, scripts map[string][]byte) (string, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# cosa's units and postprocess scripts, for the mkosi reference.\nset -eu\n")
	for _, c := range []struct {
		verb  string
		units []string
	}{{"enable", u.Enable}, {"disable", u.Disable}, {"mask", u.Mask}} {
		for _, n := range c.units {
			if strings.ContainsAny(n, " \t\n'\"\\$`;&|<>()") {
				return "", fmt.Errorf("mkosi postinst: unit name %q needs quoting", n)
			}
		}
		if len(c.units) > 0 {
			fmt.Fprintf(&b, "systemctl %s %s\n", c.verb, strings.Join(c.units, " "))
		}
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		data := string(scripts[n])
		eof := fmt.Sprintf("COSA_POSTPROCESS_%d_EOF", i)
		for _, line := range strings.Split(data, "\n") {
			if line == eof {
				return "", fmt.Errorf("mkosi postinst: postprocess script %s has a line %q", n, eof)
			}
		}
		if !strings.HasSuffix(data, "\n") {
			data += "\n"
		}
		run := "/bin/sh -e \"$f\""
		if strings.HasPrefix(data, "#!") {
			run = "\"$f\""
		}
		fmt.Fprintf(&b, "# postprocess: %s\nf=${TMPDIR:-/tmp}/cosa-postprocess-%d\ncat > \"$f\" <<'%s'\n%s%s\nchmod 0755 \"$f\"\n%s\nrm -f \"$f\"\n",
			n, i, eof, data, eof, run)
	}
	return b.String(), nil
}

// The wrapper scripts. MKOSI_ESP_STAGE is the directory holding staged
// partitions: NAME/ (the files), NAME.dev, NAME.where. MKOSI_REAL_BIN (a
// test hook; default /usr/bin) is where the real mount and umount are.
const mkosiMountWrapper = `#!/bin/sh
# mount for mkosi on a kernel without vfat (written by cosa's bench): a vfat
# partition is staged in a directory, bind-mounted where mkosi asked for
# it, and written back by the umount wrapper. Anything else is passed on.
set -eu
state=${MKOSI_ESP_STAGE:?}
real=${MKOSI_REAL_BIN:-/usr/bin}
dev= where= n=0 skip=
for a in "$@"; do
	if [ -n "$skip" ]; then skip=; continue; fi
	case $a in
	-o|-t|--options|--types) skip=1 ;;
	-*) ;;
	*) n=$((n+1)); if [ $n = 1 ]; then dev=$a; elif [ $n = 2 ]; then where=$a; fi ;;
	esac
done
if [ "$n" != 2 ] || [ "$(blkid -o value -s TYPE "$dev" 2>/dev/null || true)" != vfat ]; then
	exec "$real/mount" "$@"
fi
key=$(basename "$dev")
stage=$state/$key
rm -rf "$stage"
mkdir -p "$stage" "$where"
# Start from what the partition holds (mkosi mounts the ESP more than once,
# and -i starts from a cached image); an empty file system has nothing.
MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -n -i "$dev" '::*' "$stage/" </dev/null 2>/dev/null || true
"$real/mount" --bind "$stage" "$where"
printf '%s\n' "$dev" >"$state/$key.dev"
realpath "$where" >"$state/$key.where"
`

const mkosiUmountWrapper = `#!/bin/sh
# umount for mkosi on a kernel without vfat (written by cosa's bench): after
# the real umount, every staged vfat partition mounted at or under the
# target is written back to its device with mkfs.fat and mcopy.
set -eu
state=${MKOSI_ESP_STAGE:?}
real=${MKOSI_REAL_BIN:-/usr/bin}
target=
for a in "$@"; do
	case $a in -*) ;; *) target=$a ;; esac
done
[ -z "$target" ] || target=$(realpath "$target")
"$real/umount" "$@"
[ -n "$target" ] || exit 0
for w in "$state"/*.where; do
	[ -e "$w" ] || continue
	where=$(cat "$w")
	case $where in "$target"|"$target"/*) ;; *) continue ;; esac
	key=$(basename "$w" .where)
	dev=$(cat "$state/$key.dev")
	stage=$state/$key
	mkfs.fat -F 32 -n EFI "$dev" >/dev/null
	for f in "$stage"/* "$stage"/.[!.]*; do
		[ -e "$f" ] || continue
		MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -Q -D o -i "$dev" "$f" ::/ </dev/null
	done
	rm -rf "$stage" "$state/$key.dev" "$w"
done
`

const mkosiNspawnWrapper = `#!/bin/sh
# systemd-nspawn for mkosi (written by cosa's bench): the ESP is a staged
# directory, not vfat on a GPT partition, which bootctl accepts only with
# relaxed checks; mkosi 14 passes no environment to bootctl's container.
exec /usr/bin/systemd-nspawn --setenv=SYSTEMD_RELAX_ESP_CHECKS=1 "$@"
`

// mkosiTree is one mkosi project directory the bench made.
type mkosiTree struct {
	dir, bin, stage, output string
	spec                    mkosiSpec
	leftOut                 []string
	changed                 string // the overlay file a change goes to
}

// setupMkosi writes dir/mkosi.default, dir/mkosi.postinst, the wrappers in
// dir/bin and copies of cfg's overlay directories in dir/extra.
func setupMkosi(cfg *config.Config, arch, dir, cache string, incremental bool) (*mkosiTree, error) {
	t := &mkosiTree{dir: dir, bin: filepath.Join(dir, "bin"), stage: filepath.Join(dir, "esp-stage"),
		output: filepath.Join(dir, "out", "image.qcow2")}
	for _, d := range []string{t.bin, t.stage, filepath.Dir(t.output), filepath.Join(dir, "extra"), cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for name, text := range map[string]string{"mount": mkosiMountWrapper, "umount": mkosiUmountWrapper, "systemd-nspawn": mkosiNspawnWrapper} {
		if err := os.WriteFile(filepath.Join(t.bin, name), []byte(text), 0o755); err != nil {
			return nil, err
		}
	}
	overlays, err := cfg.OverlayDirs()
	if err != nil {
		return nil, err
	}
	var trees []string
	for _, o := range overlays {
		dst := filepath.Join(dir, "extra", filepath.Base(o))
		if out, err := runOut("cp", "-a", o, dst); err != nil {
			return nil, fmt.Errorf("copying overlay %s: %v: %s", o, err, out)
		}
		trees = append(trees, dst)
	}
	scripts := map[string][]byte{}
	for _, s := range cfg.Manifest.Postprocess {
		data, err := os.ReadFile(filepath.Join(cfg.Dir, s))
		if err != nil {
			return nil, err
		}
		scripts[s] = data
	}
	post, err := mkosiPostinst(cfg.Manifest.Units, scripts)
	if err != nil {
		return nil, err
	}
	postPath := filepath.Join(dir, "mkosi.postinst")
	if err := os.WriteFile(postPath, []byte(post), 0o755); err != nil {
		return nil, err
	}
	t.spec, t.leftOut = mkosiSpecFrom(cfg, arch, trees)
	t.spec.Output, t.spec.Cache, t.spec.Incremental, t.spec.Postinst = t.output, cache, incremental, postPath
	text, err := t.spec.config()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "mkosi.default"), []byte(text), 0o644); err != nil {
		return nil, err
	}
	return t, nil
}

// wrap is the command line that runs mkosi with args: in a private mount
// namespace (which takes every mount mkosi makes with it) with a tmpfs on
// /run/systemd/nspawn (systemd-nspawn refuses to clean up its propagation
// directory when /run is not a tmpfs, as here).
func (t *mkosiTree) wrap(args ...string) []string {
	return append([]string{"-m", "/bin/sh", "-c",
		`mount --make-rprivate / && mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec mkosi "$@"`, "mkosi"}, args...)
}

func (t *mkosiTree) env() []string {
	return []string{"PATH=" + t.bin + ":" + os.Getenv("PATH"), "MKOSI_ESP_STAGE=" + t.stage}
}

// run runs mkosi in t's directory.
func (b *bench) mkosi(t *mkosiTree, what string, args ...string) (time.Duration, error) {
	return b.cmd(what, t.dir, t.env(), "unshare", t.wrap(args...)...)
}

// loginPromptRE is getty's prompt on the serial console.
var loginPromptRE = regexp.MustCompile(`(?m)^\S+ login: `)

// mkosiBootTimeout bounds the boot check: TCG on two cores the other
// builds share.
const mkosiBootTimeout = 10 * time.Minute

// bootImage boots image under QEMU with UEFI (OVMF) through boottest (the
// checks `cosa test` makes, less the OSTree ones) and keeps the console in
// logs/NAME/. booted: the login prompt appeared.
func (b *bench) bootImage(name, image string) (booted bool, details map[string]any) {
	out := filepath.Join(b.logs, name)
	saved := boottest.BootTimeout
	boottest.BootTimeout = mkosiBootTimeout
	defer func() { boottest.BootTimeout = saved }()
	accel := "tcg"
	if qemu.KVMUsable() {
		accel = "kvm"
	}
	b.log("%s: booting %s (UEFI, %s) ...", name, filepath.Base(image), accel)
	t0 := time.Now()
	res, err := boottest.Run(context.Background(), boottest.Options{Image: image, Firmware: qemu.UEFI, OutDir: out})
	wall := time.Since(t0).Seconds()
	details = map[string]any{"firmware": "uefi (OVMF)", "accel": accel, "timeout_s": mkosiBootTimeout.Seconds(), "wall_s": round(wall, 1)}
	if err != nil {
		details["error"] = err.Error()
		b.log("%s: %v", name, err)
		return false, details
	}
	r := res[0]
	details["login_prompt_s"] = round(r.Login, 1)
	details["kernel_s"] = round(r.Kernel, 1)
	details["multi_user_s"] = round(r.MultiUser, 1)
	details["console_file"] = r.ConsoleFile
	details["healthy"] = r.Passed // running, no failed unit, ssh answers
	if r.Reason != "" {
		details["reason"] = r.Reason
	}
	// boottest waits for multi-user before it looks for the prompt; on a
	// starved TCG guest the prompt can come first (getty starts before
	// multi-user.target is reached), and the prompt is what "boots" means
	// here.
	con, _ := os.ReadFile(r.ConsoleFile)
	booted = r.Login > 0 || loginPromptRE.Match(con)
	details["login_prompt_seen"] = booted
	if !booted {
		tailFile := filepath.Join(out, "console-tail.txt")
		os.WriteFile(tailFile, []byte(tail(string(con), 60)+"\n"), 0o644)
		details["console_tail_file"] = tailFile
	}
	b.log("%s: login prompt %v (boottest: login after %.0fs, healthy %v) %s", name, booted, r.Login, r.Passed, r.Reason)
	return booted, details
}

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
