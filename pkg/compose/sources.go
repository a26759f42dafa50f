package compose

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Source is one apt source entry, in one-line form when rendered.
type Source struct {
	URI        string
	Suite      string
	Components []string
	SignedBy   string
}

func (s Source) String() string {
	opts := ""
	if s.SignedBy != "" {
		opts = "[signed-by=" + s.SignedBy + "] "
	}
	return strings.TrimSuffix(fmt.Sprintf("deb %s%s %s %s", opts, s.URI, s.Suite, strings.Join(s.Components, " ")), " ")
}

// HostAptDir is where the host's apt sources are read from; a variable so
// tests can point it at a fixture.
var HostAptDir = "/etc/apt"

// ResolveSources returns the apt sources to fetch from. A configured mirror
// wins; otherwise the host's own apt sources for the suite are used (with its
// -updates and -security suites when the host lists them), so cosa goes
// wherever the machine's apt already goes and names no mirror of its own.
func ResolveSources(d config.Distro) ([]Source, error) {
	if d.Mirror != "" {
		return []Source{{URI: d.Mirror, Suite: d.Suite, Components: d.Components}}, nil
	}
	host, err := hostSources(HostAptDir)
	if err != nil {
		return nil, err
	}
	wanted := []string{d.Suite, d.Suite + "-updates", d.Suite + "-security", d.Suite + "/updates"}
	var out []Source
	for _, s := range host {
		if !slices.Contains(wanted, s.Suite) {
			continue
		}
		var comps []string
		for _, c := range d.Components {
			if slices.Contains(s.Components, c) {
				comps = append(comps, c)
			}
		}
		if len(comps) == 0 {
			continue
		}
		s.Components = comps
		out = append(out, s)
	}
	haveMain := slices.ContainsFunc(out, func(s Source) bool { return s.Suite == d.Suite })
	if !haveMain {
		return nil, fmt.Errorf("distro.mirror is not set and the host's apt sources (%s) have no entry for suite %q with components %v; set distro.mirror in manifest.yaml",
			HostAptDir, d.Suite, d.Components)
	}
	return out, nil
}

// hostSources reads sources.list, sources.list.d/*.list and *.sources.
func hostSources(aptDir string) ([]Source, error) {
	var out []Source
	if s, err := readOneLine(filepath.Join(aptDir, "sources.list")); err == nil {
		out = append(out, s...)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	lists, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*.list"))
	for _, f := range lists {
		s, err := readOneLine(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	deb822, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*.sources"))
	for _, f := range deb822 {
		s, err := readDeb822(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

func readOneLine(path string) ([]Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Source
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		var signedBy string
		if strings.HasPrefix(fields[0], "[") {
			var opts []string
			for len(fields) > 0 {
				opts = append(opts, fields[0])
				done := strings.HasSuffix(fields[0], "]")
				fields = fields[1:]
				if done {
					break
				}
			}
			for _, o := range opts {
				o = strings.Trim(o, "[]")
				if v, ok := strings.CutPrefix(o, "signed-by="); ok {
					signedBy = v
				}
			}
		}
		if len(fields) < 3 {
			continue
		}
		out = append(out, Source{URI: fields[0], Suite: fields[1], Components: fields[2:], SignedBy: signedBy})
	}
	return out, sc.Err()
}

func readDeb822(path string) ([]Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Source
	for _, para := range parseParagraphs(string(data)) {
		if strings.EqualFold(para["Enabled"], "no") {
			continue
		}
		if !slices.Contains(strings.Fields(para["Types"]), "deb") {
			continue
		}
		for _, uri := range strings.Fields(para["URIs"]) {
			for _, suite := range strings.Fields(para["Suites"]) {
				out = append(out, Source{URI: uri, Suite: suite,
					Components: strings.Fields(para["Components"]), SignedBy: strings.TrimSpace(para["Signed-By"])})
			}
		}
	}
	return out, nil
}

// parseParagraphs parses RFC 822 style control paragraphs (apt indexes,
// deb822 sources). Continuation lines are joined with "\n"; comments dropped.
func parseParagraphs(s string) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, last = map[string]string{}, ""
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			cur[last] += "\n" + line
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		cur[k] = strings.TrimSpace(v)
	}
	flush()
	return out
}

// ImageKeyringDir is where the image keeps the keyrings of the config's
// repos; the image's apt sources name them in signed-by.
const ImageKeyringDir = "/etc/apt/keyrings"

// KeyringName is the file name a repo's keyring is installed under: the
// extension tells apt whether it is armored (.asc) or binary (.gpg).
func KeyringName(r config.Repo) string { return "cosa-" + r.Name + filepath.Ext(r.SignedBy) }

// RepoSource renders a configured repo as an apt source whose signed-by
// names the keyring installed in keyDir.
func RepoSource(r config.Repo, keyDir string) Source {
	return Source{URI: r.URI, Suite: r.Suite, Components: r.Components, SignedBy: filepath.Join(keyDir, KeyringName(r))}
}

// readKeyring reads a repo's keyring from the config dir and checks it is
// the one the config was loaded with, so what is trusted is what was hashed.
func readKeyring(cfg *config.Config, r config.Repo) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(cfg.Dir, filepath.FromSlash(r.SignedBy)))
	if err != nil {
		return nil, fmt.Errorf("repo %s: keyring: %w", r.Name, err)
	}
	if fileutil.SHA256Hex(data) != r.KeyringSHA256 {
		return nil, fmt.Errorf("repo %s: keyring %s changed while cosa was running; run the command again", r.Name, r.SignedBy)
	}
	return data, nil
}

// installKeyrings puts a copy of each repo's keyring in dir (replacing
// what was there, so a removed repo's key is not trusted any more) and
// returns the repos' sources pointing at those copies.
func installKeyrings(cfg *config.Config, repos []config.Repo, dir string) ([]Source, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	// 0755/0644: apt verifies signatures as its unprivileged _apt user.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []Source
	for _, r := range repos {
		data, err := readKeyring(cfg, r)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, KeyringName(r)), data, 0o644); err != nil {
			return nil, err
		}
		out = append(out, RepoSource(r, dir))
	}
	return out, nil
}

// repoListPrefix is the start of the names apt gives the index files it
// downloads from uri (its URItoFileName, for the URIs a config accepts).
func repoListPrefix(uri string) string {
	s := uri
	if i := strings.Index(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimLeft(s, "/")
	s = strings.TrimRight(s, "/")
	return strings.ReplaceAll(s, "/", "_") + "_"
}
