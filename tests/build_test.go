package tests

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/internal/debrepo"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
)

// TestBuildLifecycle is the first-build story end to end: init from the
// embedded config, build without and with fetch, the no-op rebuild, a
// change that needs a new fetch, pkgdiff, a build interrupted by SIGKILL,
// a writer blocked by the lock while readers go on, auto-prune, tags and
// manual prune.
func TestBuildLifecycle(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "apt-get", "tar")
	w := t.TempDir()
	mustCosa(t, w, "init")

	// A postprocess script that records what network the build can see.
	cfg := filepath.Join(w, "src", "config")
	writeFile(t, filepath.Join(cfg, "postprocess", "20-e2e.sh"),
		"#!/bin/sh\nset -eu\nsed 1,2d /proc/net/dev | cut -d: -f1 | tr -d ' ' > /etc/cosa-e2e-netdevs\n", 0o755)
	manifest := filepath.Join(cfg, "manifest.yaml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(data), "  - postprocess/20-ssh-host-keys.sh\n", "  - postprocess/20-ssh-host-keys.sh\n  - postprocess/20-e2e.sh\n", 1)
	// The config keys that replace hand-written scripts: a hostname, a
	// user with groups and an ssh key, and a package for this arch only
	// that comes from an extra apt repo, signed, with its key in the config.
	repoDir := extraRepo(t, filepath.Join(cfg, "keys", "e2e.gpg"))
	m = strings.Replace(m, "hostname: debian-ostree\n", "hostname: e2e-node\n", 1) + `
packages-x86_64: [cosa-e2e-extra]
repos:
  - name: e2e
    uri: file://` + repoDir + `
    suite: cosa-e2e
    components: [main]
    signed-by: keys/e2e.gpg
users:
  - name: e2e
    groups: [adm, sudo]
    ssh-authorized-keys:
      - ` + e2eKey + `
`
	writeFile(t, manifest, m, 0o644)
	mustCosa(t, w, "config", "validate")

	// 1. No fetch yet: a clear error, nothing built.
	r := cosa(t, w, "build", "--skip-image")
	if r.Code != 1 || !strings.Contains(r.Stderr, "cosa fetch") {
		t.Fatalf("build before fetch: exit %d, stderr %q; want exit 1 mentioning cosa fetch", r.Code, r.Stderr)
	}
	if len(readIndex(t, w).Builds) != 0 {
		t.Fatal("a failed build was recorded")
	}

	// 2. The first build.
	r = mustCosa(t, w, "build", "--fetch", "--skip-image")
	idx := readIndex(t, w)
	if len(idx.Builds) != 1 {
		t.Fatalf("builds = %+v", idx.Builds)
	}
	id0 := idx.Builds[0].ID
	if !regexp.MustCompile(`^12\.\d{8}\.dev\.0$`).MatchString(id0) || latest(t, w) != id0 {
		t.Fatalf("first build id %q, latest %q", id0, latest(t, w))
	}
	if !strings.Contains(r.Stdout, "Built "+id0) {
		t.Errorf("stdout %q lacks the build summary", r.Stdout)
	}
	meta0 := checkBuild(t, w, id0)
	if len(meta0.PkgDiff) != 0 {
		t.Errorf("first build has a pkgdiff: %v", meta0.PkgDiff)
	}
	repo := filepath.Join(w, "tmp", "repo")
	commit := meta0.OSTreeCommit
	checkConfigKeys(t, repo, commit)
	// The postprocess script ran inside a network namespace of its own.
	if devs := strings.Fields(ostreeCmd(t, "--repo="+repo, "cat", commit, "/usr/etc/cosa-e2e-netdevs")); len(devs) != 1 || devs[0] != "lo" {
		t.Errorf("postprocess saw network devices %v, want only lo", devs)
	}

	// 3. Same inputs: no new build, and fast.
	r = mustCosa(t, w, "build", "--skip-image")
	if !strings.Contains(r.Stdout, "No changes in build inputs.") || len(readIndex(t, w).Builds) != 1 {
		t.Fatalf("unchanged rebuild: %q, builds %v", r.Stdout, readIndex(t, w).IDs())
	}
	// The same under --json: the result names the unchanged build.
	r = mustCosa(t, w, "--json", "build", "--skip-image")
	if res := resultOf(t, r, "build"); res["build"] != id0 || res["changed"] != false || res["commit"] != commit ||
		strings.Contains(r.Stdout, "No changes") || !strings.Contains(r.Stderr, "No changes in build inputs.") {
		t.Errorf("unchanged rebuild --json: %v\nstderr: %s", res, r.Stderr)
	}

	// 4. An overlay change plus a new package: the cache is stale until
	// fetched, then the new build has a pkgdiff.
	overlay := filepath.Join(cfg, "overlay.d", "10-network", "usr", "lib", "systemd", "network", "80-cosa-dhcp.network")
	writeFile(t, overlay, "[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\n", 0o644)
	writeFile(t, manifest, strings.Replace(m, "  - openssh-server\n", "  - openssh-server\n  - less\n", 1), 0o644)
	r = cosa(t, w, "build", "--skip-image")
	if r.Code != 1 || !strings.Contains(r.Stderr, "cosa fetch") {
		t.Fatalf("build with a stale fetch: exit %d, %q", r.Code, r.Stderr)
	}
	r = mustCosa(t, w, "--json", "build", "--fetch", "--skip-image")
	id1 := latest(t, w)
	if id1 == id0 || !strings.HasSuffix(id1, ".dev.1") {
		t.Fatalf("second build id %q", id1)
	}
	meta1 := checkBuild(t, w, id1)
	// --json: the result says what was built, as meta.json does, with
	// paths relative to the workdir.
	res := resultOf(t, r, "build")
	ostreeArt := artifactOf(t, res, "ostree")
	if res["build"] != id1 || res["changed"] != true || res["commit"] != meta1.OSTreeCommit || res["arch"] != "x86_64" ||
		ostreeArt["path"] != "builds/"+id1+"/x86_64/"+meta1.Images["ostree"].Path ||
		ostreeArt["sha256"] != meta1.Images["ostree"].Sha256 || ostreeArt["size"] != float64(meta1.Images["ostree"].Size) {
		t.Errorf("build --json result %v, meta.json images %+v", res, meta1.Images)
	}
	if sum := sha256File(t, filepath.Join(w, ostreeArt["path"].(string))); sum != ostreeArt["sha256"] {
		t.Errorf("%s: sha256 %s, the result says %s", ostreeArt["path"], sum, ostreeArt["sha256"])
	}
	if meta1.RpmOstreeInputHash == meta0.RpmOstreeInputHash {
		t.Error("input hash did not change")
	}
	if !hasPkgDiff(meta1, "less", build.PkgAdded) {
		t.Errorf("pkgdiff %v lacks less as added", meta1.PkgDiff)
	}
	if got := ostreeCmd(t, "--repo="+repo, "cat", meta1.OSTreeCommit, "/usr/lib/systemd/network/80-cosa-dhcp.network"); !strings.Contains(got, "DHCP=ipv4") {
		t.Errorf("changed overlay not in the commit: %q", got)
	}

	// 5. SIGKILL in the middle of a build: the build dir stays valid and
	// nothing is left mounted; the next build cleans up after it. The
	// kill lands inside mmdebstrap (its mounts are what must not leak), so
	// the cached base root that would replace it goes first.
	if err := os.RemoveAll(compose.BaseCacheDir(filepath.Join(w, "cache"))); err != nil {
		t.Fatal(err)
	}
	killDuring(t, w, "==> compose: install", "build", "--force", "--skip-image")
	if ids := readIndex(t, w).IDs(); len(ids) != 2 || latest(t, w) != id1 {
		t.Fatalf("after a killed build: builds %v, latest %s", ids, latest(t, w))
	}
	if mounts := mountsUnder(t, w); len(mounts) > 0 {
		t.Fatalf("a killed build left mounts: %v", mounts)
	}

	// 6. A writer holds the lock: another writer times out with a clear
	// message, a reader is not blocked.
	bg := exec.Command(cosaBin, "build", "--force", "--version", "12.e2e.0", "--skip-prune", "--skip-image")
	bg.Dir = w
	stderr, err := bg.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	waitForLine(t, stderr, "==> compose: install")
	r = cosa(t, w, "tag", "update", "--tag", "stable", "--build", id1, "--lock-timeout", "1s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "timed out") || !strings.Contains(r.Stderr, "cosa build") {
		t.Errorf("tag during a build: exit %d, %q; want a lock timeout naming cosa build", r.Code, r.Stderr)
	}
	r = mustCosa(t, w, "list", "--json")
	if rows, _ := resultOf(t, r, "list")["builds"].([]any); len(rows) != 2 {
		t.Errorf("list during a build: %q", r.Stdout)
	}
	go func() { bufio.NewReader(stderr).WriteTo(os.Stderr) }()
	if err := bg.Wait(); err != nil {
		t.Fatalf("background build: %v", err)
	}
	checkBuild(t, w, "12.e2e.0")

	// 7. A fourth build: auto-prune keeps 3 and drops the oldest with its ref.
	// The package set is unchanged since build 6, so the tree mmdebstrap
	// made there is copied, not made again.
	r = mustCosa(t, w, "build", "--force", "--skip-image")
	if !strings.Contains(r.Stderr, "compose: copy the cached base root") || strings.Contains(r.Stderr, "with mmdebstrap") {
		t.Errorf("a build with an unchanged package set did not reuse the cached base root:\n%s", r.Stderr)
	}
	// One base tree, and beside it only the file naming its instance.
	ents, _ := os.ReadDir(compose.BaseCacheDir(filepath.Join(w, "cache")))
	var names []string
	trees := 0
	for _, e := range ents {
		names = append(names, e.Name())
		if e.IsDir() {
			trees++
		} else if !strings.HasSuffix(e.Name(), ".instance") {
			trees = -1
		}
	}
	if trees != 1 {
		t.Errorf("cache/rootfs holds %v, want the one current base and its instance file", names)
	}
	id2 := latest(t, w)
	if ids := readIndex(t, w).IDs(); strings.Join(ids, " ") != id2+" 12.e2e.0 "+id1 {
		t.Fatalf("after auto-prune: %v", ids)
	}
	if _, err := os.Stat(filepath.Join(w, "builds", id0)); !os.IsNotExist(err) {
		t.Errorf("pruned build dir still there: %v", err)
	}
	if refs := ostreeCmd(t, "--repo="+repo, "refs"); strings.Contains(refs, id0) || !strings.Contains(refs, id1) {
		t.Errorf("refs after prune:\n%s", refs)
	}
	if err := exec.Command("ostree", "--repo="+repo, "show", meta0.OSTreeCommit).Run(); err == nil {
		t.Errorf("commit of the pruned build %s is still in the repo", id0)
	}

	// 8. Tags protect builds; prune leaves entries that are not on disk.
	mustCosa(t, w, "tag", "update", "--tag", "stable", "--build", id1)
	d := &build.Dir{Root: filepath.Join(w, "builds")}
	idx = readIndex(t, w)
	idx.Builds = append(idx.Builds, build.BuildEntry{ID: "12.20200101.dev.0", Arches: []string{"x86_64"}})
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	r = mustCosa(t, w, "prune", "--keep-last-n", "1", "--dry-run")
	if !strings.Contains(r.Stdout, "Would prune 12.e2e.0") || strings.Contains(r.Stdout, "prune "+id1) {
		t.Errorf("dry run: %q", r.Stdout)
	}
	if _, err := os.Stat(filepath.Join(w, "builds", "12.e2e.0")); err != nil {
		t.Errorf("dry run deleted a build: %v", err)
	}
	mustCosa(t, w, "prune", "--keep-last-n", "1")
	if ids := strings.Join(readIndex(t, w).IDs(), " "); ids != id2+" "+id1+" 12.20200101.dev.0" {
		t.Errorf("after prune: %s", ids)
	}
	r = mustCosa(t, w, "list")
	if !strings.Contains(r.Stdout, "(not on disk)") || !strings.Contains(r.Stdout, "stable") {
		t.Errorf("list:\n%s", r.Stdout)
	}
	r = mustCosa(t, w, "meta", "--get", "ostree-commit")
	if m2, _ := readMeta(t, w, id2); strings.TrimSpace(r.Stdout) != m2.OSTreeCommit {
		t.Errorf("meta --get ostree-commit = %q, want %q", r.Stdout, m2.OSTreeCommit)
	}

	// 9. Another machine picks up the history: buildfetch into a fresh
	// workdir (the default config, so without less), then build there.
	// The new build continues the fetched build's numbering and diffs
	// against it.
	w2 := t.TempDir()
	mustCosa(t, w2, "init")
	r = mustCosa(t, w2, "buildfetch", "--json", "--url", "file://"+filepath.Join(w, "builds"))
	if got := latest(t, w2); got != id2 {
		t.Fatalf("after buildfetch latest = %s, want %s", got, id2)
	}
	if res := resultOf(t, r, "buildfetch"); res["build"] != id2 || res["fetched"] == float64(0) {
		t.Errorf("buildfetch --json result %v", res)
	}
	mustCosa(t, w2, "build", "--fetch", "--skip-image")
	id3 := latest(t, w2)
	if want := nextDev(t, id2); id3 != want && !strings.HasSuffix(id3, ".dev.0") {
		t.Errorf("build after buildfetch is %s, want %s (or .dev.0 on a new day)", id3, want)
	}
	meta3 := checkBuild(t, w2, id3)
	if !hasPkgDiff(meta3, "less", build.PkgRemoved) {
		t.Errorf("pkgdiff against the fetched build %v lacks less as removed", meta3.PkgDiff)
	}
	if ids := readIndex(t, w2).IDs(); len(ids) < 2 || ids[0] != id3 || ids[1] != id2 {
		t.Errorf("builds.json after build on fetched history: %v", ids)
	}

	// 10. clean empties cache/ and tmp/ (the next build needs a fetch
	// again) and keeps builds/; --all empties builds/ too, and then the
	// workdir goes with a plain os.RemoveAll, as in a CI job's cleanup.
	mustCosa(t, w2, "clean")
	for _, d := range []string{"cache", "tmp"} {
		if ents, err := os.ReadDir(filepath.Join(w2, d)); err != nil || len(ents) != 0 {
			t.Errorf("%s/ after clean: %d entries, %v", d, len(ents), err)
		}
	}
	if ids := readIndex(t, w2).IDs(); len(ids) < 2 || ids[0] != id3 {
		t.Errorf("clean without --all changed builds.json: %v", ids)
	}
	if r := cosa(t, w2, "build", "--skip-image"); r.Code != 1 || !strings.Contains(r.Stderr, "cosa fetch") {
		t.Errorf("build after clean: exit %d, %q; want exit 1 asking for cosa fetch", r.Code, r.Stderr)
	}
	mustCosa(t, w2, "clean", "--all")
	if ents, err := os.ReadDir(filepath.Join(w2, "builds")); err != nil || len(ents) != 1 || ents[0].Name() != build.LockFile {
		t.Errorf("builds/ after clean --all: %v, %v", ents, err)
	}
	if _, err := os.Stat(filepath.Join(w2, "src", "config", "manifest.yaml")); err != nil {
		t.Errorf("clean --all removed the config: %v", err)
	}
	if err := os.RemoveAll(w2); err != nil {
		t.Errorf("removing the workdir after builds: %v", err)
	}
}

