// Package config loads and validates a cosa configuration directory.
//
// A configuration directory (usually WORKDIR/src/config) contains:
//
//	manifest.yaml   what goes into the OSTree commit (required)
//	image.yaml      how disk images are built (optional; defaults apply)
//	overlay.d/      NN-name/ trees copied over the root filesystem
//	postprocess/    scripts run against the root filesystem
//	tests/          image tests
//
// Loading is strict: unknown keys, duplicate keys, values of the wrong type,
// out-of-range numbers, unknown enum values, malformed names and unsafe paths
// are all rejected. Every such problem is reported as a *Error that names the
// file, line and key at fault, so that it can be fixed without guessing.
// See docs/config.md for the user-facing reference.
package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// File names inside the config directory.
const (
	ManifestFile = "manifest.yaml"
	ImageFile    = "image.yaml"
	OverlayDir   = "overlay.d"
)

// Manifest is the content of manifest.yaml (after include merging): it
// describes what goes into the OSTree commit.
type Manifest struct {
	// Name is the artifact prefix and the "name" in meta.json. Required;
	// must match ^[a-z0-9][a-z0-9._-]*$.
	Name string `yaml:"name" json:"name"`
	// Ref is the OSTree branch the commit is written to. Required; slash
	// separated segments of [A-Za-z0-9._-]+, no leading or trailing slash.
	Ref string `yaml:"ref" json:"ref"`
	// VersionPrefix starts every build id, which has the form
	// <prefix>.<YYYYMMDD>.<stream>.<n>. Default "1"; must match
	// ^[0-9A-Za-z]+$ so that it cannot contain the '.' separator.
	VersionPrefix string `yaml:"version-prefix" json:"version-prefix"`
	// Stream names the update stream and is embedded in build ids.
	// Default "dev"; must match ^[a-z0-9]+$.
	Stream string `yaml:"stream" json:"stream"`
	// Distro selects the distribution, suite and package source the root
	// filesystem is bootstrapped from.
	Distro Distro `yaml:"distro" json:"distro"`
	// Packages are installed into the root filesystem. Required and
	// non-empty; Debian package names matching ^[a-z0-9][a-z0-9+.-]+$.
	Packages []string `yaml:"packages" json:"packages"`
	// ExcludePackages must never be installed, even as dependencies.
	// Default empty; same name rules as Packages.
	ExcludePackages []string `yaml:"exclude-packages" json:"exclude-packages"`
	// Units are systemd units to enable, disable or mask in the image.
	// Default empty.
	Units Units `yaml:"units" json:"units"`
	// KernelArgs are baked into the boot entries of every image. Default
	// empty; one argument per item.
	KernelArgs []string `yaml:"kernel-args" json:"kernel-args"`
	// Postprocess lists scripts, relative to the config dir, that run
	// against the finished root filesystem in order. Default empty. Each
	// must be an existing regular file that stays inside the config dir
	// (no absolute path, no "..", symlinks must resolve inside).
	Postprocess []string `yaml:"postprocess" json:"postprocess"`
	// RemoveFiles are deleted from the root filesystem before the commit.
	// Default empty; paths relative to the OS root, no absolute paths and
	// no ".." components.
	RemoveFiles []string `yaml:"remove-files" json:"remove-files"`
	// PackagesX86_64 and its siblings are added to Packages when building
	// for that architecture only (coreos-assembler's packages-<basearch>).
	// Default empty; same name rules as Packages. See PackagesFor.
	PackagesX86_64  []string `yaml:"packages-x86_64" json:"packages-x86_64,omitempty"`
	PackagesAarch64 []string `yaml:"packages-aarch64" json:"packages-aarch64,omitempty"`
	PackagesPpc64le []string `yaml:"packages-ppc64le" json:"packages-ppc64le,omitempty"`
	PackagesS390x   []string `yaml:"packages-s390x" json:"packages-s390x,omitempty"`
	// Repos are extra apt repositories fetch resolves packages from, each
	// verified with a keyring kept in the config dir. Default empty.
	Repos []Repo `yaml:"repos" json:"repos,omitempty"`
	// Hostname is written to /etc/hostname (and 127.0.1.1 in /etc/hosts).
	// Default "": the tree keeps what the packages made.
	Hostname string `yaml:"hostname" json:"hostname,omitempty"`
	// Users are created (or, when they exist, amended) in the tree.
	// Default empty.
	Users []User `yaml:"users" json:"users,omitempty"`
	// Include names further manifest fragments, relative to the including
	// file, merged underneath it. Accepts a single string or a list. It is
	// consumed by Load, so it is always empty in a loaded Config; the files
	// read are listed in Config.Files.
	Include []string `yaml:"include" json:"-"`
}

