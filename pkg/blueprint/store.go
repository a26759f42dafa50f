package blueprint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Store keeps blueprints in a git repository, the way lorax-composer did:
// each blueprint is NAME.toml in the repository, every change (push,
// delete, undo) is one commit by "cosa composer", and a tag is an annotated
// git tag NAME.toml-rN on the change it numbers. Unsaved edits (the
// workspace) are files beside the repository, never committed.
//
// Layout under the store's directory:
//
//	lock          flock: shared for reads, exclusive for changes
//	git/          the repository (work tree and .git)
//	workspace/    NAME.toml, the workspace copies
//	tmp/          files being written, renamed into place when complete
//	dirty         present while a change is under way; if a process dies
//	              with it present, the next change resets the work tree
//
// A Store is safe for concurrent use, and several processes may open the
// same directory: changes are serialised by the flock (and, inside one
// process, a mutex), so concurrent pushes never interleave.
type Store struct {
	dir  string
	repo string
	ws   string
	tmp  string
	mu   sync.RWMutex
}

// Change is one entry of a blueprint's history, as the changes route shows
// it.
type Change struct {
	Commit    string `json:"commit"`
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Revision  *int   `json:"revision"`
}

// PushResult is what a push, undo or delete committed.
type PushResult struct {
	Commit  string // the new commit, 40 hex digits
	Version string // the version stored (empty for a delete)
}

const (
	branch      = "main"
	blueprintFx = ".toml"
)

var commitRe = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// Open opens the store in dir, creating it (and its repository) when
// needed, and repairs what a process that died during a change left: lock
// files of git's and a work tree out of step with the last commit.
func Open(ctx context.Context, dir string) (*Store, error) {
	s := &Store{
		dir:  dir,
		repo: filepath.Join(dir, "git"),
		ws:   filepath.Join(dir, "workspace"),
		tmp:  filepath.Join(dir, "tmp"),
	}
	for _, d := range []string{s.dir, s.repo, s.ws, s.tmp} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("blueprint store: %w", err)
		}
	}
	unlock, err := flock(ctx, filepath.Join(s.dir, "lock"), true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.init(ctx); err != nil {
		return nil, fmt.Errorf("blueprint store %s: %w", dir, err)
	}
	if err := s.repair(ctx, true); err != nil {
		return nil, fmt.Errorf("blueprint store %s: %w", dir, err)
	}
	// Left over from writes that never reached their rename.
	if entries, err := os.ReadDir(s.tmp); err == nil {
		for _, e := range entries {
			os.RemoveAll(filepath.Join(s.tmp, e.Name()))
		}
	}
	return s, nil
}

// init creates the repository with a first, empty commit, so that HEAD
// always names a commit. Each step is checked separately, so a store whose
// creation was interrupted is completed.
func (s *Store) init(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.repo, ".git", "HEAD")); err != nil {
		if _, err := s.git(ctx, nil, "init", "-q", "-b", branch); err != nil {
			return err
		}
	}
	// No automatic gc: it may detach into the background and work on
	// the repository outside the store's lock.
	for _, kv := range [][2]string{{"gc.auto", "0"}, {"maintenance.auto", "false"}, {"commit.gpgSign", "false"}, {"tag.gpgSign", "false"}} {
		if _, err := s.git(ctx, nil, "config", kv[0], kv[1]); err != nil {
			return err
		}
	}
	if _, err := s.git(ctx, nil, "rev-parse", "-q", "--verify", "HEAD^{commit}"); err != nil {
		if _, err := s.git(ctx, nil, "commit", "-q", "--allow-empty", "-m", "Blueprint store created"); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) git(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return runGit(ctx, s.repo, stdin, args...)
}

