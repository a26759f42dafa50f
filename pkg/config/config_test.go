package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

func TestLoadFullConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	testutil.WriteTree(t, dir, map[string]string{
		"manifest.yaml": lines(
			"# A complete manifest.",
			"name: demo-os",
			"ref: demo/x86_64/stable",
			"version-prefix: 42",
			"stream: stable",
			"distro:",
			"  family: debian",
			"  suite: bookworm",
			"  mirror: https://mirror.example.com/debian",
			"  components: [main, contrib]",
			"  variant: important",
			"packages:",
			"  - systemd",
			"  - linux-image-amd64",
			"  - systemd",
			"exclude-packages: [nano]",
			"units:",
			"  enable: [ssh.service]",
			"  disable: [apt-daily.timer]",
			"  mask: [systemd-networkd-wait-online.service]",
			"kernel-args: [console=ttyS0, 'quiet']",
			"postprocess:",
			"  - postprocess/10-cleanup.sh",
			"remove-files:",
			"  - etc/machine-id",
		),
		"postprocess/10-cleanup.sh": "#!/bin/sh\n",
		"image.yaml": lines(
			"size: 16",
			"rootfs: ext4",
			"bootloader: grub",
			"extra-kargs: [rw]",
			"compressor: zstd",
			"qcow2-compression: none",
			"cache-size: 5",
			"platforms:",
			"  metal4k:",
			"    size: 20",
			"  qemu:",
			"    extra-kargs: []",
			"  aws: ~",
			"aws:",
			"  volume-type: io2",
			"  boot-mode: uefi",
		),
		"overlay.d/20-b/etc/x": "x",
		"overlay.d/10-a/etc/y": "y",
		"overlay.d/.gitkeep":   "",
	})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantM := Manifest{
		Name: "demo-os", Ref: "demo/x86_64/stable", VersionPrefix: "42", Stream: "stable",
		Distro: Distro{Family: "debian", Suite: "bookworm", Mirror: "https://mirror.example.com/debian",
			Components: []string{"main", "contrib"}, Variant: "important"},
		Packages:        []string{"systemd", "linux-image-amd64"},
		ExcludePackages: []string{"nano"},
		Units: Units{Enable: []string{"ssh.service"}, Disable: []string{"apt-daily.timer"},
			Mask: []string{"systemd-networkd-wait-online.service"}},
		KernelArgs:  []string{"console=ttyS0", "quiet"},
		Postprocess: []string{"postprocess/10-cleanup.sh"},
		RemoveFiles: []string{"etc/machine-id"},
	}
	if !reflect.DeepEqual(c.Manifest, wantM) {
		t.Errorf("manifest:\n got %+v\nwant %+v", c.Manifest, wantM)
	}
	wantI := Image{
		Size: 16, Rootfs: "ext4", Bootloader: "grub", ExtraKargs: []string{"rw"}, Compressor: "zstd", Qcow2Compression: "none", CacheSize: 5,
		Platforms: map[string]PlatformOverride{
			"metal4k": {Size: 20},
			"qemu":    {ExtraKargs: []string{}},
			"aws":     {},
		},
		AWS: AWS{VolumeType: "io2", BootMode: "uefi"},
	}
	if !reflect.DeepEqual(c.Image, wantI) {
		t.Errorf("image:\n got %+v\nwant %+v", c.Image, wantI)
	}
	if got := c.Image.ForPlatform("metal4k"); got.Size != 20 || !reflect.DeepEqual(got.ExtraKargs, []string{"rw"}) {
		t.Errorf("ForPlatform(metal4k) = %+v", got)
	}
	if got := c.Image.ForPlatform("qemu"); got.Size != 16 || len(got.ExtraKargs) != 0 {
		t.Errorf("ForPlatform(qemu) = %+v", got)
	}
	if !filepath.IsAbs(c.Dir) || c.Dir != dir {
		t.Errorf("Dir = %q, want %q", c.Dir, dir)
	}
	if want := []string{"image.yaml", "manifest.yaml"}; !reflect.DeepEqual(c.Files, want) {
		t.Errorf("Files = %v, want %v", c.Files, want)
	}
	ov, err := c.OverlayDirs()
	if err != nil {
		t.Fatal(err)
	}
	wantOv := []string{filepath.Join(dir, "overlay.d/10-a"), filepath.Join(dir, "overlay.d/20-b")}
	if !reflect.DeepEqual(ov, wantOv) {
		t.Errorf("OverlayDirs = %v, want %v", ov, wantOv)
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": minimalManifest})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantM := Manifest{
		Name: "demo", Ref: "demo/x86_64/dev", VersionPrefix: "1", Stream: "dev",
		Distro:   Distro{Family: "debian", Suite: "bookworm", Components: []string{"main"}, Variant: "minbase"},
		Packages: []string{"systemd", "linux-image-amd64"},
	}
	if !reflect.DeepEqual(c.Manifest, wantM) {
		t.Errorf("manifest:\n got %+v\nwant %+v", c.Manifest, wantM)
	}
	wantI := Image{Size: 10, Rootfs: "ext4", Bootloader: "grub", Compressor: "gzip", Qcow2Compression: "zstd", CacheSize: 20,
		AWS: AWS{VolumeType: "gp3", BootMode: "uefi-preferred"}}
	if !reflect.DeepEqual(c.Image, wantI) {
		t.Errorf("image:\n got %+v\nwant %+v", c.Image, wantI)
	}
	if want := []string{"manifest.yaml"}; !reflect.DeepEqual(c.Files, want) {
		t.Errorf("Files = %v, want %v", c.Files, want)
	}
	if ov, err := c.OverlayDirs(); err != nil || ov != nil {
		t.Errorf("OverlayDirs = %v, %v; want nil, nil", ov, err)
	}

	// A null mirror and an image.yaml holding only comments also mean
	// defaults.
	testutil.WriteTree(t, dir, map[string]string{
		"manifest.yaml": strings.Replace(minimalManifest, "  suite: bookworm\n", "  suite: trixie\n  mirror: null\n", 1),
		"image.yaml":    "# size: 10\n",
	})
	c, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Manifest.Distro.Mirror != "" || c.Image.Size != 10 {
		t.Errorf("mirror %q size %d", c.Manifest.Distro.Mirror, c.Image.Size)
	}
}