// Distro describes where the root filesystem comes from.
type Distro struct {
	// Family is the distribution family. Default "debian", the only value
	// currently accepted.
	Family string `yaml:"family" json:"family"`
	// Suite is the release to bootstrap, e.g. "bookworm" or "trixie".
	// Required.
	Suite string `yaml:"suite" json:"suite"`
	// Mirror is the package archive URL (http://, https:// or file://).
	// Default "" (also when null): use the host's apt sources for Suite and
	// its -updates and -security suites when present.
	Mirror string `yaml:"mirror" json:"mirror"`
	// Components are the archive components to enable. Default [main].
	Components []string `yaml:"components" json:"components"`
	// Variant is the mmdebstrap variant deciding the base package set.
	// Default "minbase"; one of minbase, required, important, standard.
	Variant string `yaml:"variant" json:"variant"`
}

// Repo is one extra apt repository.
type Repo struct {
	// Name identifies the repository; it names the apt source and keyring
	// files. Required, unique; must match ^[a-z0-9][a-z0-9._-]*$.
	Name string `yaml:"name" json:"name"`
	// URI of the archive (http://, https:// or file:///). Required.
	URI string `yaml:"uri" json:"uri"`
	// Suite (distribution) to use, e.g. "bookworm". Required. A suite
	// ending in "/" (such as "./") is a flat repository and takes no
	// components.
	Suite string `yaml:"suite" json:"suite"`
	// Components to enable. Required for a suite, refused for a flat
	// repository.
	Components []string `yaml:"components" json:"components,omitempty"`
	// SignedBy is the keyring (.gpg binary or .asc armored) that signs the
	// repository's Release file, relative to the config dir. Required;
	// same path rules as postprocess.
	SignedBy string `yaml:"signed-by" json:"signed-by"`
	// Arch limits the repository to these basearches (x86_64, aarch64,
	// ppc64le, s390x). Default empty: every architecture.
	Arch []string `yaml:"arch" json:"arch,omitempty"`
	// KeyringSHA256 is the sha256 of the keyring when the config was
	// loaded, so the keyring's content is a build input.
	KeyringSHA256 string `yaml:"-" json:"keyring-sha256"`
}

// ForArch reports whether the repository is used when building for arch.
func (r *Repo) ForArch(arch string) bool { return len(r.Arch) == 0 || contains(r.Arch, arch) }

// User is one user account in the image.
type User struct {
	// Name of the account. Required, unique; must match
	// ^[a-z_][a-z0-9_-]{0,31}$.
	Name string `yaml:"name" json:"name"`
	// UID of a new account. Default 0: the next free one.
	UID int `yaml:"uid" json:"uid,omitempty"`
	// Groups the user is added to; each must exist in the tree. Default
	// empty.
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	// SSHAuthorizedKeys are authorized_keys lines, one key each, written to
	// /etc/ssh/authorized_keys.d/<name>. Default empty.
	SSHAuthorizedKeys []string `yaml:"ssh-authorized-keys" json:"ssh-authorized-keys,omitempty"`
	// PasswordHash is a crypt(3) hash ("$y$...", "$6$...") or "!" / "*".
	// Default "": "*" for a new account (no password login), unchanged
	// for an existing one.
	PasswordHash string `yaml:"password-hash" json:"password-hash,omitempty"`
	// Shell is the login shell, an absolute path that must exist in the
	// tree. Default "": /bin/bash for a new account, unchanged for an
	// existing one.
	Shell string `yaml:"shell" json:"shell,omitempty"`
}

// Units lists systemd units by name. Names must contain a '.' (the unit
// type suffix, e.g. ".service") and must not contain '/'.
type Units struct {
	// Enable lists units to enable. Default empty.
	Enable []string `yaml:"enable" json:"enable"`
	// Disable lists units to disable. Default empty.
	Disable []string `yaml:"disable" json:"disable"`
	// Mask lists units to mask. Default empty.
	Mask []string `yaml:"mask" json:"mask"`
}

