package compose

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/progress"
)

// FetchOptions configure Fetch.
type FetchOptions struct {
	Config   *config.Config
	CacheDir string // WORKDIR/cache
	Arch     string // basearch
	// Pin, when set (the config repo's own lock file), makes fetch download
	// exactly those versions and fail if they no longer resolve to that set.
	Pin      *Lockfile
	Progress *progress.Reporter
}

// DebsDir is where the cache keeps .debs and the flat repo index.
func DebsDir(cacheDir string) string { return filepath.Join(cacheDir, "debs") }

// LockPath is where fetch writes the lock file build consumes.
func LockPath(cacheDir, arch string) string { return filepath.Join(cacheDir, LockName(arch)) }

// Fetch resolves, downloads and indexes the package set; see the package doc.
func Fetch(ctx context.Context, o FetchOptions) (*Lockfile, error) {
	arch := o.Config.Manifest.ForArch(o.Arch)
	m := &arch
	debArch, err := DebianArch(o.Arch)
	if err != nil {
		return nil, err
	}
	debs := DebsDir(o.CacheDir)
	aptRoot, err := filepath.Abs(filepath.Join(o.CacheDir, "apt"))
	if err != nil {
		return nil, err
	}
	apt, sources, err := preparedApt(o.Config, m, aptRoot, debs, debArch)
	if err != nil {
		return nil, err
	}
	step := o.Progress.Start("fetch: update package indexes")
	if err := step.Done(apt.update(ctx, m.Repos)); err != nil {
		return nil, err
	}

	var request []string
	if o.Pin != nil {
		for _, n := range o.Pin.Names() {
			request = append(request, n+"="+o.Pin.Packages[n].Version)
		}
	} else {
		base, err := variantPackages(apt, m.Distro.Suite, m.Distro.Variant, m.Repos)
		if err != nil {
			return nil, err
		}
		excluded := map[string]bool{}
		for _, e := range m.ExcludePackages {
			excluded[e] = true
		}
		seen := map[string]bool{}
		for _, p := range append(base, m.Packages...) {
			if !excluded[p] && !seen[p] {
				seen[p] = true
				request = append(request, p)
			}
		}
		for _, e := range m.ExcludePackages {
			request = append(request, e+"-") // apt syntax: must not be installed
		}
	}

	step = o.Progress.Start(fmt.Sprintf("fetch: resolve %d requested packages", len(request)))
	resolved, err := resolve(ctx, apt, request)
	if err := step.Done(err); err != nil {
		return nil, err
	}
	if o.Pin != nil {
		if err := samePackageSet(o.Pin, resolved); err != nil {
			return nil, err
		}
	}

	step = o.Progress.Start(fmt.Sprintf("fetch: download %d packages", len(resolved)))
	_, err = apt.run(ctx, "apt-get", append([]string{"install", "-y", "-q", "--download-only"}, request...)...)
	if err := step.Done(err); err != nil {
		return nil, err
	}

	step = o.Progress.Start("fetch: index the package cache")
	lock, err := indexCache(ctx, apt, resolved, debs)
	if err := step.Done(err); err != nil {
		return nil, err
	}
	lock.Arch = o.Arch
	lock.Suite = m.Distro.Suite
	for _, s := range sources {
		lock.Sources = append(lock.Sources, s.String())
	}
	// The image's own apt sources name the repos too, with their keyrings
	// where Compose installs them.
	for _, r := range m.Repos {
		lock.Sources = append(lock.Sources, RepoSource(r, ImageKeyringDir).String())
	}
	if err := writeRelease(debs, m.Distro.Suite, debArch); err != nil {
		return nil, err
	}
	lock.PackageInputs = PackageInputs(&o.Config.Manifest, o.Arch)
	data, err := lock.Marshal()
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteFileAtomic(LockPath(o.CacheDir, o.Arch), data, 0o644); err != nil {
		return nil, err
	}
	return lock, nil
}

// preparedApt makes aptRoot a private apt root with the sources of m's
// distro and m's repos (their keyrings copied in: the config's repos are
// verified with those, never with the host's keys alone). It returns the
// distro's sources too, which the lock file records.
func preparedApt(cfg *config.Config, m *config.Manifest, aptRoot, debs, debArch string) (*aptState, []Source, error) {
	sources, err := ResolveSources(m.Distro)
	if err != nil {
		return nil, nil, err
	}
	repoSources, err := installKeyrings(cfg, m.Repos, filepath.Join(aptRoot, "etc/apt/keyrings"))
	if err != nil {
		return nil, nil, err
	}
	apt, err := newAptState(aptRoot, debs, debArch, append(append([]Source(nil), sources...), repoSources...))
	if err != nil {
		return nil, nil, err
	}
	return apt, sources, nil
}

