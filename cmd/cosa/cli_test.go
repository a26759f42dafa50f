package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	defaultconfig "github.com/cosa-build/cosa/src/config"
)

// wantMode asserts the type and permission bits of path (not following a
// final symlink).
func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if got := info.Mode() & (fs.ModeType | fs.ModePerm); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestInitDefault(t *testing.T) {
	// A directory that does not exist yet is created.
	wd := filepath.Join(t.TempDir(), "a", "w")
	cosa(t, "init", "-C", wd).wantOK(t).
		wantStdout(t, "Initialized "+wd+" from the built-in default config\n")

	cfg := filepath.Join(wd, "src", "config")
	wantMode(t, filepath.Join(cfg, "manifest.yaml"), 0o644)
	wantMode(t, filepath.Join(cfg, "image.yaml"), 0o644)
	wantMode(t, filepath.Join(cfg, "overlay.d"), fs.ModeDir|0o755)
	wantMode(t, filepath.Join(cfg, "postprocess", "20-ssh-host-keys.sh"), 0o755)
	for _, d := range []string{"cache", "tmp", "builds"} {
		wantMode(t, filepath.Join(wd, d), fs.ModeDir|0o755)
		if got := dirEntries(t, filepath.Join(wd, d)); len(got) != 0 {
			t.Errorf("%s is not empty: %v", d, got)
		}
	}
	for _, name := range []string{"manifest.yaml", "image.yaml", "postprocess/20-ssh-host-keys.sh"} {
		want, err := fs.ReadFile(defaultconfig.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(cfg, filepath.FromSlash(name)))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s differs from the embedded default (err %v)", name, err)
		}
	}
	if got := dirEntries(t, filepath.Join(wd, "src")); !slices.Equal(got, []string{"config"}) {
		t.Errorf("src/ holds %v, want only config (no staging leftovers)", got)
	}
}

func TestInitNonEmptyAndForce(t *testing.T) {
	wd := initWorkdir(t)
	cfg := filepath.Join(wd, "src", "config")
	// Local edits, and a build the user wants to keep.
	testutil.WriteTree(t, cfg, map[string]string{"marker": "mine\n"})
	testutil.WriteTree(t, wd, map[string]string{"builds/keep": "x\n"})
	before := snapshot(t, wd)

	cosa(t, "init", "-C", wd).wantCode(t, 1).wantStdout(t, "").
		wantStderr(t, "error: "+wd+" is not empty; use --force to initialize it anyway (src/config is then replaced)\n")
	wantUnchanged(t, "workdir after refused init", before, snapshot(t, wd))

	cosa(t, "init", "--force", "-C", wd).wantOK(t).
		wantStdout(t, "Initialized "+wd+" from the built-in default config\n")
	if _, err := os.Stat(filepath.Join(cfg, "marker")); !os.IsNotExist(err) {
		t.Errorf("src/config was not replaced: marker still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(cfg, "manifest.yaml")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(wd, "builds", "keep")); err != nil {
		t.Errorf("init --force touched builds/: %v", err)
	}
	if got := dirEntries(t, filepath.Join(wd, "src")); !slices.Equal(got, []string{"config"}) {
		t.Errorf("src/ holds %v, want only config", got)
	}

	// Any entry makes a directory non-empty, even a hidden one.
	other := t.TempDir()
	testutil.WriteTree(t, other, map[string]string{".hidden": ""})
	cosa(t, "init", "-C", other).wantCode(t, 1).wantStderrContains(t, "is not empty")
	if got := dirEntries(t, other); !slices.Equal(got, []string{".hidden"}) {
		t.Errorf("refused init left %v", got)
	}
}

// configSource writes a valid config dir with an executable script, a
// private file, a symlink and a nested overlay.
func configSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "myconfig")
	testutil.WriteTree(t, src, map[string]string{
		"manifest.yaml":              minimalManifest,
		"image.yaml":                 "size: 12\n",
		"postprocess/10-hostname.sh": "#!/bin/sh\n",
		"overlay.d/10-a/etc/motd":    "hi\n",
		"secret.txt":                 "s\n",
	})
	if err := os.Chmod(filepath.Join(src, "secret.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("manifest.yaml", filepath.Join(src, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../etc/motd", filepath.Join(src, "overlay.d", "10-a", "motd-link")); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestInitFromLocalDir(t *testing.T) {
	src := configSource(t)
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd, src).wantOK(t).wantStdout(t, "Initialized "+wd+" from "+src+"\n")
	cfg := filepath.Join(wd, "src", "config")
	wantUnchanged(t, "copied config", snapshot(t, src), snapshot(t, cfg))
	wantMode(t, filepath.Join(cfg, "postprocess", "10-hostname.sh"), 0o755)
	wantMode(t, filepath.Join(cfg, "secret.txt"), 0o600)
	wantMode(t, filepath.Join(cfg, "link.yaml"), fs.ModeSymlink|0o777)
	for _, d := range []string{"cache", "tmp", "builds"} {
		wantMode(t, filepath.Join(wd, d), fs.ModeDir|0o755)
	}
}

