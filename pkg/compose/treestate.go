package compose

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// A TreeState says, for every path of a composed root in the OSTree
// layout, whether it still holds what the base tree held, and where. Two
// builds from the same stored base tree (the same instance) hold the same
// entry at a path when neither changed it and it came from the same base
// path in both: then a commit of the second tree can take that entry from
// the first one's commit (ostree.CommitOver) instead of hashing it again.
//
// "Changed" is read from the ctime, which no process can set: the base is
// copied into place, a mark is taken (changeMark), and every inode written,
// renamed, linked, chmod'ed, chown'ed or given xattrs afterwards has a
// ctime at or after the mark. An inode with an older ctime is one the base
// tree held, with its content and metadata, in the base directory its
// parent directory was: a rename stamps the renamed inode, so a file with
// an old ctime never moved by itself, only with a directory above it that
// moved (as the OSTree layout moves /etc to /usr/etc). So every directory
// is traced back to its base path by its inode number (dirOrigins), and
// an unchanged entry's source is its parent's base path plus its name.
type TreeState struct {
	Format  int         `json:"format"`
	Base    string      `json:"base"` // the base tree's instance (baseInstance)
	Entries []TreeEntry `json:"entries"`
}

// TreeEntry is one path of the tree.
type TreeEntry struct {
	Path string `json:"p"` // relative to the root; the root itself is not listed
	Type string `json:"t"` // d, f (regular), l (symlink), o (anything else)
	// Src is where the base tree held this entry: "" for the same path,
	// changedSrc if the build changed it (or it cannot be traced),
	// otherwise the base path.
	Src string `json:"s,omitempty"`
}

const (
	treeStateFormat = 1
	changedSrc      = "!"
)

// dirOrigins maps the inode of every directory of the base tree at root
// to its path, taken before anything changes the tree.
func dirOrigins(root string) (map[uint64]string, error) {
	out := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[info.Sys().(*syscall.Stat_t).Ino] = rel
		return nil
	})
	return out, err
}

// scanTreeState walks the finished tree at root; since is the change mark
// taken once the base was in place, origins its directories' inodes then.
func scanTreeState(root, base string, since time.Time, origins map[uint64]string) (*TreeState, error) {
	s := &TreeState{Format: treeStateFormat, Base: base}
	var rootDev uint64
	// from maps a directory of the tree to its base path ("" if it has none).
	from := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rootDev = st.Dev
			from["."] = origins[st.Ino]
			return nil
		}
		e := TreeEntry{Path: rel, Type: "o"}
		switch {
		case d.IsDir():
			e.Type = "d"
			if o, ok := origins[st.Ino]; ok && st.Dev == rootDev {
				from[rel] = o
			} else {
				from[rel] = changedSrc
			}
		case d.Type().IsRegular():
			e.Type = "f"
		case d.Type()&fs.ModeSymlink != 0:
			e.Type = "l"
		}
		parent, ok := from[filepath.Dir(rel)]
		switch {
		case !ok || parent == changedSrc || st.Dev != rootDev || !time.Unix(st.Ctim.Sec, st.Ctim.Nsec).Before(since):
			e.Src = changedSrc
		default:
			if src := filepath.Join(parent, d.Name()); src != rel {
				e.Src = src
			}
		}
		s.Entries = append(s.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ChangedSince lists the paths of s whose entry may differ from prev's
// tree (see TreeState), for ostree.CommitOver on prev's commit. ok is
// false, with the reason, when s cannot be expressed as changes to prev:
// another base tree, a path of prev that s lacks (a commit over prev
// cannot remove one), or a path whose type changed.
func (s *TreeState) ChangedSince(prev *TreeState) (changed []string, ok bool, why string) {
	if prev == nil || s.Base == "" || prev.Base != s.Base {
		return nil, false, "made from another base tree"
	}
	cur := make(map[string]*TreeEntry, len(s.Entries))
	for i := range s.Entries {
		cur[s.Entries[i].Path] = &s.Entries[i]
	}
	old := make(map[string]bool, len(prev.Entries))
	for _, pe := range prev.Entries {
		e := cur[pe.Path]
		if e == nil {
			return nil, false, "/" + pe.Path + " is gone"
		}
		if e.Type != pe.Type {
			return nil, false, "/" + pe.Path + " changed type"
		}
		old[pe.Path] = true
		if e.Src == changedSrc || pe.Src == changedSrc || e.Src != pe.Src {
			changed = append(changed, e.Path)
		}
	}
	for _, e := range s.Entries {
		if !old[e.Path] {
			changed = append(changed, e.Path)
		}
	}
	sort.Strings(changed)
	return changed, true, ""
}

// treeStateDir keeps the state of the last commits, one file each.
func treeStateDir(cacheDir string) string { return filepath.Join(cacheDir, "treestate") }

// treeStatesKept: the commit a build goes over is the newest build's, so a
// few are plenty (each is about 0.5 MB).
const treeStatesKept = 4

// SaveTreeState stores s as the state of commit, dropping all but the
// newest treeStatesKept states. A state that cannot be stored costs the
// next build time, not this one: callers warn.
func SaveTreeState(cacheDir, commit string, s *TreeState) error {
	dir := treeStateDir(cacheDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := json.NewEncoder(zw).Encode(s); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(dir, commit+".json.gz"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type st struct {
		name string
		mod  time.Time
	}
	var all []st
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			all = append(all, st{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	for _, x := range all[min(len(all), treeStatesKept):] {
		if x.name != commit+".json.gz" {
			os.Remove(filepath.Join(dir, x.name))
		}
	}
	return nil
}

// LoadTreeState reads the stored state of commit; nil if there is none
// (or it is unreadable, or of another format).
func LoadTreeState(cacheDir, commit string) *TreeState {
	if len(commit) != 64 || strings.ContainsAny(commit, "/.") {
		return nil
	}
	f, err := os.Open(filepath.Join(treeStateDir(cacheDir), commit+".json.gz"))
	if err != nil {
		return nil
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil
	}
	var s TreeState
	if err := json.NewDecoder(io.LimitReader(zr, 1<<30)).Decode(&s); err != nil || s.Format != treeStateFormat || s.Base == "" {
		return nil
	}
	return &s
}