// update runs apt-get update. It can exit 0 when a source fails to verify
// (a warning); a repo that cannot be trusted is an error all the same.
func (a *aptState) update(ctx context.Context, repos []config.Repo) error {
	out, err := a.run(ctx, "apt-get", "update", "-q")
	if terr := repoTrustError(a.lastStderr+"\n"+out, repos); terr != nil {
		return terr
	}
	return err
}

// AptRoot is a private apt root with the sources and repos Fetch would use
// for a config: what a service that reads package indexes (cosa serve's
// projects and depsolve routes) keeps under its state directory.
type AptRoot struct {
	apt   *aptState
	repos []config.Repo
}

// PrepareAptRoot makes root such an apt root for cfg on arch (basearch):
// sources.list, keyrings, apt.conf, an empty dpkg status. It does not touch
// the network; Update does. Downloads, if any, go to
// root/var/cache/apt/archives.
func PrepareAptRoot(cfg *config.Config, arch, root string) (*AptRoot, error) {
	m := cfg.Manifest.ForArch(arch)
	debArch, err := DebianArch(arch)
	if err != nil {
		return nil, err
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	apt, _, err := preparedApt(cfg, &m, root, filepath.Join(root, "var/cache/apt/archives"), debArch)
	if err != nil {
		return nil, err
	}
	return &AptRoot{apt: apt, repos: m.Repos}, nil
}

// Update runs apt-get update in the root: its lists directory
// (var/lib/apt/lists) then holds the package indexes.
func (r *AptRoot) Update(ctx context.Context) error { return r.apt.update(ctx, r.repos) }

type resolvedPkg struct{ Name, Version, Arch string }

var instRE = regexp.MustCompile(`^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([^\]]+)\]\)`)

// resolve asks apt (simulating, with an empty dpkg status) for the full
// closure of request.
func resolve(ctx context.Context, apt *aptState, request []string) ([]resolvedPkg, error) {
	out, err := apt.run(ctx, "apt-get", append([]string{"install", "-s", "-y", "-q"}, request...)...)
	if err != nil {
		return nil, err
	}
	var pkgs []resolvedPkg
	for _, line := range strings.Split(out, "\n") {
		if m := instRE.FindStringSubmatch(line); m != nil {
			pkgs = append(pkgs, resolvedPkg{m[1], m[2], m[3]})
		}
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("apt resolved no packages for %v", request)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, nil
}

func samePackageSet(pin *Lockfile, got []resolvedPkg) error {
	var diffs []string
	seen := map[string]bool{}
	for _, p := range got {
		seen[p.Name] = true
		l, ok := pin.Packages[p.Name]
		switch {
		case !ok:
			diffs = append(diffs, "+"+p.Name)
		case l.Version != p.Version:
			diffs = append(diffs, fmt.Sprintf("%s %s->%s", p.Name, l.Version, p.Version))
		}
	}
	for _, n := range pin.Names() {
		if !seen[n] {
			diffs = append(diffs, "-"+n)
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the config's lock file no longer resolves to the same packages (%s); update it with `cosa fetch --update-lockfile`", strings.Join(diffs, ", "))
	}
	return nil
}

// variantPackages lists the packages mmdebstrap installs for a variant:
// Essential:yes plus the priorities the variant includes, plus apt. Only the
// suite's own indexes decide this, as in mmdebstrap.
func variantPackages(apt *aptState, suite, variant string, repos []config.Repo) ([]string, error) {
	prios := map[string][]string{
		"minbase":   {"required"},
		"required":  {"required"},
		"important": {"required", "important"},
		"standard":  {"required", "important", "standard"},
	}[variant]
	if prios == nil {
		return nil, fmt.Errorf("unknown variant %q", variant)
	}
	files, err := apt.indexFiles()
	if err != nil {
		return nil, err
	}
	tag := "_dists_" + strings.ReplaceAll(suite, "/", "_") + "_"
	set := map[string]bool{"apt": true}
	n := 0
	for _, f := range files {
		if !strings.Contains(filepath.Base(f), tag) || fromRepo(filepath.Base(f), repos) {
			continue
		}
		n++
		if err := scanIndex(f, func(pkg, prio string, essential bool) {
			if essential || slices.Contains(prios, prio) {
				set[pkg] = true
			}
		}); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no package index for suite %q was downloaded; check distro.suite and the apt sources", suite)
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// fromRepo reports whether the apt index file name comes from one of the
// config's repos, which add packages but never decide the base set.
func fromRepo(name string, repos []config.Repo) bool {
	name = strings.TrimLeft(name, "_")
	for _, r := range repos {
		if strings.HasPrefix(name, repoListPrefix(r.URI)) {
			return true
		}
	}
	return false
}

// repoTrustError finds apt's complaint about a config repo it could not
// verify in apt's output and names the repo and its keyring; nil if none.
func repoTrustError(out string, repos []config.Repo) error {
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "is not signed") && !strings.Contains(line, "GPG error") &&
			!strings.Contains(line, "NO_PUBKEY") && !strings.Contains(line, "BADSIG") &&
			!strings.Contains(line, "EXPKEYSIG") && !strings.Contains(line, "not available: NO") {
			continue
		}
		for _, r := range repos {
			// apt names a source "<uri> <suite>", with file:///x as
			// file:/x (or copy:/x): match what follows the scheme.
			u, err := url.Parse(r.URI)
			if err != nil {
				continue
			}
			if strings.Contains(line, strings.TrimRight(u.Host+u.Path, "/")+" "+r.Suite) {
				return fmt.Errorf("repo %s (%s %s): its Release file is not signed by a key in %s; check signed-by (apt: %s)",
					r.Name, r.URI, r.Suite, r.SignedBy, strings.TrimSpace(line))
			}
		}
	}
	return nil
}

// scanIndex streams a Packages file and reports each stanza's name,
// priority and essential flag, without holding the ~50 MB file in memory.
func scanIndex(path string, fn func(pkg, prio string, essential bool)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var pkg, prio string
	var ess bool
	emit := func() {
		if pkg != "" {
			fn(pkg, prio, ess)
		}
		pkg, prio, ess = "", "", false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			emit()
		case strings.HasPrefix(line, "Package: "):
			pkg = strings.TrimSpace(line[len("Package: "):])
		case strings.HasPrefix(line, "Priority: "):
			prio = strings.TrimSpace(line[len("Priority: "):])
		case strings.HasPrefix(line, "Essential: "):
			ess = strings.TrimSpace(line[len("Essential: "):]) == "yes"
		}
	}
	emit()
	return sc.Err()
}

// debFilename is the name apt gives a downloaded .deb (epoch colon escaped).
func debFilename(p resolvedPkg) string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

// indexCache checks the downloaded debs against apt's index, then writes a
// flat repository index (Packages + Release) covering exactly the resolved
// set, so mmdebstrap sees nothing else.
func indexCache(ctx context.Context, apt *aptState, pkgs []resolvedPkg, debs string) (*Lockfile, error) {
	args := []string{"show", "--no-all-versions"}
	for _, p := range pkgs {
		args = append(args, p.Name+":"+p.Arch+"="+p.Version)
	}
	out, err := apt.run(ctx, "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	stanzas := map[string]string{}
	for _, para := range strings.Split(out, "\n\n") {
		para = strings.Trim(para, "\n")
		if para == "" {
			continue
		}
		f := stanzaFields(para)
		key := f["Package"] + "=" + f["Version"]
		if _, dup := stanzas[key]; !dup {
			stanzas[key] = para
		}
	}
	lock := &Lockfile{Format: LockFormat, Packages: map[string]LockedPackage{}}
	var index strings.Builder
	for _, p := range pkgs {
		para, ok := stanzas[p.Name+"="+p.Version]
		if !ok {
			return nil, fmt.Errorf("apt-cache has no index entry for %s %s", p.Name, p.Version)
		}
		fn := debFilename(p)
		path := filepath.Join(debs, fn)
		sum, _, err := fileutil.SHA256File(path)
		if err != nil {
			return nil, fmt.Errorf("downloaded package missing: %v", err)
		}
		f := stanzaFields(para)
		if want := f["SHA256"]; want != "" && want != sum {
			return nil, fmt.Errorf("%s: sha256 %s does not match the archive index (%s)", path, sum, want)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		lock.Packages[p.Name] = LockedPackage{Version: p.Version, Arch: p.Arch, Sha256: sum, Size: st.Size(), Filename: fn}
		index.WriteString(rewriteFilename(para, fn))
		index.WriteString("\n\n")
	}
	idx := []byte(index.String())
	if err := fileutil.WriteFileAtomic(filepath.Join(debs, "Packages"), idx, 0o644); err != nil {
		return nil, err
	}
	lock.IndexSha256 = fileutil.SHA256Hex(idx)
	return lock, nil
}

func stanzaFields(para string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(para, "\n") {
		if line == "" || line[0] == ' ' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

func rewriteFilename(para, fn string) string {
	lines := strings.Split(para, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Filename:") {
			lines[i] = "Filename: ./" + fn
		}
	}
	return strings.Join(lines, "\n")
}

// writeRelease writes the flat repo's Release file. mmdebstrap selects the
// Essential and Priority packages with apt patterns on the archive/codename,
// so the local repo must claim the configured suite.
func writeRelease(debs, suite, debArch string) error {
	idx, err := os.ReadFile(filepath.Join(debs, "Packages"))
	if err != nil {
		return err
	}
	rel := fmt.Sprintf("Origin: cosa\nLabel: cosa package cache\nSuite: %s\nCodename: %s\nArchitectures: %s all\nSHA256:\n %s %d Packages\n",
		suite, suite, debArch, fileutil.SHA256Hex(idx), len(idx))
	return fileutil.WriteFileAtomic(filepath.Join(debs, "Release"), []byte(rel), 0o644)
}