func TestInitFromSymlinkToDir(t *testing.T) {
	src := configSource(t)
	link := filepath.Join(t.TempDir(), "cfg-link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd, link).wantOK(t)
	cfg := filepath.Join(wd, "src", "config")
	wantMode(t, cfg, fs.ModeDir|0o755)
	wantUnchanged(t, "config copied through a symlink", snapshot(t, src), snapshot(t, cfg))
}

func TestInitSourceWithoutManifest(t *testing.T) {
	src := filepath.Join(t.TempDir(), "nomanifest")
	testutil.WriteTree(t, src, map[string]string{"image.yaml": "size: 12\n"})
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd, src).wantCode(t, 1).wantStdout(t, "").
		wantStderr(t, "error: the config source \""+src+"\" has no manifest.yaml\n")
	if _, err := os.Lstat(filepath.Join(wd, "src", "config")); !os.IsNotExist(err) {
		t.Errorf("src/config left behind: %v", err)
	}
	// The failed init must not leave the directory "not empty", or the
	// user could not simply retry without --force.
	if got := dirEntries(t, wd); len(got) != 0 {
		t.Errorf("failed init left %v in %s", got, wd)
	}
	cosa(t, "init", "-C", wd, configSource(t)).wantOK(t)

	// A source that does not exist, or is a file.
	wd2 := t.TempDir()
	cosa(t, "init", "-C", wd2, filepath.Join(src, "missing")).wantCode(t, 1).
		wantStderrContains(t, "no such file or directory")
	cosa(t, "init", "-C", wd2, filepath.Join(src, "image.yaml")).wantCode(t, 1).
		wantStderr(t, "error: "+filepath.Join(src, "image.yaml")+" is not a directory\n")
	if got := dirEntries(t, wd2); len(got) != 0 {
		t.Errorf("failed init left %v in %s", got, wd2)
	}
}

func TestInitBadConfig(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bad")
	testutil.WriteTree(t, src, map[string]string{
		"manifest.yaml":              minimalManifest + "pakages: [x]\n",
		"postprocess/10-hostname.sh": "#!/bin/sh\n",
	})
	parent := t.TempDir()
	wd := filepath.Join(parent, "w")
	// The error names the file in the source, where the user fixes it;
	// the workdir is not created at all.
	cosa(t, "init", "-C", wd, src).wantCode(t, 2).wantStdout(t, "").
		wantStderr(t, "error: "+src+"/manifest.yaml:9: pakages: unknown key (did you mean \"packages\"?)\n")
	if got := dirEntries(t, parent); len(got) != 0 {
		t.Errorf("a failed init left %v", got)
	}

	// --force over a working workdir: the old config stays, nothing else
	// changes.
	full := initWorkdir(t)
	before := snapshot(t, full)
	cosa(t, "init", "--force", "-C", full, src).wantCode(t, 2).wantStdout(t, "").
		wantStderrContains(t, src+"/manifest.yaml:9: pakages: unknown key")
	wantUnchanged(t, "workdir after init --force from a bad config", before, snapshot(t, full))
}