// Image is the content of image.yaml: how disk images are built from the
// OSTree commit. Every key is optional.
type Image struct {
	// Size is the disk image size in GiB. Default 10; 2..2048.
	Size int `yaml:"size" json:"size"`
	// Rootfs is the root filesystem type. Default "ext4"; ext4 or xfs.
	Rootfs string `yaml:"rootfs" json:"rootfs"`
	// Bootloader installed into images. Default "grub", the only value
	// currently accepted.
	Bootloader string `yaml:"bootloader" json:"bootloader"`
	// ExtraKargs are kernel arguments added to disk images only (on top of
	// the manifest's kernel-args). Default empty.
	ExtraKargs []string `yaml:"extra-kargs" json:"extra-kargs"`
	// Compressor used for compressed artifacts. Default "gzip"; gzip, xz
	// or zstd.
	Compressor string `yaml:"compressor" json:"compressor"`
	// Qcow2Compression is how the qcow2 images (qemu, openstack) store
	// their clusters. Default "zstd"; zstd, zlib or none. zstd needs
	// QEMU 5.1 or newer to read the image; zlib reads everywhere but is
	// several times slower to write.
	Qcow2Compression string `yaml:"qcow2-compression" json:"qcow2-compression"`
	// CacheSize caps the pipeline stage cache in GiB. Default 20; 1..65536.
	CacheSize int `yaml:"cache-size" json:"cache-size"`
	// Platforms holds per-platform overrides. Keys are limited to qemu,
	// metal, metal4k, aws, openstack, gcp, azure and vmware. Default
	// empty (every platform inherits the values above).
	Platforms map[string]PlatformOverride `yaml:"platforms" json:"platforms"`
	// AWS holds settings only used for the aws platform.
	AWS AWS `yaml:"aws" json:"aws"`
}

// PlatformOverride changes image settings for one platform. Zero values
// inherit the image-wide setting.
type PlatformOverride struct {
	// Size in GiB. 0 (default) inherits Image.Size; otherwise 2..2048.
	Size int `yaml:"size" json:"size"`
	// ExtraKargs replaces Image.ExtraKargs for this platform. nil (absent
	// or null, the default) inherits; an explicit empty list means none.
	ExtraKargs []string `yaml:"extra-kargs" json:"extra-kargs"`
}

// AWS holds settings for AMI registration.
type AWS struct {
	// VolumeType of the root EBS volume. Default "gp3"; gp2, gp3, io1, io2
	// or standard.
	VolumeType string `yaml:"volume-type" json:"volume-type"`
	// BootMode of the AMI. Default "uefi-preferred"; uefi, legacy-bios or
	// uefi-preferred.
	BootMode string `yaml:"boot-mode" json:"boot-mode"`
}

// Config is a loaded, validated configuration directory.
type Config struct {
	// Dir is the absolute path of the config directory.
	Dir string
	// Manifest is manifest.yaml merged with its includes, defaults applied.
	Manifest Manifest
	// Image is image.yaml with defaults applied (all defaults when the file
	// is absent).
	Image Image
	// Files lists every config file that was read (manifest.yaml, included
	// files, image.yaml), relative to Dir with '/' separators, sorted and
	// without duplicates. Callers hash them to detect config changes.
	Files []string

	display string // config dir as the caller spelled it, for messages
	realDir string // Dir with symlinks resolved
	prov    map[string]Location
}

// Load reads and validates the configuration in dir. Any problem with the
// configuration is returned as a *Error (see IsConfigError).
func Load(dir string) (*Config, error) { return LoadAs(dir, "") }

// LoadAs is Load for a config read from dir that the user knows by
// another name, display (e.g. the source `cosa init` copied it from into a
// staging dir): errors name files under display. Empty display is dir.
func LoadAs(dir, display string) (*Config, error) {
	l, err := newLoader(dir)
	if err != nil {
		return nil, err
	}
	if display != "" {
		l.display = filepath.Clean(display)
	}
	c := &Config{Dir: l.abs, display: l.display, realDir: l.real}

	mtree, err := l.loadManifestTree()
	if err != nil {
		return nil, err
	}
	if c.Manifest, err = l.decodeManifest(mtree); err != nil {
		return nil, err
	}
	if c.Image, err = l.loadImage(); err != nil {
		return nil, err
	}
	if _, err := c.OverlayDirs(); err != nil {
		return nil, err
	}
	c.Files = sortedKeys(l.files)
	c.prov = l.prov
	return c, nil
}