// e2eKey is the ssh key the lifecycle test's user gets.
const e2eKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH8cosaE2EtestKEYcosaE2EtestKEYcosaE2Etest e2e@cosa"

// extraRepo makes a local apt repo (suite cosa-e2e) holding cosa-e2e-extra,
// signed with a throwaway key whose keyring is written to keyring, and
// returns its directory.
func extraRepo(t *testing.T, keyring string) string {
	t.Helper()
	needTools(t, "gpg", "gpgconf", "dpkg-deb")
	dir := t.TempDir()
	key, err := debrepo.NewKey(filepath.Join(dir, "key"), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(key.Close)
	r := debrepo.Repo{Dir: filepath.Join(dir, "repo"), Suite: "cosa-e2e", Component: "main", Arch: "amd64"}
	if err := r.Write([]debrepo.Package{{Name: "cosa-e2e-extra", Version: "1.0", Arch: "all",
		Files: map[string]string{"usr/share/cosa-e2e-extra/hello": "from the extra repo\n"}}}, key); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(key.Keyring)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyring, string(data), 0o644)
	return r.Dir
}

// checkConfigKeys checks what the lifecycle test's config keys put in the
// commit (its /etc is /usr/etc).
func checkConfigKeys(t *testing.T, repo, commit string) {
	t.Helper()
	cat := func(p string) string { return ostreeCmd(t, "--repo="+repo, "cat", commit, p) }
	if got := cat("/usr/share/cosa-e2e-extra/hello"); got != "from the extra repo\n" {
		t.Errorf("package from the extra repo: %q", got)
	}
	if src := cat("/usr/etc/apt/sources.list"); !strings.Contains(src, "deb [signed-by=/etc/apt/keyrings/cosa-e2e.gpg] file://") {
		t.Errorf("the image's apt sources lack the extra repo:\n%s", src)
	}
	if k := cat("/usr/etc/apt/keyrings/cosa-e2e.gpg"); len(k) == 0 {
		t.Error("the image lacks the extra repo's keyring")
	}
	if !regexp.MustCompile(`(?m)^e2e:x:\d+:\d+::/home/e2e:/bin/bash$`).MatchString(cat("/usr/etc/passwd")) {
		t.Errorf("user e2e not in /etc/passwd:\n%s", cat("/usr/etc/passwd"))
	}
	group := cat("/usr/etc/group")
	for _, g := range []string{"adm", "sudo"} {
		if !regexp.MustCompile(`(?m)^` + g + `:x:\d+:(.*,)?e2e(,.*)?$`).MatchString(group) {
			t.Errorf("e2e is not in group %s:\n%s", g, group)
		}
	}
	if got := cat("/usr/etc/ssh/authorized_keys.d/e2e"); got != e2eKey+"\n" {
		t.Errorf("authorized keys of e2e: %q", got)
	}
	if got := cat("/usr" + compose.SSHDDropIn); !strings.Contains(got, "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/authorized_keys.d/%u\n") {
		t.Errorf("sshd drop-in: %q", got)
	}
	if ls := ostreeCmd(t, "--repo="+repo, "ls", commit, "/usr/share/factory/var/home"); !strings.Contains(ls, "/usr/share/factory/var/home/e2e\n") {
		t.Errorf("no home for e2e in the factory /var:\n%s", ls)
	}
}