// A bad config in a git repository is named by the URL and the file's path
// in the repository; the clone is not left anywhere.
func TestInitBadConfigFromGit(t *testing.T) {
	url := gitRepo(t)
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd, url, "--branch", "bad").wantCode(t, 2).wantStdout(t, "").
		wantStderr(t, "error: "+url+": manifest.yaml:9: pakages: unknown key (did you mean \"packages\"?)\n")
	if _, err := os.Lstat(wd); !os.IsNotExist(err) {
		t.Errorf("a failed init left %s: %v", wd, err)
	}
}

func TestInitBranchNeedsGitURL(t *testing.T) {
	parent := t.TempDir()
	wd := filepath.Join(parent, "w")
	const msg = "error: --branch needs a git URL as the source\n"
	cosa(t, "init", "-C", wd, "--branch", "main").wantCode(t, 2).wantStdout(t, "").wantStderr(t, msg)
	cosa(t, "init", "-C", wd, "--branch", "main", configSource(t)).wantCode(t, 2).wantStderr(t, msg)
	if got := dirEntries(t, parent); len(got) != 0 {
		t.Errorf("bad command line created %v", got)
	}
	// The usage error wins over "not empty".
	full := initWorkdir(t)
	cosa(t, "init", "-C", full, "--branch", "main").wantCode(t, 2).wantStderr(t, msg)
}

