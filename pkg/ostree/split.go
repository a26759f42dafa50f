package ostree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// commitInParts is CommitDir for o.Parallel > 1 with o.Consume. One
// `ostree commit` reads, hashes and adopts every file on one core: most
// of a build's commit time for a 1 GB tree. So whole subtrees holding
// about 1/n of the bytes each are renamed into n-1 sibling roots (same
// file system, so a rename), whose directories on the path down repeat
// dir's own (mode, owner, xattrs). The n roots are committed at once as
// orphan commits, and one last commit lays their trees over each other:
// that only writes directory metadata, and it yields the commit one
// `ostree commit` of dir would have made, since identical directories
// merge and no path is in two roots. If the tree cannot be split (too
// small, or a subtree on another file system), it is put back and
// committed in one piece.
func (r *Repo) commitInParts(ctx context.Context, dir string, o CommitOptions) (*CommitStats, error) {
	subtrees, err := splitTree(dir, o.Parallel)
	if err != nil {
		return nil, err
	}
	roots, undo, err := moveParts(dir, subtrees)
	if err != nil {
		undo()
		roots = nil
	}
	if len(roots) == 0 {
		return r.commitOnce(ctx, dir, o)
	}
	defer func() {
		for _, p := range roots {
			os.RemoveAll(p)
		}
	}()
	all := append([]string{dir}, roots...)
	stats := make([]*CommitStats, len(all))
	err = inParallel(ctx, len(all), func(ctx context.Context, i int) error {
		out, err := r.run(ctx, "commit", "--orphan", "--consume", "--table-output", "--tree=dir="+all[i])
		if err == nil {
			stats[i], err = parseCommitTable(out)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var trees []string
	for _, s := range stats {
		trees = append(trees, "--tree=ref="+s.Commit)
	}
	final, err := r.commitOnce(ctx, "", CommitOptions{
		Branch: o.Branch, Subject: o.Subject, Metadata: o.Metadata, Bootable: o.Bootable, Timestamp: o.Timestamp,
		trees: trees,
	})
	if err != nil {
		return nil, err
	}
	// Content is counted once, in the part that holds it; directory
	// metadata shared by the parts (the root, /usr...) more than once.
	for _, s := range stats {
		final.Parts = append(final.Parts, s.Commit)
		final.MetadataTotal += s.MetadataTotal
		final.MetadataWritten += s.MetadataWritten
		final.ContentTotal += s.ContentTotal
		final.ContentWritten += s.ContentWritten
		final.ContentBytesWritten += s.ContentBytesWritten
		final.ContentCacheHits += s.ContentCacheHits
	}
	return final, nil
}

// PullLocalAll pulls commits from src at once, one pull-local each: with
// the parts of a commit made in parts (CommitStats.Parts), each process
// does its share of the per-object work (an archive repo's zlib).
func (r *Repo) PullLocalAll(ctx context.Context, src *Repo, commits []string) error {
	return inParallel(ctx, len(commits), func(ctx context.Context, i int) error {
		return r.PullLocal(ctx, src, commits[i])
	})
}

// inParallel runs f for 0..n-1 at once; the first failure cancels the
// others (their ostree processes die with the context).
func inParallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = f(ctx, i); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// minSplitBytes: below this a tree is hashed faster than a second ostree
// process starts and the trees are merged.
var minSplitBytes int64 = 64 << 20

// splitTree picks, for each of n-1 extra parts, disjoint subtrees of dir
// (paths relative to it) that hold about 1/n of its bytes. A file counts
// its size plus a block, for the per-file cost of hashing and adopting it.
func splitTree(dir string, n int) ([][]string, error) {
	size := map[string]int64{}
	children := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		var s int64 = 4096
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			s += info.Size()
		}
		if d.IsDir() {
			children[filepath.Dir(rel)] = append(children[filepath.Dir(rel)], rel)
		}
		for q := rel; ; q = filepath.Dir(q) {
			size[q] += s
			if q == "." {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	total := size["."]
	if n < 2 || total < minSplitBytes {
		return nil, nil
	}
	taken := map[string]bool{}
	var parts [][]string
	for k := 1; k < n; k++ {
		want := total / int64(n)
		var part []string
		var pick func(d string)
		pick = func(d string) {
			kids := append([]string(nil), children[d]...)
			sort.Slice(kids, func(i, j int) bool { return size[kids[i]] > size[kids[j]] })
			for _, c := range kids {
				if want < total/50 {
					return
				}
				if taken[c] || size[c] == 0 {
					continue
				}
				if size[c] <= want+want/10 {
					part = append(part, c)
					taken[c] = true
					want -= size[c]
					for q := filepath.Dir(c); ; q = filepath.Dir(q) {
						size[q] -= size[c]
						if q == "." {
							break
						}
					}
					continue
				}
				pick(c)
			}
		}
		pick(".")
		if len(part) > 0 {
			parts = append(parts, part)
		}
	}
	return parts, nil
}

// moveParts makes one sibling root of dir per part and renames the part's
// subtrees into it. undo puts everything back (for a failure before any
// commit ran).
func moveParts(dir string, parts [][]string) (roots []string, undo func(), err error) {
	type move struct{ from, to string }
	var moved []move
	var made []string
	undo = func() {
		for i := len(moved) - 1; i >= 0; i-- {
			os.Rename(moved[i].to, moved[i].from)
		}
		for _, p := range made {
			os.RemoveAll(p)
		}
	}
	for i, part := range parts {
		root := fmt.Sprintf("%s.part%d", strings.TrimSuffix(dir, "/"), i+1)
		if err := os.Mkdir(root, 0o700); err != nil {
			return nil, undo, err
		}
		made = append(made, root)
		err := moveInto(dir, root, part, nil, func(from, to string) { moved = append(moved, move{from, to}) })
		if err != nil {
			return nil, undo, err
		}
		roots = append(roots, root)
	}
	return roots, undo, nil
}

// moveInto renames the entries rels of dir (relative paths) to the same
// paths under root, an empty directory on the same file system. The
// directories above them, and the directories extra, are made first and
// given dir's metadata last, deepest first, so that a read-only one is
// filled before it is closed. moved is called after each rename.
func moveInto(dir, root string, rels, extra []string, moved func(from, to string)) error {
	set := map[string]bool{".": true}
	for _, rel := range extra {
		set[rel] = true
	}
	for _, rel := range append(append([]string(nil), rels...), extra...) {
		for q := filepath.Dir(rel); q != "."; q = filepath.Dir(q) {
			set[q] = true
		}
	}
	dirs := make([]string, 0, len(set))
	for q := range set {
		dirs = append(dirs, q)
	}
	sort.Strings(dirs) // "." first, parents before children
	for _, q := range dirs[1:] {
		if err := os.Mkdir(filepath.Join(root, q), 0o700); err != nil {
			return err
		}
	}
	for _, rel := range rels {
		from, to := filepath.Join(dir, rel), filepath.Join(root, rel)
		if err := os.Rename(from, to); err != nil {
			return err
		}
		moved(from, to)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := copyDirMeta(filepath.Join(dir, dirs[i]), filepath.Join(root, dirs[i])); err != nil {
			return err
		}
	}
	return nil
}

// copyDirMeta gives directory dst src's owner, mode and xattrs: what
// ostree records of a directory.
func copyDirMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		v, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, v, 0); err != nil {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		return buf[:n], nil
	}
}
