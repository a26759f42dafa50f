package imagebuild

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/workdir"
)

func TestTypes(t *testing.T) {
	for _, name := range []string{"qcow2", "raw", "partitioned-disk", "ami", "vhd", "gce", "openstack", "vmdk", "ova", "tar", "edge-commit"} {
		if !Buildable(name) {
			t.Errorf("%s is not buildable", name)
		}
	}
	for _, name := range []string{"", "iso", "edge-installer", "QCOW2"} {
		if Buildable(name) {
			t.Errorf("%q is buildable", name)
		}
	}
	seen := map[string]bool{}
	for _, ty := range Types() {
		if seen[ty.Name] || ty.Artifact == "" || strings.Contains(ty.Artifact, "/") {
			t.Errorf("bad entry %+v", ty)
		}
		seen[ty.Name] = true
	}
}

func TestBuildRefusesBeforeTouchingDisk(t *testing.T) {
	root := t.TempDir()
	for _, s := range []Spec{
		{Blueprint: parse(t, `name = "x"`), Type: "iso", WorkRoot: root, OutDir: root},
		{Blueprint: parse(t, "name = \"x\"\n[customizations.firewall]\nports = [\"22:tcp\"]"), Type: "qcow2", WorkRoot: root, OutDir: root},
		{Blueprint: parse(t, `name = "x"`), Type: "qcow2", WorkRoot: root, OutDir: root, OSTree: OSTree{URL: "http://127.0.0.1:1/repo"}},
	} {
		if _, err := Build(context.Background(), s); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("refused builds left %d entries in the work root", len(entries))
	}
}

func TestPlace(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("image"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := place(context.Background(), src, filepath.Join(dir, "disk.raw"), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "disk.raw"))
	if a.Name != "disk.raw" || a.Size != 5 || a.Sha256 != fileutil.SHA256Hex([]byte("image")) || st.Mode().Perm() != 0o644 {
		t.Errorf("%+v mode %v", a, st.Mode())
	}
	// Placing the same file again leaves one name, no temp file.
	if _, err := place(context.Background(), src, filepath.Join(dir, "disk.raw"), a.Sha256, a.Size); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d entries, want src and disk.raw", len(entries))
	}
}