// gitRepo makes a bare repository holding a config on branch main (the
// default branch), a variant named "other" on branch other and a config
// with an unknown key on branch bad; it returns the repository's file://
// URL.
func gitRepo(t *testing.T) string {
	t.Helper()
	needTool(t, "git")
	// Keep the user's and the system's git configuration out of it.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "t")
	t.Setenv("GIT_AUTHOR_EMAIL", "t@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "t")
	t.Setenv("GIT_COMMITTER_EMAIL", "t@example.com")
	base := t.TempDir()
	work := filepath.Join(base, "work")
	testutil.WriteTree(t, work, map[string]string{
		"manifest.yaml":              minimalManifest,
		"postprocess/10-hostname.sh": "#!/bin/sh\n",
	})
	runTool(t, work, "git", "-c", "init.defaultBranch=main", "init", "-q")
	runTool(t, work, "git", "add", ".")
	runTool(t, work, "git", "commit", "-q", "-m", "main")
	runTool(t, work, "git", "checkout", "-q", "-b", "other")
	testutil.WriteTree(t, work, map[string]string{"manifest.yaml": strings.Replace(minimalManifest, "name: demo", "name: other", 1)})
	runTool(t, work, "git", "commit", "-q", "-a", "-m", "other")
	runTool(t, work, "git", "checkout", "-q", "-b", "bad", "main")
	testutil.WriteTree(t, work, map[string]string{"manifest.yaml": minimalManifest + "pakages: [x]\n"})
	runTool(t, work, "git", "commit", "-q", "-a", "-m", "bad")
	runTool(t, work, "git", "checkout", "-q", "main")
	bare := filepath.Join(base, "repo.git")
	runTool(t, base, "git", "clone", "-q", "--bare", work, bare)
	return "file://" + bare
}

func TestInitFromGit(t *testing.T) {
	url := gitRepo(t)
	for _, tc := range []struct{ branch, wantName string }{{"", "name: demo\n"}, {"other", "name: other\n"}} {
		t.Run("branch="+tc.branch, func(t *testing.T) {
			wd := filepath.Join(t.TempDir(), "w")
			args := []string{"init", "-C", wd, url}
			if tc.branch != "" {
				args = append(args, "--branch", tc.branch)
			}
			cosa(t, args...).wantOK(t).wantStdout(t, "Initialized "+wd+" from "+url+"\n")
			cfg := filepath.Join(wd, "src", "config")
			data, err := os.ReadFile(filepath.Join(cfg, "manifest.yaml"))
			if err != nil || !strings.HasPrefix(string(data), tc.wantName) {
				t.Errorf("manifest.yaml = %q, %v; want it to start with %q", data, err, tc.wantName)
			}
			wantMode(t, filepath.Join(cfg, "postprocess", "10-hostname.sh"), 0o755)
			wantMode(t, filepath.Join(cfg, ".git"), fs.ModeDir|0o755)
			out, err := exec.Command("git", "-C", cfg, "status", "--porcelain", "--branch").Output()
			if err != nil {
				t.Fatal(err)
			}
			want := "main"
			if tc.branch != "" {
				want = tc.branch
			}
			if !strings.HasPrefix(string(out), "## "+want+"...origin/"+want+"\n") || strings.Count(string(out), "\n") != 1 {
				t.Errorf("git status of the clone:\n%s", out)
			}
		})
	}
	t.Run("unknown branch", func(t *testing.T) {
		wd := filepath.Join(t.TempDir(), "w")
		cosa(t, "init", "-C", wd, url, "--branch", "nope").wantCode(t, 1).
			wantStderrContains(t, "error: git clone "+url+": exit status 128: ", "nope")
		if got := dirEntries(t, wd); len(got) != 0 {
			t.Errorf("failed clone left %v", got)
		}
	})
}

// badManifests are config mistakes and the one-line error each gives; the
// manifests are minimalManifest with one change.
var badManifests = []struct {
	name, manifest, want string
}{
	{
		name:     "unknown key",
		manifest: strings.Replace(minimalManifest, "packages:", "pakages:", 1),
		want:     `:5: pakages: unknown key (did you mean "packages"?)`,
	},
	{
		name:     "wrong type",
		manifest: strings.Replace(minimalManifest, "suite: bookworm", "suite: [bookworm]", 1),
		want:     `:4: distro.suite: expected a string, got a sequence`,
	},
	{
		name:     "postprocess escapes",
		manifest: strings.Replace(minimalManifest, "- postprocess/10-hostname.sh", "- ../../etc/passwd", 1),
		want:     `:8: postprocess[0]: path "../../etc/passwd" escapes the config dir`,
	},
}

// writeManifest replaces the workdir's manifest.yaml.
func writeManifest(t *testing.T, wd, content string) {
	t.Helper()
	testutil.WriteTree(t, filepath.Join(wd, "src", "config"), map[string]string{"manifest.yaml": content})
}

func TestConfigErrors(t *testing.T) {
	for _, bad := range badManifests {
		// Each command must leave the workdir as it found it, so they
		// can share one.
		wd := initWorkdir(t)
		writeManifest(t, wd, bad.manifest)
		cfgBefore := snapshot(t, filepath.Join(wd, "src"))
		builds, cache := snapshot(t, filepath.Join(wd, "builds")), snapshot(t, filepath.Join(wd, "cache"))
		for _, cmd := range [][]string{{"build"}, {"build", "--fetch"}, {"fetch"}, {"fetch", "--update-lockfile"}} {
			t.Run(bad.name+"/"+strings.Join(cmd, " "), func(t *testing.T) {
				t.Chdir(wd)
				cosa(t, cmd...).wantCode(t, 2).wantStdout(t, "").
					wantStderr(t, "error: src/config/manifest.yaml"+bad.want+"\n")
				wantUnchanged(t, "builds/", builds, snapshot(t, filepath.Join(wd, "builds")))
				wantUnchanged(t, "cache/", cache, snapshot(t, filepath.Join(wd, "cache")))
				wantUnchanged(t, "src/", cfgBefore, snapshot(t, filepath.Join(wd, "src")))
			})
		}
	}
}

// TestConfigErrorPaths checks that the FILE in a config error is a path
// the user can open from where they ran cosa: -C as given, joined with
// src/config/manifest.yaml.
func TestConfigErrorPaths(t *testing.T) {
	wd := initWorkdir(t)
	writeManifest(t, wd, badManifests[0].manifest)
	tail := "src/config/manifest.yaml" + badManifests[0].want + "\n"
	parent := filepath.Dir(wd)
	elsewhere := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ cwd, dir, want string }{
		{wd, ".", tail},
		{wd, wd, wd + "/" + tail},
		{parent, "w", "w/" + tail},
		{parent, "./w/", "w/" + tail},
		{filepath.Join(wd, "sub"), "..", "../" + tail},
		{elsewhere, wd, wd + "/" + tail},
		{"/", wd, wd + "/" + tail},
	} {
		t.Run(tc.cwd+" -C "+tc.dir, func(t *testing.T) {
			t.Chdir(tc.cwd)
			r := cosa(t, "-C", tc.dir, "build").wantCode(t, 2).wantStderr(t, "error: "+tc.want)
			// And the path does name the file from this cwd.
			file, _, _ := strings.Cut(strings.TrimPrefix(r.stderr, "error: "), ":")
			if _, err := os.Stat(file); err != nil {
				t.Errorf("error names %q, which does not open from %s: %v", file, tc.cwd, err)
			}
		})
	}

	t.Run("cwd deleted", func(t *testing.T) {
		gone := filepath.Join(t.TempDir(), "gone")
		if err := os.Mkdir(gone, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Chdir(gone)
		if err := os.Remove(gone); err != nil {
			t.Fatal(err)
		}
		cosa(t, "-C", wd, "fetch").wantCode(t, 2).wantStderr(t, "error: "+wd+"/"+tail)
	})
}

func TestBuildWithoutFetch(t *testing.T) {
	wd := initWorkdir(t)
	// One line: the (empty) build log is not worth pointing at.
	cosa(t, "-C", wd, "build").wantCode(t, 1).wantStdout(t, "").
		wantStderr(t, "error: no package cache: "+filepath.Join(wd, "cache", "manifest-lock."+arch+".json")+
			" is missing; run `cosa fetch` first (or `cosa build --fetch`)\n")
	if got := dirEntries(t, filepath.Join(wd, "builds")); len(got) != 0 {
		t.Errorf("builds/ holds %v after a failed build", got)
	}
	cosa(t, "-C", wd, "list").wantOK(t).wantStdout(t, "No builds.\n")
	// Not a workdir at all.
	empty := t.TempDir()
	cosa(t, "-C", empty, "build").wantCode(t, 1).
		wantStderr(t, "error: "+empty+" is not a cosa working directory (no src/config/manifest.yaml); run `cosa init` first\n")
	if got := dirEntries(t, empty); len(got) != 0 {
		t.Errorf("build outside a workdir created %v", got)
	}
}

func TestUsageErrors(t *testing.T) {
	wd := initWorkdir(t)
	for _, tc := range []struct {
		args []string
		want string // stderr prefix
	}{
		{[]string{"frobnicate"}, `error: unknown command "frobnicate" for "cosa"`},
		{[]string{"-C", wd, "list", "--nope"}, "error: unknown flag: --nope"},
		{[]string{"-C", wd, "list", "-z"}, "error: unknown shorthand flag: 'z' in -z"},
		{[]string{"-C", wd, "list", "extra"}, "error: cosa list takes no arguments, got \"extra\""},
		{[]string{"-C", wd, "tag", "bogus"}, `error: unknown command "bogus" for "cosa tag"`},
		{[]string{"-C", wd, "--lock-timeout", "soon", "list"}, `error: invalid argument "soon" for "--lock-timeout" flag`},
		{[]string{"-C", wd, "prune", "--keep-last-n", "x"}, `error: invalid argument "x" for "--keep-last-n" flag`},
		{[]string{"-C", wd, "meta", "--get"}, "error: flag needs an argument: --get"},
		{[]string{"init", "a", "b"}, "error: cosa init takes at most 1 argument(s), got 2"},
		{[]string{"-C", wd, "tag", "update"}, "error: --tag is required"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cosa(t, tc.args...).wantCode(t, 2)
			if !strings.HasPrefix(r.stderr, tc.want) {
				t.Errorf("stderr = %q, want prefix %q", r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q", r.stdout)
			}
		})
	}
	// Help is not an error.
	r := cosa(t, "--help").wantOK(t)
	if !strings.Contains(r.stdout, "Available Commands:") {
		t.Errorf("--help printed %q", r.stdout)
	}
}

// TestFailureIsNotUsage checks that a failure whose message merely
// contains words cobra uses for usage errors is still exit 1.
func TestFailureIsNotUsage(t *testing.T) {
	wd := initWorkdir(t)
	makeBuilds(t, wd, nil, fakeBuild{id: "b1", onDisk: true, day: 20})
	cosa(t, "-C", wd, "meta", "--get", "unknown command").wantCode(t, 1).
		wantStderr(t, "error: build b1: meta key \"unknown command\": no such key\n")
	cosa(t, "-C", wd, "tag", "delete", "--tag", "invalid argument").wantCode(t, 1).
		wantStderr(t, "error: no tag named \"invalid argument\"\n")
}