// OverlayDirs returns the absolute paths of the directories in overlay.d, in
// lexical order, or nil if there is no overlay.d. Hidden entries (names
// starting with '.', such as .gitkeep) are ignored, as a shell glob would.
// An entry that is not a directory, or a symlink that is dangling or
// resolves outside the config dir, is an error.
func (c *Config) OverlayDirs() ([]string, error) {
	display := c.display
	if display == "" {
		display = c.Dir
	}
	realDir := c.realDir
	if realDir == "" {
		r, err := filepath.EvalSymlinks(c.Dir)
		if err != nil {
			return nil, &Error{File: display, Msg: "cannot resolve config dir: " + errText(err), cause: err}
		}
		realDir = r
	}
	base := filepath.Join(c.Dir, OverlayDir)
	fail := func(name, msg string, cause error) error {
		return &Error{File: filepath.Join(display, OverlayDir, name), Msg: msg, cause: cause}
	}
	if _, err := os.Lstat(base); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	// Check overlay.d itself, then each entry, with the same rules.
	check := func(name, p string) error {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fail(name, "dangling symlink", err)
			}
			return fail(name, errText(err), err)
		}
		if !within(realDir, real) {
			return fail(name, "symlink points outside the config dir (to "+quote(real)+")", nil)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return fail(name, errText(err), err)
		}
		if !fi.IsDir() {
			return fail(name, "not a directory", nil)
		}
		return nil
	}
	if err := check("", base); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, fail("", errText(err), err)
	}
	var dirs []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(base, e.Name())
		if err := check(e.Name(), p); err != nil {
			return nil, err
		}
		dirs = append(dirs, p)
	}
	sort.Strings(dirs)
	return dirs, nil
}

// Normalized returns a canonical JSON encoding of the manifest and image
// settings after defaults, suitable for hashing as a build input. Key order
// in the YAML, comments, formatting, includes vs. inline content and absent
// vs. empty lists do not affect the result; list order does.
func (c *Config) Normalized() ([]byte, error) {
	m := c.Manifest
	m.Include = nil
	m.Packages = nonNil(m.Packages)
	m.ExcludePackages = nonNil(m.ExcludePackages)
	m.KernelArgs = nonNil(m.KernelArgs)
	m.Postprocess = nonNil(m.Postprocess)
	m.RemoveFiles = nonNil(m.RemoveFiles)
	m.Distro.Components = nonNil(m.Distro.Components)
	m.Units.Enable = nonNil(m.Units.Enable)
	m.Units.Disable = nonNil(m.Units.Disable)
	m.Units.Mask = nonNil(m.Units.Mask)

	im := c.Image
	im.ExtraKargs = nonNil(im.ExtraKargs)
	// A platform's nil extra-kargs (inherit) differs from an empty list
	// (none), so those are kept as they are. encoding/json sorts map keys.
	if im.Platforms == nil {
		im.Platforms = map[string]PlatformOverride{}
	}

	doc := struct {
		Manifest Manifest `json:"manifest"`
		Image    Image    `json:"image"`
	}{m, im}
	return fileutil.MarshalNoEscape(doc)
}

// ForPlatform returns the effective size and extra kernel arguments for the
// named platform: the platform override where set, the image-wide values
// otherwise.
func (im *Image) ForPlatform(name string) PlatformOverride {
	eff := PlatformOverride{Size: im.Size, ExtraKargs: im.ExtraKargs}
	if o, ok := im.Platforms[name]; ok {
		if o.Size != 0 {
			eff.Size = o.Size
		}
		if o.ExtraKargs != nil {
			eff.ExtraKargs = o.ExtraKargs
		}
	}
	return eff
}

// PackagesFor returns Packages plus the packages listed for arch (a
// basearch such as x86_64), without duplicates, in order.
func (m *Manifest) PackagesFor(arch string) []string {
	var extra []string
	switch arch {
	case "x86_64":
		extra = m.PackagesX86_64
	case "aarch64":
		extra = m.PackagesAarch64
	case "ppc64le":
		extra = m.PackagesPpc64le
	case "s390x":
		extra = m.PackagesS390x
	}
	out := append([]string(nil), m.Packages...)
	for _, p := range extra {
		if !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// ForArch returns a copy of m whose Packages are PackagesFor(arch) and
// whose Repos are those used for arch.
func (m Manifest) ForArch(arch string) Manifest {
	m.Packages = m.PackagesFor(arch)
	m.PackagesX86_64, m.PackagesAarch64, m.PackagesPpc64le, m.PackagesS390x = nil, nil, nil, nil
	var repos []Repo
	for _, r := range m.Repos {
		if r.ForArch(arch) {
			repos = append(repos, r)
		}
	}
	m.Repos = repos
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