// TestLoadErrors checks the exact message for each kind of bad input. In
// want, DIR stands for the config dir as passed to Load and REAL for the
// test's temporary root with symlinks resolved.
func TestLoadErrors(t *testing.T) {
	base := map[string]string{"manifest.yaml": minimalManifest}
	tests := []struct {
		name  string
		files map[string]string // relative to the config dir; merged over base
		out   map[string]string // relative to the temp root, outside the config dir
		want  string
	}{
		{
			name:  "unknown key",
			files: map[string]string{"manifest.yaml": minimalManifest + "colour: blue\n"},
			want:  "DIR/manifest.yaml:8: colour: unknown key",
		},
		{
			name:  "typo suggestion",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro: {suite: bookworm}", "pakages: [vim]")},
			want:  `DIR/manifest.yaml:4: pakages: unknown key (did you mean "packages"?)`,
		},
		{
			name:  "nested typo suggestion",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro:", "  sutie: bookworm", "packages: [vim]")},
			want:  `DIR/manifest.yaml:4: distro.sutie: unknown key (did you mean "suite"?)`,
		},
		{
			name:  "sequence instead of string",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro:", "  suite:", "    - bookworm", "packages: [vim]")},
			want:  "DIR/manifest.yaml:5: distro.suite: expected a string, got a sequence",
		},
		{
			name:  "string instead of list",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro: {suite: bookworm}", "packages: vim")},
			want:  "DIR/manifest.yaml:4: packages: expected a list, got a string",
		},
		{
			name:  "boolean instead of string",
			files: map[string]string{"manifest.yaml": lines("name: true", "ref: demo/x", "distro: {suite: bookworm}", "packages: [vim]")},
			want:  "DIR/manifest.yaml:1: name: expected a string, got a boolean",
		},
		{
			name:  "mapping list item",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro: {suite: bookworm}", "packages:", "  - vim", "  - {name: curl}")},
			want:  "DIR/manifest.yaml:6: packages[1]: expected a string, got a mapping",
		},
		{
			name:  "missing name",
			files: map[string]string{"manifest.yaml": lines("ref: demo/x", "distro: {suite: bookworm}", "packages: [vim]")},
			want:  "DIR/manifest.yaml:1: name: required key is missing",
		},
		{
			name:  "missing ref",
			files: map[string]string{"manifest.yaml": lines("# comment", "", "name: demo", "distro: {suite: bookworm}", "packages: [vim]")},
			want:  "DIR/manifest.yaml:1: ref: required key is missing",
		},
		{
			name:  "missing suite",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro:", "  variant: minbase", "packages: [vim]")},
			want:  "DIR/manifest.yaml:3: distro.suite: required key is missing",
		},
		{
			name:  "missing distro altogether",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "packages: [vim]")},
			want:  "DIR/manifest.yaml:1: distro.suite: required key is missing",
		},
		{
			name:  "missing packages",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro: {suite: bookworm}")},
			want:  "DIR/manifest.yaml:1: packages: required key is missing",
		},
		{
			name:  "empty packages",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "distro: {suite: bookworm}", "packages: []")},
			want:  "DIR/manifest.yaml:4: packages: must list at least one package",
		},
		{
			name:  "null required key",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref:", "distro: {suite: bookworm}", "packages: [vim]")},
			want:  "DIR/manifest.yaml:2: ref: required key has no value",
		},
		{
			name:  "invalid name",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "name: demo", "name: Demo_OS", 1)},
			want:  `DIR/manifest.yaml:1: name: invalid name "Demo_OS" (must match ^[a-z0-9][a-z0-9._-]*$)`,
		},
		{
			name:  "invalid ref",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "ref: demo/x86_64/dev", "ref: demo//dev", 1)},
			want:  `DIR/manifest.yaml:2: ref: invalid OSTree ref "demo//dev": empty path segment`,
		},
		{
			name:  "ref with trailing slash",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "ref: demo/x86_64/dev", "ref: demo/", 1)},
			want:  `DIR/manifest.yaml:2: ref: invalid OSTree ref "demo/": must not start or end with '/'`,
		},
		{
			name:  "invalid package name",
			files: map[string]string{"manifest.yaml": minimalManifest + "  - Vim\n"},
			want:  `DIR/manifest.yaml:8: packages[2]: invalid package name "Vim" (must match ^[a-z0-9][a-z0-9+.-]+$)`,
		},
		{
			name:  "bad stream",
			files: map[string]string{"manifest.yaml": minimalManifest + "stream: next-devel\n"},
			want:  `DIR/manifest.yaml:8: stream: invalid stream "next-devel" (must match ^[a-z0-9]+$)`,
		},
		{
			name:  "duplicate key",
			files: map[string]string{"manifest.yaml": minimalManifest + "name: other\n"},
			want:  "DIR/manifest.yaml:8: name: duplicate key (first defined on line 1)",
		},
		{
			name:  "yaml syntax error",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: demo/x", "  distro: bookworm")},
			want:  "DIR/manifest.yaml:3: YAML syntax error: mapping values are not allowed in this context",
		},
		{
			name:  "yaml syntax error on line 1",
			files: map[string]string{"manifest.yaml": lines("name: demo: x")},
			want:  "DIR/manifest.yaml:1: YAML syntax error: mapping values are not allowed in this context",
		},
		{
			name:  "unknown anchor",
			files: map[string]string{"manifest.yaml": lines("name: demo", "ref: *nope")},
			want:  "DIR/manifest.yaml:2: YAML syntax error: unknown anchor 'nope' referenced",
		},
		{
			name:  "non-mapping document",
			files: map[string]string{"manifest.yaml": lines("- name: demo", "- ref: demo/x")},
			want:  "DIR/manifest.yaml:1: expected a mapping at the top level, got a sequence",
		},
		{
			name:  "empty file",
			files: map[string]string{"manifest.yaml": "# nothing yet\n"},
			want:  "DIR/manifest.yaml:1: file is empty",
		},
		{
			name:  "multiple documents",
			files: map[string]string{"manifest.yaml": minimalManifest + "---\nname: again\n"},
			want:  "DIR/manifest.yaml:8: multiple YAML documents are not supported",
		},
		{
			name:  "yaml merge key",
			files: map[string]string{"manifest.yaml": minimalManifest + "units:\n  <<: {enable: [a.service]}\n"},
			want:  "DIR/manifest.yaml:9: units.<<: YAML merge keys are not supported (use include)",
		},
		{
			name:  "manifest is a directory",
			files: map[string]string{"manifest.yaml": "dir:"},
			want:  "DIR/manifest.yaml: is a directory",
		},
		{
			name:  "bad unit name",
			files: map[string]string{"manifest.yaml": minimalManifest + "units:\n  enable:\n    - sshd.service\n    - sshd\n"},
			want:  `DIR/manifest.yaml:11: units.enable[1]: invalid unit name "sshd": must have a type suffix such as ".service"`,
		},
		{
			name:  "unit name with slash",
			files: map[string]string{"manifest.yaml": minimalManifest + "units:\n  mask: [../x.service]\n"},
			want:  `DIR/manifest.yaml:9: units.mask[0]: invalid unit name "../x.service": must not contain '/'`,
		},
		{
			name:  "bad mirror scheme",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "  suite: bookworm\n", "  suite: bookworm\n  mirror: ftp://mirror.example.com/debian\n", 1)},
			want:  `DIR/manifest.yaml:5: distro.mirror: invalid mirror URL "ftp://mirror.example.com/debian": scheme must be http, https or file`,
		},
		{
			name:  "mirror without host",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "  suite: bookworm\n", "  suite: bookworm\n  mirror: 'http:/debian'\n", 1)},
			want:  `DIR/manifest.yaml:5: distro.mirror: invalid mirror URL "http:/debian": missing host`,
		},
		{
			name:  "bad variant",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "  suite: bookworm\n", "  suite: bookworm\n  variant: minibase\n", 1)},
			want:  `DIR/manifest.yaml:5: distro.variant: unsupported value "minibase" (did you mean "minbase"? allowed: minbase, required, important, standard)`,
		},
		{
			name:  "unsupported family",
			files: map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "  suite: bookworm\n", "  suite: noble\n  family: ubuntu\n", 1)},
			want:  `DIR/manifest.yaml:5: distro.family: unsupported value "ubuntu" (allowed: debian)`,
		},
		{
			name:  "kernel argument with spaces",
			files: map[string]string{"manifest.yaml": minimalManifest + "kernel-args: ['quiet splash']\n"},
			want:  `DIR/manifest.yaml:8: kernel-args[0]: kernel argument "quiet splash" contains whitespace; list each argument separately`,
		},
		{
			name:  "absolute postprocess path",
			files: map[string]string{"manifest.yaml": minimalManifest + "postprocess: [/etc/x]\n"},
			want:  `DIR/manifest.yaml:8: postprocess[0]: absolute path "/etc/x" is not allowed; use a path relative to the config dir`,
		},
		{
			name: "postprocess escaping with ..",
			files: map[string]string{
				"manifest.yaml":    minimalManifest + "postprocess:\n  - postprocess/a.sh\n  - ../../etc/x\n",
				"postprocess/a.sh": "#!/bin/sh\n",
			},
			want: `DIR/manifest.yaml:10: postprocess[1]: path "../../etc/x" escapes the config dir`,
		},
		{
			name:  "postprocess with inner ..",
			files: map[string]string{"manifest.yaml": minimalManifest + "postprocess: [postprocess/../x.sh]\n"},
			want:  `DIR/manifest.yaml:8: postprocess[0]: path "postprocess/../x.sh" must not contain ".." components`,
		},
		{
			name: "postprocess symlink pointing outside",
			files: map[string]string{
				"manifest.yaml":       minimalManifest + "postprocess: [postprocess/evil.sh]\n",
				"postprocess/evil.sh": "symlink:../../../outside/evil.sh",
			},
			out:  map[string]string{"outside/evil.sh": "#!/bin/sh\n"},
			want: `DIR/manifest.yaml:8: postprocess[0]: path "postprocess/evil.sh" escapes the config dir (it resolves to "REAL/outside/evil.sh")`,
		},
		{
			name:  "missing postprocess file",
			files: map[string]string{"manifest.yaml": minimalManifest + "postprocess: [postprocess/nope.sh]\n"},
			want:  `DIR/manifest.yaml:8: postprocess[0]: path "postprocess/nope.sh" does not exist`,
		},
		{
			name: "postprocess is a directory",
			files: map[string]string{
				"manifest.yaml": minimalManifest + "postprocess: [postprocess]\n",
				"postprocess":   "dir:",
			},
			want: `DIR/manifest.yaml:8: postprocess[0]: path "postprocess" is not a regular file`,
		},
		{
			name:  "absolute remove-files path",
			files: map[string]string{"manifest.yaml": minimalManifest + "remove-files: [/etc/motd]\n"},
			want:  `DIR/manifest.yaml:8: remove-files[0]: absolute path "/etc/motd" is not allowed; use a path relative to the OS root`,
		},
		{
			name: "include cycle",
			files: map[string]string{
				"manifest.yaml":    minimalManifest + "include: common/a.yaml\n",
				"common/a.yaml":    "include: [b.yaml]\n",
				"common/b.yaml":    "packages: [curl]\ninclude:\n  - a.yaml\n",
				"postprocess/x.sh": "",
			},
			want: "DIR/common/b.yaml:3: include[0]: include cycle: common/a.yaml -> common/b.yaml -> common/a.yaml",
		},
		{
			name:  "include of itself",
			files: map[string]string{"manifest.yaml": minimalManifest + "include: [manifest.yaml]\n"},
			want:  "DIR/manifest.yaml:8: include[0]: include cycle: manifest.yaml -> manifest.yaml",
		},
		{
			name:  "include escaping",
			files: map[string]string{"manifest.yaml": minimalManifest + "include: ../shared.yaml\n"},
			out:   map[string]string{"shared.yaml": "packages: [curl]\n"},
			want:  `DIR/manifest.yaml:8: include: path "../shared.yaml" escapes the config dir`,
		},
		{
			name:  "include of wrong type",
			files: map[string]string{"manifest.yaml": minimalManifest + "include: {file: a.yaml}\n"},
			want:  "DIR/manifest.yaml:8: include: expected a string or a list, got a mapping",
		},
		{
			name: "error inside included file",
			files: map[string]string{
				"manifest.yaml":     minimalManifest + "include: [common/base.yaml]\n",
				"common/base.yaml":  lines("units:", "  enable:", "    - getty@tty1.service", "  disbale: [x.service]"),
				"common/unused.yml": "",
			},
			want: `DIR/common/base.yaml:4: units.disbale: unknown key (did you mean "disable"?)`,
		},
		{
			name: "invalid value from included file",
			files: map[string]string{
				"manifest.yaml":    minimalManifest + "include: [common/base.yaml]\n",
				"common/base.yaml": lines("packages:", "  - ok", "  - Not_OK"),
			},
			want: `DIR/common/base.yaml:3: packages[1]: invalid package name "Not_OK" (must match ^[a-z0-9][a-z0-9+.-]+$)`,
		},
		{
			name:  "bad rootfs",
			files: map[string]string{"image.yaml": "size: 8\nrootfs: btrfs\n"},
			want:  `DIR/image.yaml:2: rootfs: unsupported value "btrfs" (allowed: ext4)`,
		},
		{
			name:  "size 0",
			files: map[string]string{"image.yaml": "size: 0\n"},
			want:  "DIR/image.yaml:1: size: must be between 2 and 2048 GiB, got 0",
		},
		{
			name:  "size 100000",
			files: map[string]string{"image.yaml": "compressor: xz\nsize: 100000\n"},
			want:  "DIR/image.yaml:2: size: must be between 2 and 2048 GiB, got 100000",
		},
		{
			name:  "qcow2-compression typo",
			files: map[string]string{"image.yaml": "size: 12\nqcow2-compression: zsdt\n"},
			want:  `DIR/image.yaml:2: qcow2-compression: unsupported value "zsdt" (did you mean "zstd"? allowed: zstd, zlib, none)`,
		},
		{
			name:  "negative cache size",
			files: map[string]string{"image.yaml": "cache-size: -1\n"},
			want:  "DIR/image.yaml:1: cache-size: must be between 1 and 65536 GiB, got -1",
		},
		{
			name:  "integer overflow",
			files: map[string]string{"image.yaml": "size: 99999999999999999999999\n"},
			want:  "DIR/image.yaml:1: size: integer 99999999999999999999999 is out of range",
		},
		{
			name:  "string instead of integer",
			files: map[string]string{"image.yaml": "size: '10'\n"},
			want:  "DIR/image.yaml:1: size: expected an integer, got a string",
		},
		{
			name:  "unknown platform",
			files: map[string]string{"image.yaml": "platforms:\n  qemu: {size: 4}\n  openstak: {}\n"},
			want:  `DIR/image.yaml:3: platforms.openstak: unknown platform (did you mean "openstack"? allowed: qemu, metal, metal4k, aws, openstack, gcp, azure, vmware)`,
		},
		{
			name:  "platform size too small",
			files: map[string]string{"image.yaml": "platforms:\n  metal:\n    size: 1\n"},
			want:  "DIR/image.yaml:3: platforms.metal.size: must be 0 (inherit) or between 2 and 2048 GiB, got 1",
		},
		{
			name:  "bad aws boot mode",
			files: map[string]string{"image.yaml": "aws:\n  boot-mode: bios\n"},
			want:  `DIR/image.yaml:2: aws.boot-mode: unsupported value "bios" (allowed: uefi, legacy-bios, uefi-preferred)`,
		},
		{
			name:  "image.yaml is a list",
			files: map[string]string{"image.yaml": "- size: 10\n"},
			want:  "DIR/image.yaml:1: expected a mapping at the top level, got a sequence",
		},
		{
			name:  "overlay entry is a file",
			files: map[string]string{"overlay.d/10-base/etc/x": "", "overlay.d/README": "hi"},
			want:  "DIR/overlay.d/README: not a directory",
		},
		{
			name:  "overlay symlink outside",
			files: map[string]string{"overlay.d/10-base": "symlink:../../../outside/tree"},
			out:   map[string]string{"outside/tree/etc/x": ""},
			want:  `DIR/overlay.d/10-base: symlink points outside the config dir (to "REAL/outside/tree")`,
		},
		{
			name:  "manifest.yaml symlink outside",
			files: map[string]string{"manifest.yaml": "symlink:../../outside/manifest.yaml"},
			out:   map[string]string{"outside/manifest.yaml": minimalManifest},
			want:  `DIR/manifest.yaml: symlink points outside the config dir (to "REAL/outside/manifest.yaml")`,
		},
		{
			name:  "manifest.yaml symlink to a device",
			files: map[string]string{"manifest.yaml": "symlink:/dev/zero"},
			want:  `DIR/manifest.yaml: symlink points outside the config dir (to "/dev/zero")`,
		},
		{
			name:  "image.yaml symlink outside",
			files: map[string]string{"image.yaml": "symlink:../../outside/image.yaml"},
			out:   map[string]string{"outside/image.yaml": "size: 10\n"},
			want:  `DIR/image.yaml: symlink points outside the config dir (to "REAL/outside/image.yaml")`,
		},
		{
			name:  "image.yaml symlink to the config dir",
			files: map[string]string{"image.yaml": "symlink:."},
			want:  `DIR/image.yaml: is a directory`,
		},
		{
			name:  "image.yaml is a fifo",
			files: map[string]string{"image.yaml": "fifo:"},
			want:  `DIR/image.yaml: not a regular file`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range tt.files {
				files[k] = v
			}
			wantLoadError(t, "src", files, tt.out, tt.want)
		})
	}
}

