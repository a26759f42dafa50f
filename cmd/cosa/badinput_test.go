package main

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
)

// Builds of the bad-input fixture: id1 is tagged "stable", id2 is latest.
const (
	badID1 = "12.20261120.dev.0"
	badID2 = "12.20261121.dev.0"
)

// badInputWorkdir is a workdir made by `cosa init`, with minimalManifest as
// its manifest (so config errors have known line numbers), two builds and
// a tag. builds/.lock exists already, so taking the lock changes nothing.
func badInputWorkdir(t *testing.T) string {
	t.Helper()
	wd := initWorkdir(t)
	testutil.WriteTree(t, filepath.Join(wd, "src", "config"), map[string]string{"manifest.yaml": minimalManifest,
		"postprocess/10-hostname.sh": "#!/bin/sh\n"})
	makeBuilds(t, wd, map[string]string{"stable": badID1},
		fakeBuild{id: badID1, onDisk: true, day: 20}, fakeBuild{id: badID2, onDisk: true, day: 21})
	testutil.WriteTree(t, filepath.Join(wd, "builds"), map[string]string{".lock": ""})
	return wd
}

// treeState records every entry under root by name: type and permission
// bits, size, modification time and symlink target. Directory mtimes catch
// files that were created and removed again.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	st := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		s := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			s += " -> " + target
		}
		st[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	sum, _ := testutil.FileSHA256(t, path)
	return sum
}

// badCase is one malformed config, manifest or command line.
type badCase struct {
	name string
	// files are written under the workdir before the run: "symlink:T"
	// makes a symlink to T, "delete:" removes the file. "WD" in a name or
	// content is the workdir.
	files map[string]string
	args  []string // after -C WD; "WD" is replaced by the workdir
	// emptyPath runs the command with PATH set to an empty directory.
	emptyPath bool
	code      int
	want      string // the one stderr line, without "error: "; WD replaced
}

const (
	cfgDir   = "WD/src/config"
	manifest = cfgDir + "/manifest.yaml"
	imageYML = cfgDir + "/image.yaml"
	badIDMsg = `invalid build id "../../etc": must match [A-Za-z0-9][A-Za-z0-9._+-]*`
)

// A pipeline manifest with one valid pipeline, for variations.
const goodPipeline = `{"version":"2","pipelines":[{"name":"image","stages":[{"type":"org.cosa.truncate","options":{"filename":"disk.raw","size":2147483648}}]}]}`

var huge = strings.Repeat("a", 1<<20)