// nextDev is the id after <prefix>.<date>.dev.<n> on the same day.
func nextDev(t *testing.T, id string) string {
	i := strings.LastIndex(id, ".dev.")
	n, err := strconv.Atoi(id[i+5:])
	if i < 0 || err != nil {
		t.Fatalf("%s is not a dev build id", id)
	}
	return id[:i+5] + strconv.Itoa(n+1)
}

// checkBuild asserts everything a finished build must have and returns its meta.
func checkBuild(t *testing.T, w, id string) *build.Meta {
	t.Helper()
	m, data := readMeta(t, w, id)
	if err := build.ValidateMeta(data); err != nil {
		t.Errorf("%s meta.json fails our schema: %v", id, err)
	}
	if doc, err := os.ReadFile(cosaSchemaPath()); err == nil {
		s, err := build.CompileSchema("file:///coreos-assembler/cosa-meta-v1.json", doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := build.ValidateWith(s, data); err != nil {
			t.Errorf("%s meta.json fails coreos-assembler's schema: %v", id, err)
		}
	} else {
		t.Logf("coreos-assembler schema not found at %s; skipped that check", cosaSchemaPath())
	}
	if m.BuildID != id || m.Name != "debian-ostree" || len(m.OSTreeCommit) != 64 || m.OSTreeVersion != id ||
		len(m.RpmOstreeInputHash) != 64 || m.BaseArch != "x86_64" || m.Ref != "debian/bookworm/x86_64" {
		t.Errorf("%s meta: %+v", id, m)
	}
	arch := filepath.Join(w, "builds", id, "x86_64")
	art, ok := m.Images["ostree"]
	if !ok || art.Path != "debian-ostree-"+id+"-ostree.x86_64.tar" {
		t.Fatalf("%s images.ostree = %+v", id, art)
	}
	st, err := os.Stat(filepath.Join(arch, art.Path))
	if err != nil || st.Size() != art.Size || st.Mode().Perm() != 0o644 {
		t.Errorf("%s ostree tar: %v size %d mode %v, meta says %d", id, err, st.Size(), st.Mode(), art.Size)
	}
	out, err := exec.Command("sha256sum", filepath.Join(arch, art.Path)).Output()
	if err != nil || !strings.HasPrefix(string(out), art.Sha256) {
		t.Errorf("%s: sha256 %q, meta says %s", id, out, art.Sha256)
	}
	for _, f := range []string{"commitmeta.json", "pkglist.json", "meta.json"} {
		if _, err := os.Stat(filepath.Join(arch, f)); err != nil {
			t.Error(err)
		}
	}
	var pkgs []compose.Package
	pl, _ := os.ReadFile(filepath.Join(arch, "pkglist.json"))
	if err := json.Unmarshal(pl, &pkgs); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pkgs {
		have[p.Name] = true
	}
	for _, want := range []string{"linux-image-amd64", "ostree-boot", "dracut", "systemd-sysv", "openssh-server"} {
		if !have[want] {
			t.Errorf("%s package list lacks %s", id, want)
		}
	}
	if have["initramfs-tools"] {
		t.Errorf("%s: excluded initramfs-tools was installed", id)
	}

	// The commit is in the workdir's repo under the manifest ref's history
	// and the build's own ref, with the version and input hash as metadata.
	repo := filepath.Join(w, "tmp", "repo")
	if v := strings.Trim(strings.TrimSpace(ostreeCmd(t, "--repo="+repo, "show", "--print-metadata-key=version", m.OSTreeCommit)), "'"); v != id {
		t.Errorf("commit version %q, want %s", v, id)
	}
	if got := strings.TrimSpace(ostreeCmd(t, "--repo="+repo, "rev-parse", "cosa/builds/"+id+"/x86_64")); got != m.OSTreeCommit {
		t.Errorf("build ref -> %s, want %s", got, m.OSTreeCommit)
	}
	// OSTree layout (docs/architecture.md#the-ostree-layout).
	ls := ostreeCmd(t, "--repo="+repo, "ls", m.OSTreeCommit, "/")
	for _, want := range []string{"/usr", "/ostree -> sysroot/ostree", "/home -> var/home", "/root -> var/roothome", "/sysroot", "/boot"} {
		if !strings.Contains(ls, want) {
			t.Errorf("%s: / lacks %q:\n%s", id, want, ls)
		}
	}
	if strings.Contains(ls, " /etc\n") {
		t.Errorf("%s: /etc should have moved to /usr/etc", id)
	}
	mods := ostreeCmd(t, "--repo="+repo, "ls", "-R", m.OSTreeCommit, "/usr/lib/modules")
	if !regexp.MustCompile(`/usr/lib/modules/[^/]+/vmlinuz\n`).MatchString(mods) || !regexp.MustCompile(`/usr/lib/modules/[^/]+/initramfs.img\n`).MatchString(mods) {
		t.Errorf("%s: kernel or initramfs missing from /usr/lib/modules", id)
	}
	// The hostname key of the workdir's config.
	cfg, err := config.Load(filepath.Join(w, "src", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if h := ostreeCmd(t, "--repo="+repo, "cat", m.OSTreeCommit, "/usr/etc/hostname"); h != cfg.Manifest.Hostname+"\n" {
		t.Errorf("%s: /etc/hostname %q, want %q", id, h, cfg.Manifest.Hostname)
	}
	if h := ostreeCmd(t, "--repo="+repo, "cat", m.OSTreeCommit, "/usr/etc/hosts"); !strings.Contains(h, "127.0.1.1\t"+cfg.Manifest.Hostname+"\n") {
		t.Errorf("%s: /etc/hosts lacks 127.0.1.1 %s:\n%s", id, cfg.Manifest.Hostname, h)
	}
	if tf := ostreeCmd(t, "--repo="+repo, "cat", m.OSTreeCommit, "/usr/lib/tmpfiles.d/cosa-var.conf"); !strings.Contains(tf, "C /var/lib/dpkg") {
		t.Errorf("%s: tmpfiles for /var: %q", id, tf)
	}
	if err := exec.Command("ostree", "--repo="+repo, "ls", m.OSTreeCommit, "/usr/share/man").Run(); err == nil {
		t.Errorf("%s: remove-files did not remove /usr/share/man", id)
	}
	// The exported tarball is an archive repo that holds the commit.
	unpacked := t.TempDir()
	if out, err := exec.Command("tar", "-xf", filepath.Join(arch, art.Path), "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	if got := strings.TrimSpace(ostreeCmd(t, "--repo="+unpacked, "rev-parse", m.Ref)); got != m.OSTreeCommit {
		t.Errorf("%s: exported repo has %s at %s, want %s", id, got, m.Ref, m.OSTreeCommit)
	}
	// cosa writes the archive repo itself: ostree checks every object of
	// it (header, content and checksum) once per run, about 6 s.
	fsckOnce.Do(func() { ostreeCmd(t, "fsck", "--repo="+unpacked) })
	return m
}

var fsckOnce sync.Once

// killDuring starts cosa, SIGKILLs it once its stderr shows marker, and
// waits for it to be gone.
func killDuring(t *testing.T, w, marker string, args ...string) {
	t.Helper()
	cmd := exec.Command(cosaBin, args...)
	cmd.Dir = w
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForLine(t, stderr, marker)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// Children die with cosa (Pdeathsig); wait until no process still has
	// the workdir's scratch open by checking for leftover mounts next.
}

// waitForLine reads r until a line contains marker (fails at EOF).
func waitForLine(t *testing.T, r interface{ Read([]byte) (int, error) }, marker string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			return
		}
	}
	t.Fatalf("process ended before printing %q", marker)
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// hasPkgDiff reports whether m's pkgdiff has name with kind.
func hasPkgDiff(m *build.Meta, name string, kind build.PkgDiffKind) bool {
	for _, e := range m.PkgDiff {
		if e.Name == name && e.Kind == kind {
			return true
		}
	}
	return false
}