func TestIncludeMerge(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		"manifest.yaml": lines(
			"include:",
			"  - common/base.yaml",
			"  - extra.yaml",
			"name: derived",
			"stream: stable",
			"distro:",
			"  variant: standard",
			"packages: [vim, curl]",
			"units:",
			"  disable: [apt-daily.timer]",
		),
		"common/base.yaml": lines(
			"include: base-packages.yaml",
			"name: base",
			"ref: base/x86_64/dev",
			"distro:",
			"  suite: bookworm",
			"  mirror: file:///srv/mirror/debian",
			"units:",
			"  enable: [ssh.service]",
			"  disable: [apt-daily.timer]",
		),
		"common/base-packages.yaml": "packages: [systemd, curl]\n",
		"extra.yaml":                "packages: [htop]\ndistro:\n  mirror: ~\n",
	})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Manifest
	if m.Name != "derived" || m.Ref != "base/x86_64/dev" || m.Stream != "stable" {
		t.Errorf("scalars: name %q ref %q stream %q", m.Name, m.Ref, m.Stream)
	}
	if want := []string{"systemd", "curl", "htop", "vim"}; !reflect.DeepEqual(m.Packages, want) {
		t.Errorf("packages = %v, want %v", m.Packages, want)
	}
	wantD := Distro{Family: "debian", Suite: "bookworm", Mirror: "", Components: []string{"main"}, Variant: "standard"}
	if !reflect.DeepEqual(m.Distro, wantD) {
		t.Errorf("distro = %+v, want %+v", m.Distro, wantD)
	}
	wantU := Units{Enable: []string{"ssh.service"}, Disable: []string{"apt-daily.timer"}}
	if !reflect.DeepEqual(m.Units, wantU) {
		t.Errorf("units = %+v, want %+v", m.Units, wantU)
	}
	if m.Include != nil {
		t.Errorf("include not consumed: %v", m.Include)
	}
	want := []string{"common/base-packages.yaml", "common/base.yaml", "extra.yaml", "manifest.yaml"}
	if !reflect.DeepEqual(c.Files, want) {
		t.Errorf("Files = %v, want %v", c.Files, want)
	}
}