var badCases = []badCase{
	// Config: manifest.yaml (minimalManifest has 8 lines).
	{name: "unknown key", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "streem: dev\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: streem: unknown key (did you mean "stream"?)`},
	{name: "wrong type list", files: map[string]string{"src/config/manifest.yaml": strings.Replace(minimalManifest, "packages:\n  - systemd", "packages: systemd", 1)},
		args: []string{"build"}, code: 2, want: manifest + `:5: packages: expected a list, got a string`},
	{name: "wrong type mapping", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "units: [a.service]\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: units: expected a mapping, got a sequence`},
	{name: "missing required key", files: map[string]string{"src/config/manifest.yaml": strings.Replace(minimalManifest, "ref: demo/x86_64/dev\n", "", 1)},
		args: []string{"build"}, code: 2, want: manifest + `:1: ref: required key is missing`},
	{name: "required key null", files: map[string]string{"src/config/manifest.yaml": strings.Replace(minimalManifest, "suite: bookworm", "suite:", 1)},
		args: []string{"build"}, code: 2, want: manifest + `:4: distro.suite: required key has no value`},
	{name: "duplicate key", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "name: again\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: name: duplicate key (first defined on line 1)`},
	{name: "yaml syntax", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "\t- oops\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: YAML syntax error: found a tab character that violates indentation`},
	{name: "empty manifest", files: map[string]string{"src/config/manifest.yaml": ""},
		args: []string{"build"}, code: 2, want: manifest + `:1: file is empty`},
	{name: "enormous name", files: map[string]string{"src/config/manifest.yaml": strings.Replace(minimalManifest, "name: demo", "name: "+strings.ToUpper(huge), 1)},
		args: []string{"build"}, code: 2, want: manifest + `:1: name: invalid name "` + strings.ToUpper(huge[:200]) + `..." (must match ^[a-z0-9][a-z0-9._-]*$)`},
	{name: "enormous unknown key", files: map[string]string{"src/config/manifest.yaml": minimalManifest + huge[:1000] + ": 1\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: ` + huge[:200] + `...: unknown key`},
	{name: "key longer than YAML allows", files: map[string]string{"src/config/manifest.yaml": minimalManifest + huge + ": 1\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: YAML syntax error: could not find expected ':'`},
	{name: "postprocess dotdot", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "  - ../../../etc/passwd\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: postprocess[1]: path "../../../etc/passwd" escapes the config dir`},
	{name: "postprocess absolute", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "  - /etc/passwd\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: postprocess[1]: absolute path "/etc/passwd" is not allowed; use a path relative to the config dir`},
	{name: "postprocess symlink out", files: map[string]string{
		"src/config/manifest.yaml":       minimalManifest + "  - postprocess/evil.sh\n",
		"src/config/postprocess/evil.sh": "symlink:../../../outside.sh", "outside.sh": "#!/bin/sh\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: postprocess[1]: path "postprocess/evil.sh" escapes the config dir (it resolves to "WD/outside.sh")`},
	{name: "include dotdot", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "include: ../../outside.yaml\n", "outside.yaml": "packages: [x]\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: include: path "../../outside.yaml" escapes the config dir`},
	{name: "include absolute", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "include: [/etc/hostname]\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: include[0]: absolute path "/etc/hostname" is not allowed; use a path relative to the including file's directory`},
	{name: "include symlink out", files: map[string]string{
		"src/config/manifest.yaml": minimalManifest + "include: base.yaml\n",
		"src/config/base.yaml":     "symlink:../../outside.yaml", "outside.yaml": "packages: [x]\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: include: path "base.yaml" escapes the config dir (it resolves to "WD/outside.yaml")`},
	{name: "include cycle", files: map[string]string{
		"src/config/manifest.yaml": minimalManifest + "include: a.yaml\n", "src/config/a.yaml": "include: manifest.yaml\n"},
		args: []string{"build"}, code: 2, want: cfgDir + `/a.yaml:1: include: include cycle: manifest.yaml -> a.yaml -> manifest.yaml`},
	{name: "manifest.yaml symlink out", files: map[string]string{"src/config/manifest.yaml": "symlink:../../outside.yaml", "outside.yaml": minimalManifest},
		args: []string{"build"}, code: 2, want: manifest + `: symlink points outside the config dir (to "WD/outside.yaml")`},
	{name: "image.yaml symlink out", files: map[string]string{"src/config/image.yaml": "symlink:/etc/passwd"},
		args: []string{"build"}, code: 2, want: imageYML + `: symlink points outside the config dir (to "/etc/passwd")`},
	{name: "overlay symlink out", files: map[string]string{"src/config/overlay.d/99-evil": "symlink:/etc"},
		args: []string{"build"}, code: 2, want: cfgDir + `/overlay.d/99-evil: symlink points outside the config dir (to "/etc")`},
	{name: "overlay entry is a file", files: map[string]string{"src/config/overlay.d/99-file": "x"},
		args: []string{"build"}, code: 2, want: cfgDir + `/overlay.d/99-file: not a directory`},
	{name: "remove-files dotdot", files: map[string]string{"src/config/manifest.yaml": minimalManifest + "remove-files: [usr/../../etc]\n"},
		args: []string{"build"}, code: 2, want: manifest + `:9: remove-files[0]: path "usr/../../etc" must not contain ".." components`},
	{name: "no manifest", files: map[string]string{"src/config/manifest.yaml": "delete:"},
		args: []string{"build"}, code: 1, want: "WD is not a cosa working directory (no src/config/manifest.yaml); run `cosa init` first"},

	// Config: image.yaml.
	{name: "image size huge", files: map[string]string{"src/config/image.yaml": "size: 100000\n"},
		args: []string{"build"}, code: 2, want: imageYML + `:1: size: must be between 2 and 2048 GiB, got 100000`},
	{name: "image size overflow", files: map[string]string{"src/config/image.yaml": "size: 99999999999999999999999\n"},
		args: []string{"build"}, code: 2, want: imageYML + `:1: size: integer 99999999999999999999999 is out of range`},
	{name: "image size string", files: map[string]string{"src/config/image.yaml": "size: big\n"},
		args: []string{"buildextend-metal"}, code: 2, want: imageYML + `:1: size: expected an integer, got a string`},
	{name: "image unknown platform", files: map[string]string{"src/config/image.yaml": "platforms:\n  metl:\n    size: 3\n"},
		args: []string{"buildextend-metal"}, code: 2, want: imageYML + `:2: platforms.metl: unknown platform (did you mean "metal"? allowed: qemu, metal, metal4k, aws, openstack, gcp, azure, vmware)`},
	{name: "image bad compressor", files: map[string]string{"src/config/image.yaml": "compressor: lz4\n"},
		args: []string{"fetch"}, code: 2, want: imageYML + `:1: compressor: unsupported value "lz4" (allowed: gzip, xz, zstd)`},

	// cosa init from a bad config: checked before anything is written, the
	// error names the source's file.
	{name: "init --force bad source", files: map[string]string{"badsrc/manifest.yaml": minimalManifest + "pakages: [x]\n"},
		args: []string{"init", "--force", "WD/badsrc"}, code: 2, want: `WD/badsrc/manifest.yaml:9: pakages: unknown key (did you mean "packages"?)`},
	{name: "init new dir bad source", files: map[string]string{"badsrc/manifest.yaml": minimalManifest + "pakages: [x]\n"},
		args: []string{"init", "-C", "WD/new", "WD/badsrc"}, code: 2, want: `WD/badsrc/manifest.yaml:9: pakages: unknown key (did you mean "packages"?)`},
	{name: "init source manifest symlink out", files: map[string]string{"badsrc/manifest.yaml": "symlink:/etc/passwd"},
		args: []string{"init", "-C", "WD/new", "WD/badsrc"}, code: 2, want: `WD/badsrc/manifest.yaml: symlink points outside the config dir (to "/etc/passwd")`},

	// Build ids and other flags.
	{name: "build --version dotdot", args: []string{"build", "--version", "../../etc"}, code: 2, want: "--version: " + badIDMsg},
	{name: "build --version latest", args: []string{"build", "--version", "latest"}, code: 2, want: `--version: invalid build id "latest": reserved for the latest symlink`},
	{name: "build --version long", args: []string{"build", "--version", strings.Repeat("9", 129)}, code: 2,
		want: `--version: invalid build id "` + strings.Repeat("9", 129) + `": longer than 128 characters`},
	{name: "build --version space", args: []string{"build", "--version", "1 2"}, code: 2, want: `--version: invalid build id "1 2": must match [A-Za-z0-9][A-Za-z0-9._+-]*`},
	{name: "meta dotdot", args: []string{"meta", "--dump", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "meta absolute", args: []string{"meta", "--get", "name", "--build", "/etc"}, code: 2, want: `invalid build id "/etc": must match [A-Za-z0-9][A-Za-z0-9._+-]*`},
	{name: "meta set dotdot", args: []string{"meta", "--set", "summary=x", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "meta set bad arch", args: []string{"meta", "--set", "summary=x", "--arch", "../x"}, code: 1, want: `invalid arch "../x": must match [a-z0-9][a-z0-9_]*`},
	{name: "meta set invalid value", args: []string{"meta", "--set", "name="}, code: 1,
		want: `--set name: cannot set "name": meta.json invalid at "/name": minLength: got 0, want 1`},
	{name: "meta no mode", args: []string{"meta"}, code: 2, want: "give one of --get, --set or --dump"},
	{name: "meta set no value", args: []string{"meta", "--set", "summary"}, code: 2, want: `--set "summary": want KEY=VALUE`},
	{name: "tag dotdot build", args: []string{"tag", "update", "--tag", "x", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "tag bad name", args: []string{"tag", "update", "--tag", "../x"}, code: 2, want: `invalid tag name "../x": must match [A-Za-z0-9][A-Za-z0-9._+-]*`},
	{name: "tag delete missing", args: []string{"tag", "delete", "--tag", "nope"}, code: 1, want: `no tag named "nope"`},
	{name: "prune dotdot", args: []string{"prune", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "prune keep 0", args: []string{"prune", "--keep-last-n", "0"}, code: 2, want: "--keep-last-n must be at least 1"},
	{name: "prune keep not a number", args: []string{"prune", "--keep-last-n", "x"}, code: 2, want: `invalid argument "x" for "--keep-last-n" flag: strconv.ParseInt: parsing "x": invalid syntax`},
	{name: "prune tagged", args: []string{"prune", "--build", badID1}, code: 1, want: `build "` + badID1 + `" is tagged stable; delete the tag first`},
	{name: "buildextend dotdot", args: []string{"buildextend-qemu", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "buildextend unknown build", args: []string{"buildextend-metal", "--build", "12.20990101.dev.0"}, code: 1, want: "build 12.20990101.dev.0 is not in WD/builds"},
	{name: "buildextend-aws flag without upload", args: []string{"buildextend-aws", "--region", "us-east-1"}, code: 2, want: "--upload, --region and --bucket must be given together (missing --bucket and --upload)"},
	{name: "buildextend-aws bad region", args: []string{"buildextend-aws", "--upload", "--region", "../x", "--bucket", "s3://b/p"}, code: 2,
		want: `--region "../x" is not a region name (e.g. us-east-1)`},
	{name: "compress dotdot", args: []string{"compress", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "decompress dotdot", args: []string{"decompress", "--build", "../../etc"}, code: 2, want: badIDMsg},
	{name: "compress bad compressor", args: []string{"compress", "--compressor", "lz4"}, code: 2, want: `--compressor: unknown compressor "lz4" (want gzip, xz or zstd)`},
	{name: "unknown command", args: []string{"frobnicate"}, code: 2, want: `unknown command "frobnicate" for "cosa"`},
	{name: "unknown flag", args: []string{"list", "--frob"}, code: 2, want: "unknown flag: --frob"},
	{name: "bad duration", args: []string{"--lock-timeout", "soon", "list"}, code: 2, want: `invalid argument "soon" for "--lock-timeout" flag: time: invalid duration "soon"`},
	{name: "extra argument", args: []string{"build", "now"}, code: 2, want: "cosa build takes no arguments, got \"now\"; to make only the OSTree commit (no disk image) use --skip-image; images are added with cosa buildextend-PLATFORM"},
	{name: "clean extra argument", args: []string{"clean", "everything"}, code: 2, want: "cosa clean takes no arguments, got \"everything\"; options are flags, see 'cosa clean --help'"},

	// Pipeline manifests for `cosa pipeline run`.
	{name: "pipeline missing file", args: []string{"pipeline", "run", "WD/nope.json"}, code: 2, want: "open WD/nope.json: no such file or directory"},
	{name: "pipeline truncated", files: map[string]string{"p.json": goodPipeline[:40]}, args: []string{"pipeline", "run", "WD/p.json"}, code: 2,
		want: "WD/p.json:1:40: unexpected end of JSON input"},
	{name: "pipeline wrong type", files: map[string]string{"p.json": `{"version":2}`}, args: []string{"pipeline", "run", "WD/p.json"}, code: 2,
		want: "WD/p.json:1:12: version: expected a string, got a number"},
	{name: "pipeline unknown key", files: map[string]string{"p.json": strings.Replace(goodPipeline, `"version"`, `"extra":1,"version"`, 1)},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2, want: `WD/p.json: json: unknown field "extra"`},
	{name: "pipeline bad version", files: map[string]string{"p.json": strings.Replace(goodPipeline, `"2"`, `"1"`, 1)},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2, want: `WD/p.json: manifest: version: want "2", got "1"`},
	{name: "pipeline unknown stage", files: map[string]string{"p.json": strings.Replace(goodPipeline, "org.cosa.truncate", "org.cosa.rm-rf", 1)},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2, want: `WD/p.json: manifest: pipeline image stage 0 (org.cosa.rm-rf): unknown stage type "org.cosa.rm-rf"`},
	{name: "pipeline filename dotdot", files: map[string]string{"p.json": strings.Replace(goodPipeline, "disk.raw", "../../disk.raw", 1)},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2, want: `WD/p.json: manifest: pipeline image stage 0 (org.cosa.truncate): options: filename: "../../disk.raw" must be a plain file name`},
	{name: "pipeline huge size", files: map[string]string{"p.json": strings.Replace(goodPipeline, "2147483648", "107374182400000", 1)},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2,
		want: `WD/p.json: manifest: pipeline image stage 0 (org.cosa.truncate): options: size: 107374182400000 must be a whole number of MiB between 1 GiB and 4 TiB`},
	{name: "pipeline forward input", files: map[string]string{"p.json": `{"version":"2","pipelines":[{"name":"q","stages":[{"type":"org.cosa.qemu-img.convert","options":{"filename":"disk.raw","format":"qcow2","source":"disk.raw"},"inputs":{"image":"name:image"}}]}]}`},
		args: []string{"pipeline", "run", "WD/p.json"}, code: 2,
		want: `WD/p.json: manifest: pipeline q stage 0 (org.cosa.qemu-img.convert): input image: "name:image" must be name:<an earlier pipeline>`},
	{name: "pipeline two manifests", args: []string{"pipeline", "run", "a.json", "b.json"}, code: 2, want: "pipeline run takes exactly one manifest file"},

	// Corrupt builds.json and meta.json in the workdir.
	{name: "builds.json truncated list", files: map[string]string{"builds/builds.json": `{"builds": [`}, args: []string{"list"}, code: 1,
		want: "WD/builds/builds.json:1:12: unexpected end of JSON input"},
	{name: "builds.json truncated tag", files: map[string]string{"builds/builds.json": `{"builds": [`}, args: []string{"tag", "update", "--tag", "x"}, code: 1,
		want: "WD/builds/builds.json:1:12: unexpected end of JSON input"},
	{name: "builds.json wrong type", files: map[string]string{"builds/builds.json": `{"builds": {"a": 1}}`}, args: []string{"prune", "--dry-run"}, code: 1,
		want: "WD/builds/builds.json:1:12: builds: expected an array, got an object"},
	{name: "builds.json dotdot id", files: map[string]string{"builds/builds.json": `{"builds": [{"id": "../../etc", "arches": ["x86_64"]}]}`},
		args: []string{"prune", "--keep-last-n", "1"}, code: 1, want: "WD/builds/builds.json: " + badIDMsg},
	{name: "builds.json dangling tag", files: map[string]string{"builds/builds.json": `{"builds": [{"id": "1", "arches": ["x86_64"]}], "tags": [{"name": "t", "target": "2"}]}`},
		args: []string{"tag", "list"}, code: 1, want: `WD/builds/builds.json: tag "t" points at build "2", which is not in builds.json`},
	{name: "meta.json truncated", files: map[string]string{"builds/" + badID2 + "/ARCH/meta.json": `{"buildid":`}, args: []string{"meta", "--dump"}, code: 1,
		want: "WD/builds/" + badID2 + "/ARCH/meta.json:1:11: unexpected end of JSON input"},
	{name: "meta.json not an object", files: map[string]string{"builds/" + badID2 + "/ARCH/meta.json": "[]\n"}, args: []string{"meta", "--set", "summary=x"}, code: 1,
		want: "WD/builds/" + badID2 + "/ARCH/meta.json:1:1: expected an object, got an array"},
	{name: "meta.json wrong type", files: map[string]string{"builds/" + badID2 + "/ARCH/meta.json": `{"buildid": 7}`}, args: []string{"compress"}, code: 1,
		want: "WD/builds/" + badID2 + "/ARCH/meta.json:1:13: buildid: expected a string, got a number"},

	// Missing host tools.
	{name: "fetch without apt-get", emptyPath: true, args: []string{"fetch"}, code: 1,
		want: "missing host tools: apt-get (not found in PATH; `make deps` installs them on Debian)"},
	{name: "build without tools", emptyPath: true, args: []string{"build"}, code: 1,
		want: "missing host tools: mmdebstrap, ostree, tar (not found in PATH; `make deps` installs them on Debian)"},
	{name: "buildextend without ostree", emptyPath: true, args: []string{"buildextend-qemu"}, code: 1,
		want: "missing host tools: ostree (not found in PATH; `make deps` installs them on Debian)"},
	{name: "prune without ostree", emptyPath: true, args: []string{"prune", "--keep-last-n", "1"}, code: 1,
		want: "missing host tools: ostree (not found in PATH; `make deps` installs them on Debian)"},
	{name: "init git without git", emptyPath: true, args: []string{"init", "--force", "https://example.invalid/cfg.git"}, code: 1,
		want: "missing host tools: git (not found in PATH; `make deps` installs them on Debian)"},
}

// TestBadInput runs each malformed config, manifest and command line
// through the CLI and checks the exact one-line error, the exit code, and
// that the workdir (every name, size and mtime) and builds.json are as
// they were. builds/.lock is left out: taking the lock records its holder
// there, which is not a change to the workdir.
func TestBadInput(t *testing.T) {
	if len(badCases) < 40 {
		t.Fatalf("only %d cases", len(badCases))
	}
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			wd := badInputWorkdir(t)
			sub := func(s string) string {
				return strings.ReplaceAll(strings.ReplaceAll(s, "WD", wd), "ARCH", arch)
			}
			for _, name := range slices.Sorted(maps.Keys(tc.files)) {
				p := filepath.Join(wd, filepath.FromSlash(sub(name)))
				content := sub(tc.files[name])
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				switch target, isLink := strings.CutPrefix(content, "symlink:"); {
				case isLink:
					// A file of the fixture (manifest.yaml) may become a link.
					if err = os.Remove(p); err == nil || os.IsNotExist(err) {
						err = os.Symlink(target, p)
					}
				case content == "delete:":
					err = os.Remove(p)
				default:
					err = os.WriteFile(p, []byte(content), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.emptyPath {
				t.Setenv("PATH", t.TempDir())
			}
			index := filepath.Join(wd, "builds", "builds.json")
			indexBefore := fileSum(t, index)
			before := treeState(t, wd)

			args := []string{"-C", wd}
			for _, a := range tc.args {
				args = append(args, sub(a))
			}
			r := cosa(t, args...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d", r.code, tc.code)
			}
			if want := "error: " + sub(tc.want) + "\n"; r.stderr != want {
				t.Errorf("stderr:\n%q\nwant:\n%q", clipForLog(r.stderr), clipForLog(want))
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty", clipForLog(r.stdout))
			}
			if fileSum(t, index) != indexBefore {
				t.Error("builds.json changed")
			}
			after := treeState(t, wd)
			lock := filepath.Join("builds", build.LockFile)
			delete(before, lock)
			delete(after, lock)
			for _, k := range slices.Sorted(maps.Keys(after)) {
				if b, ok := before[k]; !ok {
					t.Errorf("%s appeared: %s", k, after[k])
				} else if b != after[k] {
					t.Errorf("%s changed: %s -> %s", k, b, after[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(before)) {
				if _, ok := after[k]; !ok {
					t.Errorf("%s disappeared", k)
				}
			}
		})
	}
}

func clipForLog(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}
