package compose

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/debrepo"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/progress"
)

// fetchWorld is a base archive and an extra repo on local disk, each
// signed by its own throwaway key; the base key is what the "host" trusts.
type fetchWorld struct {
	base, extra       debrepo.Repo
	baseKey, extraKey *debrepo.Key
	other             *debrepo.Key // a key that signs nothing of ours
}

func newFetchWorld(t *testing.T) *fetchWorld {
	t.Helper()
	for _, tool := range []string{"apt-get", "gpg", "gpgconf", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	w := &fetchWorld{
		base: debrepo.Repo{Dir: filepath.Join(dir, "base"), Suite: "bookworm", Component: "main", Arch: "amd64"},
		// Like most third-party repos, the extra one names the distro's suite.
		extra: debrepo.Repo{Dir: filepath.Join(dir, "extra"), Suite: "bookworm", Component: "main", Arch: "amd64"},
	}
	var err error
	for _, k := range []struct {
		p    **debrepo.Key
		name string
	}{{&w.baseKey, "base"}, {&w.extraKey, "extra"}, {&w.other, "other"}} {
		if *k.p, err = debrepo.NewKey(filepath.Join(dir, "key-"+k.name), k.name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*k.p).Close)
	}
	// The base set fetch always asks for is apt plus what is required.
	if err := w.base.Write([]debrepo.Package{
		{Name: "apt", Version: "1", Arch: "amd64", Priority: "required"},
		{Name: "hello-base", Version: "1", Arch: "all", Files: map[string]string{"usr/share/hello-base": "base\n"}},
	}, w.baseKey); err != nil {
		t.Fatal(err)
	}
	// The host's apt trusts the base archive's key, as Debian's own.
	host := filepath.Join(dir, "host-apt")
	data, err := os.ReadFile(w.baseKey.Keyring)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(host, "trusted.gpg.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "trusted.gpg.d", "base.gpg"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := HostAptDir
	HostAptDir = host
	t.Cleanup(func() { HostAptDir = old })
	return w
}

// config writes a config fetching hello-base and cosa-extra, with the extra
// repo verified by keyring.
func (w *fetchWorld) config(t *testing.T, keyring string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(keyring)
	if err != nil {
		t.Fatal(err)
	}
	manifest := "name: demo\nref: demo/x86_64/dev\ndistro:\n  suite: bookworm\n  mirror: file://" + w.base.Dir + "\n" +
		"packages: [hello-base]\npackages-x86_64: [cosa-extra]\n" +
		"repos:\n  - name: extra\n    uri: file://" + w.extra.Dir + "\n    suite: bookworm\n    components: [main]\n    signed-by: keys/extra.gpg\n"
	for name, content := range map[string][]byte{"manifest.yaml": []byte(manifest), "keys/extra.gpg": data} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (w *fetchWorld) writeExtra(t *testing.T, key *debrepo.Key) {
	t.Helper()
	if err := w.extra.Write([]debrepo.Package{
		{Name: "cosa-extra", Version: "2.0", Arch: "all", Files: map[string]string{"usr/share/cosa-extra/hello": "extra\n"}},
		// A repo adds packages; it never decides the base set.
		{Name: "extra-required", Version: "1", Arch: "all", Priority: "required"},
	}, key); err != nil {
		t.Fatal(err)
	}
}

func fetchInto(t *testing.T, c *config.Config) (*Lockfile, string, error) {
	cache := t.TempDir()
	lock, err := Fetch(context.Background(), FetchOptions{Config: c, CacheDir: cache, Arch: "x86_64", Progress: progress.New(events.Discard{})})
	return lock, cache, err
}

func TestFetchExtraRepo(t *testing.T) {
	w := newFetchWorld(t)
	w.writeExtra(t, w.extraKey)
	c := w.config(t, w.extraKey.Keyring)
	lock, cache, err := fetchInto(t, c)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := lock.Packages["cosa-extra"]
	if !ok || p.Version != "2.0" {
		t.Fatalf("lock lacks cosa-extra 2.0 from the extra repo: %+v", lock.Packages)
	}
	if _, err := os.Stat(filepath.Join(DebsDir(cache), p.Filename)); err != nil {
		t.Errorf("cosa-extra not downloaded: %v", err)
	}
	if _, ok := lock.Packages["hello-base"]; !ok {
		t.Errorf("lock lacks hello-base: %+v", lock.Packages)
	}
	if _, ok := lock.Packages["extra-required"]; ok {
		t.Error("a Priority: required package of the extra repo joined the base set")
	}
	want := "deb [signed-by=/etc/apt/keyrings/cosa-extra.gpg] file://" + w.extra.Dir + " bookworm main"
	if got := lock.Sources[len(lock.Sources)-1]; got != want {
		t.Errorf("image source for the repo = %q, want %q", got, want)
	}
	// fetch verified with a copy of the config's keyring.
	got, err := os.ReadFile(filepath.Join(cache, "apt", "etc", "apt", "keyrings", "cosa-extra.gpg"))
	want2, _ := os.ReadFile(w.extraKey.Keyring)
	if err != nil || string(got) != string(want2) {
		t.Errorf("keyring copy in the private apt root: %v", err)
	}
	list, _ := os.ReadFile(filepath.Join(cache, "apt", "etc", "apt", "sources.list"))
	if !strings.Contains(string(list), "[signed-by="+filepath.Join(cache, "apt", "etc", "apt", "keyrings", "cosa-extra.gpg")+"] copy://"+w.extra.Dir+" bookworm main") {
		t.Errorf("private sources.list does not verify the repo with the copy:\n%s", list)
	}
	if lock.PackageInputs != PackageInputs(&c.Manifest, "x86_64") {
		t.Error("lock's package inputs differ from the config's")
	}
}

func TestFetchRefusesUntrustedRepo(t *testing.T) {
	w := newFetchWorld(t)
	for _, tc := range []struct {
		name string
		key  *debrepo.Key
	}{{"unsigned", nil}, {"signed by another key", w.other}} {
		t.Run(tc.name, func(t *testing.T) {
			w.writeExtra(t, tc.key)
			_, _, err := fetchInto(t, w.config(t, w.extraKey.Keyring))
			if err == nil {
				t.Fatal("fetch trusted the repo")
			}
			if want := "repo extra (file://" + w.extra.Dir + " bookworm): its Release file is not signed by a key in keys/extra.gpg"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nlacks %q", err, want)
			}
		})
	}
}

func TestPackageInputsFollowRepos(t *testing.T) {
	m := config.Manifest{Packages: []string{"a"}, PackagesAarch64: []string{"b"}}
	plain := PackageInputs(&m, "x86_64")
	if PackageInputs(&m, "aarch64") == plain {
		t.Error("aarch64's own packages do not change its package inputs")
	}
	m.Repos = []config.Repo{{Name: "r", KeyringSHA256: "1", Arch: []string{"aarch64"}}}
	if PackageInputs(&m, "x86_64") != plain {
		t.Error("a repo for aarch64 only changed x86_64's package inputs")
	}
	withRepo := PackageInputs(&m, "aarch64")
	m.Repos[0].KeyringSHA256 = "2"
	if PackageInputs(&m, "aarch64") == withRepo {
		t.Error("a new keyring does not change the package inputs")
	}
}

func TestUsersScript(t *testing.T) {
	users := []config.User{
		{Name: "alice", UID: 1500, Groups: []string{"adm", "sudo"}, SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA alice's key"}},
		{Name: "root", PasswordHash: "$y$j9T$a$b"},
	}
	s := usersScript(users, "/run/cosa/users")
	if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("script does not parse: %v %s\n%s", err, out, s)
	}
	for _, want := range []string{
		"getent group 'sudo' >/dev/null || fail 'user alice: group sudo does not exist in the tree'\n",
		`[ "$(id -u 'alice')" = 1500 ] || fail`,
		"  usermod -a -G 'adm,sudo' 'alice'\n",
		"  useradd -m -l -s '/bin/bash' -p '*' -u 1500 -G 'adm,sudo' 'alice'\n",
		"install -m 0644 '/run/cosa/users/alice.keys' '/etc/ssh/authorized_keys.d/alice'\n",
		"  usermod -p '$y$j9T$a$b' 'root'\n",
		"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 /etc/ssh/authorized_keys.d/%u",
		"> " + SSHDDropIn + "\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if s := usersScript(users[1:], "/x"); strings.Contains(s, "sshd_config.d") {
		t.Error("a config without keys still writes the sshd drop-in")
	}
}

// Each new config key changes the input hash, so changing it makes a new
// build.
func TestInputHashFollowsNewKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(manifest, key string) {
		for name, content := range map[string]string{"manifest.yaml": manifest, "keys/k.gpg": key} {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lock := &Lockfile{Arch: "x86_64", Suite: "bookworm", Packages: map[string]LockedPackage{"a": {Version: "1", Sha256: "aa"}}}
	hash := func(manifest, key string) string {
		t.Helper()
		write(manifest, key)
		c, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		h, err := InputHash(c, lock)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	base := "name: demo\nref: demo/x\ndistro: {suite: bookworm}\npackages: [vim]\n"
	repo := "repos: [{name: r, uri: 'https://x/debian', suite: bookworm, components: [main], signed-by: keys/k.gpg}]\n"
	seen := map[string]string{}
	for name, h := range map[string]string{
		"plain":          hash(base, "k1"),
		"hostname":       hash(base+"hostname: node1\n", "k1"),
		"user":           hash(base+"users: [{name: alice}]\n", "k1"),
		"user group":     hash(base+"users: [{name: alice, groups: [adm]}]\n", "k1"),
		"per-arch":       hash(base+"packages-x86_64: [less]\n", "k1"),
		"repo":           hash(base+repo, "k1"),
		"repo, new key":  hash(base+repo, "k2"),
		"repo elsewhere": hash(base+strings.Replace(repo, "https://x/", "https://y/", 1), "k1"),
	} {
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s have the same input hash", name, other)
		}
		seen[h] = name
	}
}

// TestAptRoot: the service's apt root gets the same sources and repo
// keyrings as fetch's, and Update fills its lists (or refuses an untrusted
// repo as fetch does).
func TestAptRoot(t *testing.T) {
	w := newFetchWorld(t)
	w.writeExtra(t, w.extraKey)
	c := w.config(t, w.extraKey.Keyring)
	root := t.TempDir()
	r, err := PrepareAptRoot(c, "x86_64", root)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := os.ReadFile(filepath.Join(root, "etc", "apt", "sources.list"))
	if !strings.Contains(string(list), "copy://"+w.base.Dir+" bookworm") || !strings.Contains(string(list), "cosa-extra.gpg] copy://"+w.extra.Dir) {
		t.Errorf("sources.list:\n%s", list)
	}
	lists, _ := filepath.Glob(filepath.Join(root, "var", "lib", "apt", "lists", "*_Packages"))
	if len(lists) != 0 {
		t.Fatalf("lists before Update: %v", lists)
	}
	if err := r.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	lists, _ = filepath.Glob(filepath.Join(root, "var", "lib", "apt", "lists", "*_Packages"))
	var all strings.Builder
	for _, f := range lists {
		data, _ := os.ReadFile(f)
		all.Write(data)
	}
	if !strings.Contains(all.String(), "Package: hello-base") || !strings.Contains(all.String(), "Package: cosa-extra") {
		t.Errorf("lists %v lack the base and extra packages", lists)
	}

	// Re-signed by a key the config does not name: Update fails as fetch.
	w.writeExtra(t, w.other)
	r, err = PrepareAptRoot(c, "x86_64", root)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(context.Background()); err == nil || !strings.Contains(err.Error(), "repo extra") {
		t.Errorf("untrusted repo: %v", err)
	}
}