func TestRelativeDirInErrors(t *testing.T) {
	root := t.TempDir()
	testutil.WriteTree(t, root, map[string]string{
		"src/config/manifest.yaml": strings.Replace(minimalManifest, "packages:\n", "pakages:\n", 1),
	})
	t.Chdir(root)
	_, err := Load("src/config")
	want := `src/config/manifest.yaml:5: pakages: unknown key (did you mean "packages"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.File != "src/config/manifest.yaml" || ce.Line != 5 || ce.Key != "pakages" {
		t.Errorf("fields: %+v", ce)
	}

	if _, err := Load("src/nope"); err == nil || err.Error() != "src/nope: config directory does not exist" || !IsConfigError(err) {
		t.Errorf("missing dir: %v", err)
	}
	if err := os.Remove("src/config/manifest.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("src/config/"); err == nil || err.Error() != "src/config/manifest.yaml: required file is missing" {
		t.Errorf("missing manifest: %v", err)
	}

	testutil.WriteTree(t, root, map[string]string{"src/config/manifest.yaml": minimalManifest})
	c, err := Load("src/config")
	if err != nil {
		t.Fatal(err)
	}
	if c.Dir != filepath.Join(root, "src/config") {
		t.Errorf("Dir = %q", c.Dir)
	}
}

func TestNormalizedStable(t *testing.T) {
	a := t.TempDir()
	b := t.TempDir()
	testutil.WriteTree(t, a, map[string]string{
		"manifest.yaml": lines(
			"name: demo",
			"ref: demo/x86_64/dev",
			"distro:",
			"  suite: bookworm",
			"  variant: minbase",
			"packages: [systemd, vim]",
			"units:",
			"  enable: [ssh.service]",
			"  mask: []",
		),
		"image.yaml": "size: 12\nplatforms:\n  qemu: {size: 4}\n  aws: {size: 8}\ncompressor: xz\n",
	})
	testutil.WriteTree(t, b, map[string]string{
		"manifest.yaml": lines(
			"# same content, different order and style",
			"units: {enable: [ssh.service]}",
			"packages:",
			"  - systemd",
			"  - vim",
			"distro: {variant: minbase, suite: bookworm, family: debian}",
			"ref: \"demo/x86_64/dev\"",
			"name: demo",
			"stream: dev",
		),
		"image.yaml": "compressor: xz\nplatforms:\n  aws:\n    size: 8\n  qemu:\n    size: 4\nsize: 12\n",
	})
	ca, err := Load(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	na, err := ca.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	nb, err := cb.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	if string(na) != string(nb) {
		t.Errorf("normalized forms differ:\n%s\n%s", na, nb)
	}
	if !strings.HasPrefix(string(na), `{"manifest":{"name":"demo","ref":"demo/x86_64/dev","version-prefix":"1","stream":"dev",`) {
		t.Errorf("unexpected field order: %s", na)
	}

	// Different content must give a different result.
	cb.Manifest.Packages = []string{"vim", "systemd"}
	nc, _ := cb.Normalized()
	if string(nc) == string(na) {
		t.Error("package order change not reflected")
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Key: "x.y", Msg: "bad"}, "a.yaml:3: x.y: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{Error{File: "a.yaml", Line: 1, Key: "k", Msg: "two\nlines"}, "a.yaml:1: k: two lines"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if IsConfigError(errors.New("x")) || IsConfigError(nil) {
		t.Error("IsConfigError true for a plain error")
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "packages", "exclude-packages", "kernel-args", "version-prefix", "ref"}
	for in, want := range map[string]string{
		"pakages":         "packages",
		"excludePackages": "exclude-packages",
		"kernel_args":     "kernel-args",
		"version":         "",
		"xyz":             "",
		"rf":              "ref",
		"vesrion-prefix":  "version-prefix",
		"zz":              "",
		"base":            "",
		"refs":            "ref",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
