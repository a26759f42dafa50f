package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/cosa-build/cosa/pkg/fsattr"
	"github.com/cosa-build/cosa/pkg/ostree"
)

// Stages that build an OSTree sysroot in the tree (ostree-admin(1)). The
// tree is the future root filesystem: ostree/repo, ostree/deploy/... and
// boot/ (which the image stages put on its own partition).

func init() {
	register("org.cosa.ostree.init-fs", func() StageImpl { return &OSTreeInitFS{} })
	register("org.cosa.ostree.os-init", func() StageImpl { return &OSTreeOSInit{} })
	register("org.cosa.ostree.config", func() StageImpl { return &OSTreeConfig{} })
	register("org.cosa.ostree.pull-local", func() StageImpl { return &OSTreePullLocal{} })
	register("org.cosa.ostree.deploy", func() StageImpl { return &OSTreeDeploy{} })
}

var (
	osnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	refRE    = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// OSTreeInitFS creates an empty sysroot (`ostree admin init-fs --modern`).
type OSTreeInitFS struct{}

func (s *OSTreeInitFS) Validate() error  { return nil }
func (s *OSTreeInitFS) Inputs() []string { return nil }
func (s *OSTreeInitFS) Run(ctx context.Context, e *Env) error {
	return e.Cmd(ctx, "ostree", "admin", "init-fs", "--modern", e.Tree)
}

// OSTreeOSInit creates the stateroot for an OS name.
type OSTreeOSInit struct {
	OSName string `json:"osname"`
}

func (s *OSTreeOSInit) Validate() error {
	if !osnameRE.MatchString(s.OSName) {
		return fmt.Errorf("osname: %q is not a valid OS name", s.OSName)
	}
	return nil
}
func (s *OSTreeOSInit) Inputs() []string { return nil }
func (s *OSTreeOSInit) Run(ctx context.Context, e *Env) error {
	return e.Cmd(ctx, "ostree", "admin", "os-init", "--sysroot="+e.Tree, s.OSName)
}

// OSTreeConfig sets keys in the sysroot repo's config.
type OSTreeConfig struct {
	Config map[string]string `json:"config"`
}

func (s *OSTreeConfig) Validate() error {
	if len(s.Config) == 0 {
		return fmt.Errorf("config: at least one key")
	}
	for k := range s.Config {
		if !regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$`).MatchString(k) {
			return fmt.Errorf("config: %q is not a section.key name", k)
		}
	}
	return nil
}
func (s *OSTreeConfig) Inputs() []string { return nil }
func (s *OSTreeConfig) Run(ctx context.Context, e *Env) error {
	keys := make([]string, 0, len(s.Config))
	for k := range s.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := e.Cmd(ctx, "ostree", "config", "--repo="+filepath.Join(e.Tree, "ostree/repo"), "set", k, s.Config[k]); err != nil {
			return err
		}
	}
	return nil
}

// OSTreePullLocal copies a commit from the source repo (Sources.OSTreeRepo)
// and points ref at it. The commit checksum, not the repo path, is what
// identifies the stage's output.
type OSTreePullLocal struct {
	Commit string `json:"commit"`
	Ref    string `json:"ref"`
}

func (s *OSTreePullLocal) Validate() error {
	if !sha256RE.MatchString(s.Commit) {
		return fmt.Errorf("commit: %q is not a 64-hex commit checksum", s.Commit)
	}
	if !refRE.MatchString(s.Ref) {
		return fmt.Errorf("ref: %q is not a valid ref", s.Ref)
	}
	return nil
}
func (s *OSTreePullLocal) Inputs() []string { return nil }
func (s *OSTreePullLocal) Run(ctx context.Context, e *Env) error {
	if e.Sources.OSTreeRepo == "" {
		return fmt.Errorf("no source OSTree repo given")
	}
	dst := filepath.Join(e.Tree, "ostree/repo")
	repo := "--repo=" + dst
	if err := linkReusedObjects(ctx, e, dst, s.Commit); err != nil {
		return err
	}
	// "--": the commit and ref come from meta.json.
	if err := e.CmdNoSync(ctx, "ostree", "pull-local", repo, "--", e.Sources.OSTreeRepo, s.Commit); err != nil {
		return err
	}
	return e.Cmd(ctx, "ostree", "refs", repo, "--force", "--create="+s.Ref, "--", s.Commit)
}

// OSTreeDeploy deploys ref with kernel arguments, writing the BLS entry,
// kernel and initramfs under boot/.
type OSTreeDeploy struct {
	OSName     string   `json:"osname"`
	Ref        string   `json:"ref"`
	KernelArgs []string `json:"kernel_args"`
}

func (s *OSTreeDeploy) Validate() error {
	if !osnameRE.MatchString(s.OSName) {
		return fmt.Errorf("osname: %q is not a valid OS name", s.OSName)
	}
	if !refRE.MatchString(s.Ref) {
		return fmt.Errorf("ref: %q is not a valid ref", s.Ref)
	}
	for i, k := range s.KernelArgs {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return fmt.Errorf("kernel_args[%d]: %q must be one non-empty argument", i, k)
		}
	}
	return nil
}
func (s *OSTreeDeploy) Inputs() []string { return nil }
func (s *OSTreeDeploy) Run(ctx context.Context, e *Env) error {
	args := []string{"admin", "deploy", "--sysroot=" + e.Tree, "--os=" + s.OSName}
	for _, k := range s.KernelArgs {
		args = append(args, "--karg-append="+k)
	}
	args = append(args, s.Ref)
	if err := e.CmdNoSync(ctx, "ostree", args...); err != nil {
		return err
	}
	// ostree makes every deployment dir immutable to protect a live
	// system; here the tree becomes a cache object that rm -rf of the
	// workdir must be able to delete. Images lose nothing: mkfs.ext4 -d
	// does not copy inode flags (TestMkfsDropsImmutable).
	deploys, err := filepath.Glob(filepath.Join(e.Tree, "ostree", "deploy", "*", "deploy", "*"))
	if err != nil {
		return err
	}
	for _, d := range deploys {
		if _, err := fsattr.Clear(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// linkReusedObjects hard-links into the sysroot repo dst every content
// object of commit that a bare repo in an earlier image tree (e.Reuse)
// already holds, so pull-local copies only the rest. The build repo is
// bare-user, whose objects keep ownership in an xattr, so pulling from it
// into a bare repo always copies: 600 MB for the default config, most of
// an overlay rebuild's image time. A bare object is named by the checksum
// of its content, owner, mode and xattrs, so a link to it is exactly the
// object pull-local would write (ostree sets every object's mtime to 0).
// Objects are never written in place, by ostree or by the later stages
// (a deployment links them, as it would any object).
func linkReusedObjects(ctx context.Context, e *Env, dst, commit string) error {
	if !bareRepo(dst) {
		return nil
	}
	var dstDev uint64
	if st, err := os.Stat(filepath.Join(dst, "objects")); err == nil {
		dstDev = st.Sys().(*syscall.Stat_t).Dev
	} else {
		return nil
	}
	var from []string
	for _, t := range e.Reuse {
		r := filepath.Join(t, "ostree/repo")
		if st, err := os.Stat(filepath.Join(r, "objects")); err == nil && bareRepo(r) && st.Sys().(*syscall.Stat_t).Dev == dstDev {
			from = append(from, r)
		}
	}
	if len(from) == 0 {
		return nil
	}
	objs, err := ostree.ContentObjects(e.Sources.OSTreeRepo, commit)
	if err != nil {
		return err
	}
	linked := 0
	for _, c := range objs {
		rel := filepath.Join("objects", c[:2], c[2:]+".file")
		target := filepath.Join(dst, rel)
		if _, err := os.Lstat(target); err == nil {
			continue
		}
		for _, r := range from {
			err := os.Link(filepath.Join(r, rel), target)
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Lstat(filepath.Join(r, rel)); serr != nil {
					continue // not in this repo
				}
				// The fan-out directory is missing: made as ostree makes it.
				if err = os.Mkdir(filepath.Dir(target), 0o777); err == nil || errors.Is(err, fs.ErrExist) {
					err = os.Link(filepath.Join(r, rel), target)
				}
			}
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			linked++
			break
		}
	}
	fmt.Fprintf(e.Log, "reused %d of %d content objects from earlier images (hard links)\n", linked, len(objs))
	return nil
}

// bareRepo reports whether the repo at path is in bare mode.
func bareRepo(path string) bool {
	data, err := os.ReadFile(filepath.Join(path, "config"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == "mode" {
			return strings.TrimSpace(v) == "bare"
		}
	}
	return false
}
