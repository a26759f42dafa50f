package weldr

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Packages is the package index behind the projects and modules routes,
// blueprint depsolve and freeze.
type Packages interface {
	// List returns the packages sorted by name, from offset, at most limit
	// of them, and how many there are.
	List(offset, limit int) ([]Project, int, error)
	// Info returns the packages whose names match any of names (globs
	// with * and ?), sorted by name.
	Info(names []string) ([]Project, error)
	// Depsolve returns the closure of specs (name globs and version globs)
	// with their dependencies, sorted by name.
	Depsolve(specs []Spec) ([]Dep, error)
	// Group returns the packages of a blueprint's package group. Debian
	// has no comps groups; its tasks (task-NAME, what tasksel installs)
	// are the same idea, so group NAME is the task's Depends and
	// Recommends, each clause's first alternative.
	Group(name string) ([]string, error)
}

// ErrUnknownGroup is returned for a group with no task-NAME package.
var ErrUnknownGroup = errors.New("no such package group")

// Spec asks for a package: Name may be a glob, Version a glob ("" and "*"
// are any version).
type Spec struct {
	Name    string
	Version string
}

// Dep is one package of a closure, as the depsolve routes show it. Epoch
// is a number: composer-cli decodes it into an integer.
type Dep struct {
	Name    string `json:"name"`
	Epoch   int    `json:"epoch"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
}

// Full is the Debian version of d.
func (d Dep) Full() string {
	return debVersion{d.Epoch, d.Version, d.Release}.String()
}

// Frozen is the version freeze pins an entry to: the Debian version and
// the architecture, [EPOCH:]VERSION-RELEASE.ARCH.
func (d Dep) Frozen() string { return d.Full() + "." + d.Arch }

// Project is one package as projects list and info show it.
type Project struct {
	Name        string  `json:"name"`
	Summary     string  `json:"summary"`
	Description string  `json:"description"`
	Homepage    string  `json:"homepage"`
	UpstreamVCS string  `json:"upstream_vcs"`
	Builds      []Build `json:"builds"`
}

// Build is one version of a package. Fields the index does not have keep
// the placeholder values the API has always sent for them.
type Build struct {
	Arch           string         `json:"arch"`
	BuildTime      string         `json:"build_time"`
	Epoch          int            `json:"epoch"`
	Release        string         `json:"release"`
	Changelog      string         `json:"changelog"`
	BuildConfigRef string         `json:"build_config_ref"`
	BuildEnvRef    string         `json:"build_env_ref"`
	Metadata       map[string]any `json:"metadata"`
	Source         BuildSource    `json:"source"`
}

// BuildSource is the source side of a Build.
type BuildSource struct {
	License   string         `json:"license"`
	Version   string         `json:"version"`
	SourceRef string         `json:"source_ref"`
	Metadata  map[string]any `json:"metadata"`
}

// ErrNoIndex is returned when there is no package index to read.
var ErrNoIndex = errors.New("no package index")

// ErrUnknownPackage is returned when nothing in the index matches a name.
var ErrUnknownPackage = errors.New("no such package")

// debPkg is one stanza of a Packages file.
type debPkg struct {
	Name, Version, Arch, Description, Homepage, Section string
	Depends                                             [][]relation // AND of ORs
	Recommends                                          [][]relation
	Provides                                            []relation
}

// relation is "name (op version)".
type relation struct {
	Name, Op, Version string
}

// AptIndex reads Debian Packages index files (apt's lists directory). It
// rereads them when they change, so an `apt-get update` in the service's
// apt root is picked up without a restart.
type AptIndex struct {
	// Files returns the index files to read; called on every request.
	Files func() ([]string, error)
	// Dir names the lists directory in errors.
	Dir string
	// Arch is the architecture preferred when several are indexed
	// ("all" is always acceptable). Empty: any.
	Arch string

	mu     sync.Mutex
	stamp  string
	byName map[string][]*debPkg // versions, newest first
	provs  map[string][]provider
	names  []string
}

type provider struct {
	pkg *debPkg
	rel relation // the Provides entry, its version if any
}

// NewAptIndex reads the *_Packages files of an apt lists directory, plain
// or compressed with gzip or zstd (apt keeps them compressed when
// Acquire::GzipIndexes is set). lz4, which some container images configure,
// is not read: the service's apt root should not ask for it.
func NewAptIndex(listsDir, arch string) *AptIndex {
	return &AptIndex{Dir: listsDir, Arch: arch, Files: func() ([]string, error) {
		var out []string
		for _, ext := range []string{"", ".gz", ".zst"} {
			m, err := filepath.Glob(filepath.Join(listsDir, "*_Packages"+ext))
			if err != nil {
				return nil, err
			}
			out = append(out, m...)
		}
		return out, nil
	}}
}

// load (re)reads the index when its files changed.
func (x *AptIndex) load() error {
	files, err := x.Files()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%w in %s: run apt-get update in the service's apt root", ErrNoIndex, x.Dir)
	}
	sort.Strings(files)
	var stamp strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(&stamp, "%s %d %d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	if x.byName != nil && stamp.String() == x.stamp {
		return nil
	}
	byName := map[string][]*debPkg{}
	provs := map[string][]provider{}
	for _, f := range files {
		pkgs, err := parsePackagesFile(f)
		if err != nil {
			return err
		}
		for _, p := range pkgs {
			if x.Arch != "" && p.Arch != x.Arch && p.Arch != "all" {
				continue
			}
			byName[p.Name] = append(byName[p.Name], p)
			for _, pr := range p.Provides {
				provs[pr.Name] = append(provs[pr.Name], provider{p, pr})
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n, vs := range byName {
		sort.SliceStable(vs, func(i, j int) bool { return compareDebVersions(vs[i].Version, vs[j].Version) > 0 })
		names = append(names, n)
	}
	sort.Strings(names)
	x.byName, x.provs, x.names, x.stamp = byName, provs, names, stamp.String()
	return nil
}

func parsePackagesFile(name string) ([]*debPkg, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch filepath.Ext(name) {
	case ".gz":
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer z.Close()
		r = z
	case ".zst":
		z, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer z.Close()
		r = z
	}
	pkgs, err := parsePackages(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return pkgs, nil
}

// parsePackages reads deb822 stanzas: "Field: value" lines, continuation
// lines starting with a space or tab, stanzas separated by blank lines.
func parsePackages(r io.Reader) ([]*debPkg, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var out []*debPkg
	fields := map[string]string{}
	var last string
	line := 0
	flush := func() error {
		if len(fields) == 0 {
			return nil
		}
		defer func() { fields = map[string]string{}; last = "" }()
		p := &debPkg{
			Name:        fields["package"],
			Version:     fields["version"],
			Arch:        fields["architecture"],
			Description: fields["description"],
			Homepage:    fields["homepage"],
			Section:     fields["section"],
		}
		if p.Name == "" || p.Version == "" {
			return fmt.Errorf("line %d: stanza without Package or Version", line)
		}
		for _, key := range []string{"pre-depends", "depends"} {
			deps, err := parseRelations(fields[key])
			if err != nil {
				return fmt.Errorf("line %d: %s %s: %w", line, p.Name, key, err)
			}
			p.Depends = append(p.Depends, deps...)
		}
		// Only tasks' Recommends are read (Group): parsing every package's
		// would cost memory for nothing else uses them.
		var err error
		if strings.HasPrefix(p.Name, "task-") {
			if p.Recommends, err = parseRelations(fields["recommends"]); err != nil {
				return fmt.Errorf("line %d: %s recommends: %w", line, p.Name, err)
			}
		}
		provides, err := parseRelations(fields["provides"])
		if err != nil {
			return fmt.Errorf("line %d: %s provides: %w", line, p.Name, err)
		}
		for _, alt := range provides {
			p.Provides = append(p.Provides, alt...)
		}
		out = append(out, p)
		return nil
	}
	for sc.Scan() {
		line++
		t := sc.Text()
		switch {
		case strings.TrimSpace(t) == "":
			if err := flush(); err != nil {
				return nil, err
			}
		case t[0] == ' ' || t[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation line outside a field", line)
			}
			fields[last] += "\n" + strings.TrimSpace(t)
		case t[0] == '#':
		default:
			k, v, found := strings.Cut(t, ":")
			if !found {
				return nil, fmt.Errorf("line %d: expected \"Field: value\"", line)
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	line++
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseRelations reads "a (>= 1) | b, c:any" into ANDs of ORs.
func parseRelations(s string) ([][]relation, error) {
	var out [][]relation
	s = strings.ReplaceAll(s, "\n", " ")
	for _, clause := range strings.Split(s, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		var alts []relation
		for _, alt := range strings.Split(clause, "|") {
			alt = strings.TrimSpace(alt)
			// Architecture restrictions and build profiles do not occur in
			// binary indexes; drop them if a file has them anyway.
			if i := strings.IndexAny(alt, "[<"); i >= 0 && !strings.Contains(alt[:i], "(") {
				alt = strings.TrimSpace(alt[:i])
			}
			var rel relation
			name := alt
			if i := strings.IndexByte(alt, '('); i >= 0 {
				j := strings.IndexByte(alt, ')')
				if j < i {
					return nil, fmt.Errorf("unclosed '(' in %q", alt)
				}
				name = strings.TrimSpace(alt[:i])
				c := strings.TrimSpace(alt[i+1 : j])
				op := strings.TrimRight(c[:len(c)-len(strings.TrimLeft(c, "<>="))], " ")
				rel.Op, rel.Version = op, strings.TrimSpace(c[len(op):])
				if rel.Op == "" || rel.Version == "" {
					return nil, fmt.Errorf("bad version constraint %q", c)
				}
			}
			// name:any / name:native / name:amd64 all mean the package here.
			if k := strings.IndexByte(name, ':'); k >= 0 {
				name = name[:k]
			}
			if name == "" {
				return nil, fmt.Errorf("empty package name in %q", clause)
			}
			rel.Name = name
			alts = append(alts, rel)
		}
		out = append(out, alts)
	}
	return out, nil
}

func (x *AptIndex) project(name string) Project {
	vs := x.byName[name]
	p := Project{Name: name, Homepage: vs[0].Homepage, UpstreamVCS: "UPSTREAM_VCS", Builds: []Build{}}
	p.Summary, p.Description, _ = strings.Cut(vs[0].Description, "\n")
	p.Description = strings.TrimSpace(strings.ReplaceAll(p.Description, "\n.\n", "\n\n"))
	if p.Description == "" {
		p.Description = p.Summary
	}
	for _, v := range vs {
		dv := parseDebVersion(v.Version)
		p.Builds = append(p.Builds, Build{
			Arch: v.Arch, Epoch: dv.Epoch, Release: dv.Revision,
			Changelog: "CHANGELOG_NEEDED", BuildConfigRef: "BUILD_CONFIG_REF", BuildEnvRef: "BUILD_ENV_REF",
			Metadata: map[string]any{},
			Source:   BuildSource{License: "", Version: dv.Upstream, SourceRef: "SOURCE_REF", Metadata: map[string]any{}},
		})
	}
	return p
}

// List implements Packages.
func (x *AptIndex) List(offset, limit int) ([]Project, int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.load(); err != nil {
		return nil, 0, err
	}
	names := page(x.names, offset, limit)
	out := make([]Project, 0, len(names))
	for _, n := range names {
		out = append(out, x.project(n))
	}
	return out, len(x.names), nil
}

// Info implements Packages.
func (x *AptIndex) Info(names []string) ([]Project, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.load(); err != nil {
		return nil, err
	}
	out := []Project{}
	for _, n := range x.matchNames(names) {
		out = append(out, x.project(n))
	}
	return out, nil
}

// matchNames is the sorted index names matching any of the globs.
func (x *AptIndex) matchNames(globs []string) []string {
	var out []string
	for _, n := range x.names {
		for _, g := range globs {
			if m, _ := path.Match(g, n); m {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// Group implements Packages.
func (x *AptIndex) Group(name string) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.load(); err != nil {
		return nil, err
	}
	task := x.pick("task-"+name, "")
	if task == nil {
		return nil, fmt.Errorf("%w %s: Debian has no comps groups and the package index has no task-%s (groups are Debian tasks, e.g. ssh-server, web-server)", ErrUnknownGroup, name, name)
	}
	var out []string
	for _, clause := range slices.Concat(task.Depends, task.Recommends) {
		if len(clause) == 0 {
			continue
		}
		n := clause[0].Name
		// tasksel is the task machinery, not part of what the task installs.
		if n == "tasksel" || n == "tasksel-data" || slices.Contains(out, n) {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// Depsolve implements Packages: each spec picks the newest version of its
// name matching the version glob; then every Depends and Pre-Depends clause
// is met by a package already chosen if one fits, else by the first
// alternative whose own closure can be resolved (a real package of a
// fitting version, newest first, then the packages providing the name).
// A choice that leads to a dead end is undone and the next one tried.
func (x *AptIndex) Depsolve(specs []Spec) ([]Dep, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.load(); err != nil {
		return nil, err
	}
	r := &resolver{x: x, chosen: map[string]*debPkg{}}
	var roots []*debPkg
	for _, s := range specs {
		names := []string{s.Name}
		if strings.ContainsAny(s.Name, "*?[") {
			names = x.matchNames([]string{s.Name})
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%w matches %s", ErrUnknownPackage, s.Name)
		}
		for _, n := range names {
			p := x.pick(n, s.Version)
			if p == nil {
				if _, exists := x.byName[n]; exists {
					return nil, fmt.Errorf("%s: no version matches %q", n, s.Version)
				}
				if s.Version == "" || s.Version == "*" {
					if c := x.candidates(relation{Name: n}, map[string]*debPkg{}); len(c) > 0 {
						roots = append(roots, c[0])
						continue
					}
				}
				return nil, fmt.Errorf("%w: %s", ErrUnknownPackage, n)
			}
			roots = append(roots, p)
		}
	}
	for _, p := range roots {
		if c := r.chosen[p.Name]; c != nil && c != p {
			return nil, fmt.Errorf("%s: asked for both %s and %s", p.Name, c.Version, p.Version)
		}
		chosen, err := r.install(p, r.chosen)
		if err != nil {
			return nil, err
		}
		r.chosen = chosen
	}
	out := make([]Dep, 0, len(r.chosen))
	for _, p := range r.chosen {
		v := parseDebVersion(p.Version)
		out = append(out, Dep{Name: p.Name, Epoch: v.Epoch, Version: v.Upstream, Release: v.Revision, Arch: p.Arch})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// maxSteps bounds backtracking: real indexes resolve in about one step
// per package, a pathological one must not hang a request.
const maxSteps = 200000

type resolver struct {
	x      *AptIndex
	chosen map[string]*debPkg
	steps  int
}

// install adds p and its dependencies to a copy of chosen and returns it,
// or an error naming the first dependency that cannot be met.
func (r *resolver) install(p *debPkg, chosen map[string]*debPkg) (map[string]*debPkg, error) {
	if chosen[p.Name] == p {
		return chosen, nil
	}
	r.steps++
	if r.steps > maxSteps {
		return nil, fmt.Errorf("dependency resolution gave up after %d steps", maxSteps)
	}
	next := make(map[string]*debPkg, len(chosen)+1)
	for k, v := range chosen {
		next[k] = v
	}
	next[p.Name] = p
	for _, clause := range p.Depends {
		if r.x.satisfiedBy(clause, next) {
			continue
		}
		var firstErr error
		done := false
		for _, alt := range clause {
			for _, cand := range r.x.candidates(alt, next) {
				got, err := r.install(cand, next)
				if err == nil {
					next, done = got, true
					break
				}
				if firstErr == nil {
					firstErr = err
				}
			}
			if done {
				break
			}
		}
		if !done {
			if firstErr != nil {
				return nil, fmt.Errorf("%s %s depends on %s: %w", p.Name, p.Version, clauseString(clause), firstErr)
			}
			return nil, fmt.Errorf("%s %s depends on %s, which no package in the index provides", p.Name, p.Version, clauseString(clause))
		}
	}
	return next, nil
}

// pick is the newest version of name whose version matches glob (tried on
// the version and on the frozen form VERSION.ARCH).
func (x *AptIndex) pick(name, glob string) *debPkg {
	for _, p := range x.byName[name] {
		if glob == "" || glob == "*" {
			return p
		}
		if m, _ := path.Match(glob, p.Version); m {
			return p
		}
		if m, _ := path.Match(glob, p.Version+"."+p.Arch); m {
			return p
		}
	}
	return nil
}

// satisfiedBy reports whether a chosen package (or a chosen package's
// Provides) already meets one alternative of clause.
func (x *AptIndex) satisfiedBy(clause []relation, chosen map[string]*debPkg) bool {
	for _, alt := range clause {
		if c := chosen[alt.Name]; c != nil && satisfies(c.Version, alt.Op, alt.Version) {
			return true
		}
		for _, pr := range x.provs[alt.Name] {
			if chosen[pr.pkg.Name] == pr.pkg && providesOK(pr.rel, alt) {
				return true
			}
		}
	}
	return false
}

// providesOK: an unversioned Provides satisfies only unversioned
// dependencies; a versioned one is checked against the constraint.
func providesOK(p, want relation) bool {
	if want.Op == "" {
		return true
	}
	return p.Version != "" && satisfies(p.Version, want.Op, want.Version)
}

// candidates are the packages that could meet one alternative, in order of
// preference: real versions of the name meeting the constraint, newest
// first (none if another version of it is already chosen), then providers
// not in conflict with a chosen version of themselves.
func (x *AptIndex) candidates(rel relation, chosen map[string]*debPkg) []*debPkg {
	var out []*debPkg
	if chosen[rel.Name] == nil {
		for _, p := range x.byName[rel.Name] {
			if satisfies(p.Version, rel.Op, rel.Version) {
				out = append(out, p)
			}
		}
	}
	for _, pr := range x.provs[rel.Name] {
		if c := chosen[pr.pkg.Name]; c != nil && c != pr.pkg {
			continue
		}
		if providesOK(pr.rel, rel) {
			out = append(out, pr.pkg)
		}
	}
	return out
}

func clauseString(clause []relation) string {
	var parts []string
	for _, r := range clause {
		s := r.Name
		if r.Op != "" {
			s += " (" + r.Op + " " + r.Version + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}