// TestBuildQcow2ThenRaw is a real compose: fetch from the host's apt
// sources (network), build, qcow2; then raw from the same build.
func TestBuildQcow2ThenRaw(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an OS image (network, minutes)")
	}
	for _, tool := range []string{"mmdebstrap", "ostree", "apt-get", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	bp := parse(t, `
name = "ibtest"
[customizations]
hostname = "ibtest-host"
[[customizations.user]]
name = "tester"
key = "`+sshKey+`"
groups = ["sudo"]
[customizations.services]
enabled = ["serial-getty@ttyS1.service"]
`)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	// Not t.TempDir: the tree may hold what os.RemoveAll cannot remove.
	root, err := os.MkdirTemp("", "cosa-imagebuild-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fileutil.RemoveAll(root); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	var log bytes.Buffer
	t0 := time.Now()
	res, err := Build(ctx, Spec{Blueprint: bp, Type: "qcow2", WorkRoot: filepath.Join(root, "workdirs"),
		OutDir: filepath.Join(root, "outputs", "c1", "i1"), Log: &log})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, tail(log.String()))
	}
	t.Logf("qcow2 in %s: build %s commit %.12s", time.Since(t0).Round(time.Second), res.BuildID, res.Commit)
	if res.Reused || len(res.Artifacts) != 1 || res.Artifacts[0].Name != "disk.qcow2" {
		t.Fatalf("result %+v", res)
	}
	out := filepath.Join(root, "outputs", "c1", "i1")
	checkArtifact(t, out, res.Artifacts[0])
	for _, m := range res.Metadata {
		if _, err := os.Stat(filepath.Join(out, m)); err != nil {
			t.Error(err)
		}
	}
	if len(res.Metadata) != 2 {
		t.Errorf("metadata %v, want meta.json and the qemu manifest", res.Metadata)
	}
	metaData, err := os.ReadFile(filepath.Join(out, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := build.ValidateMeta(metaData); err != nil {
		t.Errorf("meta.json: %v", err)
	}

	repo := filepath.Join(res.Workdir, "tmp", "repo")
	cat := func(p string) string {
		o, err := exec.Command("ostree", "--repo="+repo, "cat", res.Commit, p).Output()
		if err != nil {
			t.Errorf("ostree cat %s: %v", p, err)
		}
		return string(o)
	}
	if h := cat("/usr/etc/hostname"); h != "ibtest-host\n" {
		t.Errorf("/etc/hostname %q", h)
	}
	if k := cat("/usr/etc/ssh/authorized_keys.d/tester"); k != sshKey+"\n" {
		t.Errorf("tester's keys %q", k)
	}
	if p := cat("/usr/etc/passwd"); !strings.Contains(p, "\ntester:") {
		t.Errorf("no tester in passwd:\n%s", p)
	}
	if g := cat("/usr/etc/group"); !strings.Contains(g, "sudo:x:27:tester") {
		t.Errorf("tester is not in sudo:\n%s", g)
	}
	ls, err := exec.Command("ostree", "--repo="+repo, "ls", res.Commit, "/usr/etc/systemd/system/getty.target.wants").Output()
	if err != nil || !strings.Contains(string(ls), "serial-getty@ttyS1.service") {
		t.Errorf("serial-getty@ttyS1.service not enabled: %v\n%s", err, ls)
	}

	// Another type of the same blueprint: the same build, extended.
	log.Reset()
	t1 := time.Now()
	res2, err := Build(ctx, Spec{Blueprint: bp, Type: "raw", WorkRoot: filepath.Join(root, "workdirs"),
		OutDir: filepath.Join(root, "outputs", "c2", "i2"), Log: &log})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, tail(log.String()))
	}
	t.Logf("raw in %s", time.Since(t1).Round(time.Second))
	if !res2.Reused || res2.BuildID != res.BuildID || res2.Commit != res.Commit {
		t.Errorf("second compose: %+v, want a reuse of build %s", res2, res.BuildID)
	}
	if strings.Contains(log.String(), "Fetched") || strings.Contains(log.String(), "mmdebstrap") {
		t.Errorf("the second compose fetched or composed again:\n%s", tail(log.String()))
	}
	if len(res2.Artifacts) != 1 || res2.Artifacts[0].Name != "disk.raw" {
		t.Fatalf("artifacts %+v", res2.Artifacts)
	}
	checkArtifact(t, filepath.Join(root, "outputs", "c2", "i2"), res2.Artifacts[0])
}

func checkArtifact(t *testing.T, dir string, a Artifact) {
	t.Helper()
	sum, size, err := fileutil.SHA256File(filepath.Join(dir, a.Name))
	if err != nil || sum != a.Sha256 || size != a.Size || size == 0 {
		t.Errorf("%s: sha256 %s size %d (%v), result says %+v", a.Name, sum, size, err, a)
	}
}

func tail(s string) string {
	if len(s) > 6000 {
		return "..." + s[len(s)-6000:]
	}
	return s
}