// read runs fn holding the store's shared lock.
func (s *Store) read(ctx context.Context, fn func() error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	unlock, err := flock(ctx, filepath.Join(s.dir, "lock"), false)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// write runs fn holding the store's exclusive lock, after repairing what a
// dead process may have left.
func (s *Store) write(ctx context.Context, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := flock(ctx, filepath.Join(s.dir, "lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.repair(ctx, false); err != nil {
		return err
	}
	return fn()
}

// repair makes the repository usable after a process died during a change.
// It runs under the exclusive lock, so any git lock file present belongs to
// a process that is gone (no other cosa process can be using git here), and
// a work tree or index that differs from HEAD holds a change that was never
// committed, so never reported as done. Unless force is set it only acts
// when there is a sign of trouble: the dirty marker or git's index.lock.
func (s *Store) repair(ctx context.Context, force bool) error {
	gitDir := filepath.Join(s.repo, ".git")
	marker := filepath.Join(s.dir, "dirty")
	if !force {
		_, errM := os.Stat(marker)
		_, errI := os.Stat(filepath.Join(gitDir, "index.lock"))
		if errM != nil && errI != nil {
			return nil
		}
	}
	err := filepath.WalkDir(gitDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "objects" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".lock") {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing stale git locks: %w", err)
	}
	if _, err := s.git(ctx, nil, "reset", "-q", "--hard", "HEAD"); err != nil {
		return err
	}
	if _, err := s.git(ctx, nil, "clean", "-q", "-f", "-d", "-x"); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeAtomic writes data to path through a file in tmp/ and a rename, so
// that path holds the old or the new content, never a part.
func (s *Store) writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(s.tmp, "write-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// commit records content as NAME.toml (nil content removes it) in one
// commit with message msg and returns the commit id. The dirty marker
// brackets the work-tree change, so that a crash in between is repaired.
func (s *Store) commit(ctx context.Context, name string, content []byte, msg string) (string, error) {
	marker := filepath.Join(s.dir, "dirty")
	if err := os.WriteFile(marker, []byte(name+"\n"), 0o600); err != nil {
		return "", err
	}
	file := name + blueprintFx
	if content != nil {
		if err := s.writeAtomic(filepath.Join(s.repo, file), content); err != nil {
			return "", err
		}
		if _, err := s.git(ctx, nil, "add", "--", file); err != nil {
			return "", err
		}
	} else if _, err := s.git(ctx, nil, "rm", "-q", "--", file); err != nil {
		return "", err
	}
	if _, err := s.git(ctx, nil, "commit", "-q", "--allow-empty", "--no-verify", "-m", msg, "--", file); err != nil {
		return "", err
	}
	out, err := s.git(ctx, nil, "rev-parse", "--verify", "HEAD")
	if err != nil {
		return "", err
	}
	if err := os.Remove(marker); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// show returns NAME.toml as of rev, or found=false when it does not exist
// there.
func (s *Store) show(ctx context.Context, rev, name string) (data []byte, found bool, err error) {
	out, err := s.git(ctx, []byte(rev+":"+name+blueprintFx+"\n"), "cat-file", "--batch")
	if err != nil {
		return nil, false, err
	}
	header, rest, _ := bytes.Cut(out, []byte("\n"))
	f := strings.Fields(string(header))
	if len(f) != 3 || f[1] != "blob" {
		// "<object> missing" (or a tree, which a name cannot be)
		return nil, false, nil
	}
	size, err := strconv.Atoi(f[2])
	if err != nil || size > len(rest) {
		return nil, false, fmt.Errorf("git cat-file: malformed reply %q", header)
	}
	return rest[:size], true, nil
}

// committed returns the committed blueprint name, or nil.
func (s *Store) committed(ctx context.Context, name string) (*Blueprint, []byte, error) {
	data, found, err := s.show(ctx, "HEAD", name)
	if err != nil || !found {
		return nil, nil, err
	}
	b, err := ParseTOML(data)
	if err != nil {
		return nil, nil, fmt.Errorf("stored blueprint %s: %w", name, err)
	}
	return b, data, nil
}

// workspace returns the workspace copy of name, or nil.
func (s *Store) workspace(name string) (*Blueprint, []byte, error) {
	data, err := os.ReadFile(filepath.Join(s.ws, name+blueprintFx))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	b, err := ParseTOML(data)
	if err != nil {
		return nil, nil, fmt.Errorf("workspace blueprint %s: %w", name, err)
	}
	return b, data, nil
}

func (s *Store) dropWorkspace(name string) error {
	err := os.Remove(filepath.Join(s.ws, name+blueprintFx))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func unknown(name string) error {
	return fmt.Errorf("%s: blueprint not found: %w", name, ErrUnknownBlueprint)
}

// page clamps offset and limit to n items (negative limit: no limit).
func page(n, offset, limit int) (lo, hi int) {
	lo = min(max(offset, 0), n)
	hi = n
	if limit >= 0 {
		hi = min(lo+limit, n)
	}
	return lo, hi
}

// List returns the committed blueprints' names, sorted, from offset, at
// most limit of them (limit < 0: all), and how many there are. Workspace
// copies are not listed.
func (s *Store) List(ctx context.Context, offset, limit int) (names []string, total int, err error) {
	err = s.read(ctx, func() error {
		out, err := s.git(ctx, nil, "ls-tree", "-z", "--name-only", "HEAD")
		if err != nil {
			return err
		}
		for _, f := range strings.Split(string(out), "\x00") {
			name, ok := strings.CutSuffix(f, blueprintFx)
			if ok && ValidName(name) == nil {
				names = append(names, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	sort.Strings(names)
	lo, hi := page(len(names), offset, limit)
	return names[lo:hi:hi], len(names), nil
}

// Get returns the blueprint as the info route shows it: the workspace copy
// if there is one, else the committed one. changed is true when the copy
// returned is a workspace copy that differs from the committed one.
func (s *Store) Get(ctx context.Context, name string) (b *Blueprint, changed bool, err error) {
	if err := ValidName(name); err != nil {
		return nil, false, err
	}
	err = s.read(ctx, func() error {
		wb, wdata, err := s.workspace(name)
		if err != nil {
			return err
		}
		cb, cdata, err := s.committed(ctx, name)
		if err != nil {
			return err
		}
		switch {
		case wb != nil:
			b, changed = wb, cb == nil || !bytes.Equal(wdata, cdata)
		case cb != nil:
			b = cb
		default:
			return unknown(name)
		}
		return nil
	})
	return b, changed, err
}

// GetCommitted returns the committed blueprint, ignoring the workspace (what
// a compose uses).
func (s *Store) GetCommitted(ctx context.Context, name string) (*Blueprint, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	var b *Blueprint
	err := s.read(ctx, func() error {
		var err error
		b, _, err = s.committed(ctx, name)
		if err == nil && b == nil {
			err = unknown(name)
		}
		return err
	})
	return b, err
}

// GetAt returns the blueprint as it was at one of its changes; commit is
// the change's id or an unambiguous prefix of it. It also returns the full
// commit id.
func (s *Store) GetAt(ctx context.Context, name, commit string) (*Blueprint, string, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	var b *Blueprint
	var full string
	err := s.read(ctx, func() error {
		var err error
		b, full, err = s.at(ctx, name, commit)
		return err
	})
	return b, full, err
}

func (s *Store) at(ctx context.Context, name, commit string) (*Blueprint, string, error) {
	changes, err := s.changes(ctx, name)
	if err != nil {
		return nil, "", err
	}
	full, err := resolveCommit(name, commit, changes)
	if err != nil {
		return nil, "", err
	}
	data, found, err := s.show(ctx, full, name)
	if err != nil {
		return nil, "", err
	}
	if !found {
		return nil, "", fmt.Errorf("%s: commit %s deleted the blueprint: %w", name, full, ErrUnknownCommit)
	}
	b, err := ParseTOML(data)
	if err != nil {
		return nil, "", fmt.Errorf("stored blueprint %s at %s: %w", name, full, err)
	}
	return b, full, nil
}

func resolveCommit(name, commit string, changes []Change) (string, error) {
	if !commitRe.MatchString(commit) {
		return "", fmt.Errorf("%s: %q is not a commit id: %w", name, commit, ErrUnknownCommit)
	}
	var full string
	for _, c := range changes {
		if strings.HasPrefix(c.Commit, commit) {
			if full != "" {
				return "", fmt.Errorf("%s: commit %s is ambiguous: %w", name, commit, ErrUnknownCommit)
			}
			full = c.Commit
		}
	}
	if full == "" {
		return "", fmt.Errorf("%s: commit %s is not a change of this blueprint: %w", name, commit, ErrUnknownCommit)
	}
	return full, nil
}

// Push commits b (the new route): its version follows NextVersion against
// the committed version, plain-text passwords are stored hashed, and its
// workspace copy is dropped. b is not modified.
func (s *Store) Push(ctx context.Context, b *Blueprint) (PushResult, error) {
	if err := b.Validate(); err != nil {
		return PushResult{}, err
	}
	var res PushResult
	err := s.write(ctx, func() error {
		var err error
		res, err = s.push(ctx, b, func(v string) string { return fmt.Sprintf("Recipe %s, version %s saved.", b.Name, v) })
		return err
	})
	return res, err
}

// push commits a copy of b with the version rule applied; msg makes the
// commit message from the stored version.
func (s *Store) push(ctx context.Context, b *Blueprint, msg func(version string) string) (PushResult, error) {
	old, _, err := s.committed(ctx, b.Name)
	if err != nil {
		return PushResult{}, err
	}
	oldVersion := ""
	if old != nil {
		oldVersion = old.Version
	}
	c, err := storable(b)
	if err != nil {
		return PushResult{}, err
	}
	if c.Version, err = NextVersion(b.Version, oldVersion); err != nil {
		return PushResult{}, err
	}
	data, err := c.TOML()
	if err != nil {
		return PushResult{}, err
	}
	id, err := s.commit(ctx, c.Name, data, msg(c.Version))
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Commit: id, Version: c.Version}, s.dropWorkspace(c.Name)
}

// storable is the copy of b that the store writes: normalised, with
// plain-text passwords hashed. b itself is left as it was.
func storable(b *Blueprint) (*Blueprint, error) {
	c := *b
	if b.Customizations != nil {
		cc := *b.Customizations
		cc.User = append([]User(nil), cc.User...)
		cc.Filesystem = append([]Filesystem(nil), cc.Filesystem...)
		c.Customizations = &cc
	}
	c.normalize()
	if err := c.HashPasswords(); err != nil {
		return nil, err
	}
	return &c, nil
}

// PushWorkspace stores b as the workspace copy of its name (the workspace
// route): not committed, version unchanged.
func (s *Store) PushWorkspace(ctx context.Context, b *Blueprint) error {
	if err := b.Validate(); err != nil {
		return err
	}
	c, err := storable(b)
	if err != nil {
		return err
	}
	data, err := c.TOML()
	if err != nil {
		return err
	}
	return s.write(ctx, func() error {
		return s.writeAtomic(filepath.Join(s.ws, c.Name+blueprintFx), data)
	})
}

// DeleteWorkspace drops the workspace copy of name.
func (s *Store) DeleteWorkspace(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	return s.write(ctx, func() error {
		err := os.Remove(filepath.Join(s.ws, name+blueprintFx))
		if errors.Is(err, fs.ErrNotExist) {
			return unknown(name)
		}
		return err
	})
}

// Delete removes name in a new commit and drops its workspace copy. The
// history stays: Changes still lists it and Undo brings it back. A
// blueprint that exists only in the workspace loses that copy, with no
// commit. The result has no version.
func (s *Store) Delete(ctx context.Context, name string) (PushResult, error) {
	if err := ValidName(name); err != nil {
		return PushResult{}, err
	}
	var res PushResult
	err := s.write(ctx, func() error {
		_, found, err := s.show(ctx, "HEAD", name)
		if err != nil {
			return err
		}
		if !found {
			if _, err := os.Stat(filepath.Join(s.ws, name+blueprintFx)); err != nil {
				return unknown(name)
			}
			return s.dropWorkspace(name)
		}
		id, err := s.commit(ctx, name, nil, fmt.Sprintf("Recipe %s deleted", name))
		if err != nil {
			return err
		}
		res.Commit = id
		return s.dropWorkspace(name)
	})
	return res, err
}

// Undo commits the blueprint as it was at commit (one of its changes) as a
// new change, with the push version rule, and drops the workspace copy.
func (s *Store) Undo(ctx context.Context, name, commit string) (PushResult, error) {
	if err := ValidName(name); err != nil {
		return PushResult{}, err
	}
	var res PushResult
	err := s.write(ctx, func() error {
		b, full, err := s.at(ctx, name, commit)
		if err != nil {
			return err
		}
		res, err = s.push(ctx, b, func(string) string { return fmt.Sprintf("%s.toml reverted to commit %s", name, full) })
		return err
	})
	return res, err
}

// Changes returns name's changes, newest first, from offset, at most limit
// of them (limit < 0: all), and how many there are. A deleted blueprint
// keeps its changes; a name that never had any is ErrUnknownBlueprint.
func (s *Store) Changes(ctx context.Context, name string, offset, limit int) ([]Change, int, error) {
	if err := ValidName(name); err != nil {
		return nil, 0, err
	}
	var changes []Change
	err := s.read(ctx, func() error {
		var err error
		changes, err = s.changes(ctx, name)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	lo, hi := page(len(changes), offset, limit)
	return changes[lo:hi:hi], len(changes), nil
}

// changes reads name's whole history: one record per commit that touched
// NAME.toml, with the tags naming that commit's revision.
func (s *Store) changes(ctx context.Context, name string) ([]Change, error) {
	file := name + blueprintFx
	out, err := s.git(ctx, nil, "log", "-z", "--decorate-refs=refs/tags/",
		"--format=%H%x1f%ct%x1f%D%x1f%s", "HEAD", "--", file)
	if err != nil {
		return nil, err
	}
	var changes []Change
	for _, rec := range strings.Split(string(out), "\x00") {
		rec = strings.TrimPrefix(rec, "\n")
		if rec == "" {
			continue
		}
		f := strings.SplitN(rec, "\x1f", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("git log: malformed record %q", rec)
		}
		sec, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git log: malformed time %q", f[1])
		}
		c := Change{Commit: f[0], Timestamp: time.Unix(sec, 0).UTC().Format(time.RFC3339), Message: f[3]}
		for _, d := range strings.Split(f[2], ", ") {
			tag, ok := strings.CutPrefix(d, "tag: "+file+"-r")
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(tag); err == nil && (c.Revision == nil || n > *c.Revision) {
				c.Revision = &n
			}
		}
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return nil, unknown(name)
	}
	return changes, nil
}

// Tag gives the newest change of name a revision number, one more than the
// highest revision of its earlier changes (the first is 1), and returns it.
// If the newest change already has one, it is returned unchanged. Only a
// blueprint that currently exists can be tagged.
func (s *Store) Tag(ctx context.Context, name string) (int, error) {
	if err := ValidName(name); err != nil {
		return 0, err
	}
	var rev int
	err := s.write(ctx, func() error {
		_, found, err := s.show(ctx, "HEAD", name)
		if err != nil {
			return err
		}
		if !found {
			return unknown(name)
		}
		changes, err := s.changes(ctx, name)
		if err != nil {
			return err
		}
		if r := changes[0].Revision; r != nil {
			rev = *r
			return nil
		}
		for _, c := range changes[1:] {
			if c.Revision != nil && *c.Revision > rev {
				rev = *c.Revision
			}
		}
		rev++
		tag := fmt.Sprintf("%s%s-r%d", name, blueprintFx, rev)
		_, err = s.git(ctx, nil, "tag", "-a", "-m", fmt.Sprintf("Blueprint %s revision %d", name, rev), tag, changes[0].Commit)
		return err
	})
	return rev, err
}