func TestLockSerialisesOneBlueprint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bp.lock")
	var log bytes.Buffer
	unlock, err := lockFile(context.Background(), path, &log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path, &log); err == nil {
		t.Fatal("a second holder got the lock")
	}
	if !strings.Contains(log.String(), "Waiting for another compose") {
		t.Errorf("the waiter did not say so: %q", log.String())
	}
	got := make(chan error, 1)
	go func() {
		u, err := lockFile(context.Background(), path, io.Discard)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestRunnerRefusesLikeBuild(t *testing.T) {
	root := t.TempDir()
	r := &Runner{WorkRoot: filepath.Join(root, "workdirs")}
	_, err := r.Run(context.Background(), composer.Job{Blueprint: parse(t, `name = "x"`), Type: "iso", OutputDir: root, Log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), `"iso"`) {
		t.Errorf("iso: %v", err)
	}
	types := ComposerTypes()
	if len(types) != len(Types()) {
		t.Fatalf("%d composer types for %d types", len(types), len(Types()))
	}
	for _, ty := range types {
		if !ty.Enabled {
			t.Errorf("%s is not enabled", ty.Name)
		}
	}
}

func TestExportTar(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("no ostree")
	}
	ctx := context.Background()
	w := &workdir.Workdir{Root: t.TempDir()}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(tree, "usr", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr", "etc", "hostname"), []byte("h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		out, err := exec.Command("ostree", append([]string{"--repo=" + w.RepoDir()}, args...)...).Output()
		if err != nil {
			t.Fatalf("ostree %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(w.RepoDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	run("init", "--mode=bare-user")
	commit := run("commit", "-b", "x", "--owner-uid=0", "--owner-gid=0", tree)
	dst := filepath.Join(t.TempDir(), "root.tar")
	a, err := exportTar(ctx, w, commit, dst)
	if err != nil {
		t.Fatal(err)
	}
	checkArtifact(t, filepath.Dir(dst), *a)
	out, err := exec.Command("tar", "-tvf", dst).Output()
	if err != nil || !regexp.MustCompile(`(?m)^-rw-r--r-- 0/0 .* usr/etc/hostname$`).Match(out) {
		t.Errorf("tar listing (%v):\n%s", err, out)
	}
}

// A new blueprint's workdir gets the .debs and apt lists others fetched,
// as hard links; its own files and symlinks are left alone.
func TestSeedPackageCache(t *testing.T) {
	root := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lists := filepath.Join("apt", "var", "lib", "apt", "lists")
	write(filepath.Join(root, "a", "cache", "debs", "tmux_3.3a-3_amd64.deb"), "tmux")
	write(filepath.Join(root, "a", "cache", "debs", "Packages"), "flat index")
	write(filepath.Join(root, "a", "cache", lists, "host_debian_dists_bookworm_InRelease"), "release")
	write(filepath.Join(root, "a", "cache", lists, "lock"), "")
	write(filepath.Join(root, "b", "cache", "debs", "tmux_3.3a-3_amd64.deb"), "b's own")
	write(filepath.Join(root, "b", "cache", "debs", "zsh_5.9_amd64.deb"), "zsh")
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "b", "cache", "debs", "evil_1_amd64.deb")); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(root, "new", "cache")
	if n := seedPackageCache(root, self); n != 3 {
		t.Errorf("seeded %d files, want 3 (two .debs, one list)", n)
	}
	for _, f := range []string{"debs/tmux_3.3a-3_amd64.deb", "debs/zsh_5.9_amd64.deb", filepath.Join(lists, "host_debian_dists_bookworm_InRelease")} {
		if _, err := os.Stat(filepath.Join(self, f)); err != nil {
			t.Errorf("%s not seeded: %v", f, err)
		}
	}
	for _, f := range []string{"debs/Packages", "debs/evil_1_amd64.deb", filepath.Join(lists, "lock")} {
		if _, err := os.Lstat(filepath.Join(self, f)); !os.IsNotExist(err) {
			t.Errorf("%s seeded (%v)", f, err)
		}
	}
	// b's tmux was not taken over a's, and b itself is not seeded from b.
	if data, _ := os.ReadFile(filepath.Join(root, "b", "cache", "debs", "tmux_3.3a-3_amd64.deb")); string(data) != "b's own" {
		t.Errorf("b's own file changed: %q", data)
	}
	if n := seedPackageCache(root, filepath.Join(root, "b", "cache")); n != 1 {
		t.Errorf("seeding b: %d files, want 1 (a's list; b has tmux already)", n)
	}
}
