package blueprint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func bp(t *testing.T, name, version, desc string) *Blueprint {
	t.Helper()
	src := fmt.Sprintf("name = %q\ndescription = %q\n", name, desc)
	if version != "" {
		src += fmt.Sprintf("version = %q\n", version)
	}
	return mustParse(t, src+"[[packages]]\nname = \"tmux\"\n")
}

func push(t *testing.T, s *Store, b *Blueprint) PushResult {
	t.Helper()
	r, err := s.Push(context.Background(), b)
	if err != nil {
		t.Fatalf("Push %s %q: %v", b.Name, b.Version, err)
	}
	return r
}

// gitOut runs git in the store's repository, for assertions on the history
// itself.
func gitOut(t *testing.T, s *Store, args ...string) string {
	t.Helper()
	out, err := runGit(context.Background(), s.repo, nil, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return strings.TrimSpace(string(out))
}

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func TestPushVersionRule(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	steps := []struct{ pushed, want string }{
		{"", "0.0.1"},      // nothing committed, no version
		{"", "0.0.2"},      // absent: committed + patch
		{"1.0.0", "1.0.0"}, // different: as given
		{"1.0.0", "1.0.1"}, // same as committed: bumped
		{"0.5.0", "0.5.0"}, // lower but different: as given
		{"0.5.0-rc.1", "0.5.0-rc.1"},
		{"0.5.0-rc.1", "0.5.0"}, // a pre-release bumps to its release
	}
	for i, st := range steps {
		r := push(t, s, bp(t, "kiosk", st.pushed, fmt.Sprint("step ", i)))
		if r.Version != st.want {
			t.Errorf("push %d (%q): stored %q, want %q", i, st.pushed, r.Version, st.want)
		}
		if !hex40.MatchString(r.Commit) {
			t.Errorf("push %d: commit %q", i, r.Commit)
		}
		got, err := s.GetCommitted(ctx, "kiosk")
		if err != nil || got.Version != st.want || got.Description != fmt.Sprint("step ", i) {
			t.Errorf("push %d: committed %+v, %v", i, got, err)
		}
	}
	_, total, _ := s.Changes(ctx, "kiosk", 0, 0)
	bad := bp(t, "kiosk", "", "bad")
	bad.Version = "1.0"
	if _, err := s.Push(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("push of version 1.0: %v", err)
	}
	bad = bp(t, "kiosk", "", "bad")
	bad.Packages[0].Name = "Tmux"
	if _, err := s.Push(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("push of package Tmux: %v", err)
	}
	if _, after, _ := s.Changes(ctx, "kiosk", 0, 0); after != total {
		t.Errorf("refused pushes changed the history: %d -> %d changes", total, after)
	}
	msgs, _, _ := s.Changes(ctx, "kiosk", 0, 1)
	if msgs[0].Message != "Recipe kiosk, version 0.5.0 saved." {
		t.Errorf("message %q", msgs[0].Message)
	}
	if a := gitOut(t, s, "log", "-1", "--format=%an <%ae>|%cn"); a != "cosa composer <cosa-composer@localhost>|cosa composer" {
		t.Errorf("author %q", a)
	}
}

func TestListAndPersistence(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, n := range []string{"web", "kiosk", "a-first", "db"} {
		push(t, s, bp(t, n, "", n))
	}
	if err := s.PushWorkspace(ctx, bp(t, "draft", "", "only in the workspace")); err != nil {
		t.Fatal(err)
	}
	// A second Store on the same directory (another process, or a
	// restart) sees the same blueprints.
	s2 := openStore(t, dir)
	names, total, err := s2.List(ctx, 0, -1)
	if err != nil || total != 4 || strings.Join(names, ",") != "a-first,db,kiosk,web" {
		t.Errorf("List = %v, %d, %v", names, total, err)
	}
	names, total, _ = s2.List(ctx, 0, 0)
	if len(names) != 0 || total != 4 {
		t.Errorf("List limit 0 = %v, %d", names, total)
	}
	names, _, _ = s2.List(ctx, 1, 2)
	if strings.Join(names, ",") != "db,kiosk" {
		t.Errorf("List offset 1 limit 2 = %v", names)
	}
	names, total, _ = s2.List(ctx, 9, 20)
	if len(names) != 0 || total != 4 {
		t.Errorf("List past the end = %v, %d", names, total)
	}
}

func TestWorkspace(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	push(t, s, bp(t, "kiosk", "0.1.0", "committed"))

	b, changed, err := s.Get(ctx, "kiosk")
	if err != nil || changed || b.Description != "committed" {
		t.Fatalf("Get without workspace: %+v %v %v", b, changed, err)
	}
	// Same content in the workspace: not changed.
	if err := s.PushWorkspace(ctx, bp(t, "kiosk", "0.1.0", "committed")); err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := s.Get(ctx, "kiosk"); changed {
		t.Errorf("identical workspace copy reported as changed")
	}
	if err := s.PushWorkspace(ctx, bp(t, "kiosk", "0.1.0", "edited")); err != nil {
		t.Fatal(err)
	}
	b, changed, err = s.Get(ctx, "kiosk")
	if err != nil || !changed || b.Description != "edited" || b.Version != "0.1.0" {
		t.Errorf("Get with workspace: %+v %v %v", b, changed, err)
	}
	if c, _ := s.GetCommitted(ctx, "kiosk"); c.Description != "committed" {
		t.Errorf("workspace leaked into the committed copy: %q", c.Description)
	}
	if _, n, _ := s.Changes(ctx, "kiosk", 0, 0); n != 1 {
		t.Errorf("workspace push made a commit: %d changes", n)
	}
	// A workspace-only blueprint: shown, changed, not listed.
	if err := s.PushWorkspace(ctx, bp(t, "draft", "", "draft")); err != nil {
		t.Fatal(err)
	}
	if b, changed, err := s.Get(ctx, "draft"); err != nil || !changed || b.Name != "draft" {
		t.Errorf("Get draft: %+v %v %v", b, changed, err)
	}
	if names, _, _ := s.List(ctx, 0, -1); len(names) != 1 {
		t.Errorf("List shows workspace-only blueprints: %v", names)
	}
	if _, err := s.GetCommitted(ctx, "draft"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("GetCommitted draft: %v", err)
	}
	// Pushing clears the workspace copy.
	push(t, s, bp(t, "kiosk", "", "pushed"))
	b, changed, _ = s.Get(ctx, "kiosk")
	if changed || b.Description != "pushed" || b.Version != "0.1.1" {
		t.Errorf("after push: %+v changed=%v", b, changed)
	}
	if err := s.DeleteWorkspace(ctx, "draft"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "draft"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Get after DeleteWorkspace: %v", err)
	}
	if err := s.DeleteWorkspace(ctx, "draft"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("second DeleteWorkspace: %v", err)
	}
}

func TestDeleteAndUndo(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	v1 := push(t, s, bp(t, "kiosk", "1.0.0", "first"))
	push(t, s, bp(t, "kiosk", "2.0.0", "second"))
	push(t, s, bp(t, "other", "", "unrelated"))
	if err := s.PushWorkspace(ctx, bp(t, "kiosk", "", "unsaved")); err != nil {
		t.Fatal(err)
	}
	del, err := s.Delete(ctx, "kiosk")
	if err != nil || !hex40.MatchString(del.Commit) {
		t.Fatalf("Delete: %+v %v", del, err)
	}
	if _, _, err := s.Get(ctx, "kiosk"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Get after delete (workspace must go too): %v", err)
	}
	if names, _, _ := s.List(ctx, 0, -1); strings.Join(names, ",") != "other" {
		t.Errorf("List after delete: %v", names)
	}
	changes, total, err := s.Changes(ctx, "kiosk", 0, -1)
	if err != nil || total != 3 || changes[0].Commit != del.Commit || changes[0].Message != "Recipe kiosk deleted" {
		t.Fatalf("Changes after delete: %+v %d %v", changes, total, err)
	}
	if _, err := s.Delete(ctx, "kiosk"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Tag(ctx, "kiosk"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Tag of a deleted blueprint: %v", err)
	}
	// The deletion itself has no content to go back to.
	if _, err := s.Undo(ctx, "kiosk", del.Commit); !errors.Is(err, ErrUnknownCommit) {
		t.Errorf("Undo to the deleting commit: %v", err)
	}
	// Undo to v1 (by an abbreviated id) restores it as a new change.
	r, err := s.Undo(ctx, "kiosk", v1.Commit[:10])
	if err != nil {
		t.Fatal(err)
	}
	b, changed, err := s.Get(ctx, "kiosk")
	if err != nil || changed || b.Description != "first" || b.Version != "1.0.0" || r.Version != "1.0.0" {
		t.Errorf("after undo: %+v %v %v (result %+v)", b, changed, err, r)
	}
	changes, total, _ = s.Changes(ctx, "kiosk", 0, -1)
	if total != 4 || changes[0].Message != "kiosk.toml reverted to commit "+v1.Commit {
		t.Errorf("undo change: %d %+v", total, changes[0])
	}
	// Undo to the current content: same version as committed, so bumped.
	if r, err := s.Undo(ctx, "kiosk", r.Commit); err != nil || r.Version != "1.0.1" {
		t.Errorf("undo to the newest change: %+v %v", r, err)
	}
	old, full, err := s.GetAt(ctx, "kiosk", changes[2].Commit)
	if err != nil || old.Description != "second" || full != changes[2].Commit {
		t.Errorf("GetAt second: %+v %s %v", old, full, err)
	}
	for _, c := range []string{"", "zz", "--all", "0000000", strings.Repeat("f", 41)} {
		if _, err := s.Undo(ctx, "kiosk", c); !errors.Is(err, ErrUnknownCommit) {
			t.Errorf("Undo %q: %v", c, err)
		}
	}
	// A commit of another blueprint is not a change of this one.
	oc, _, _ := s.Changes(ctx, "other", 0, 1)
	if _, _, err := s.GetAt(ctx, "kiosk", oc[0].Commit); !errors.Is(err, ErrUnknownCommit) {
		t.Errorf("GetAt with other's commit: %v", err)
	}
	if _, err := s.Delete(ctx, "nosuch"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Delete nosuch: %v", err)
	}
	// A blueprint only in the workspace is deleted without a commit.
	if err := s.PushWorkspace(ctx, bp(t, "draft", "", "d")); err != nil {
		t.Fatal(err)
	}
	before := gitOut(t, s, "rev-parse", "HEAD")
	if r, err := s.Delete(ctx, "draft"); err != nil || r.Commit != "" {
		t.Errorf("Delete draft: %+v %v", r, err)
	}
	if gitOut(t, s, "rev-parse", "HEAD") != before {
		t.Errorf("deleting a workspace-only blueprint made a commit")
	}
}

func TestChangesOrderAndPaging(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	for i := 0; i < 5; i++ {
		push(t, s, bp(t, "kiosk", "", fmt.Sprint(i)))
		push(t, s, bp(t, "web", "", fmt.Sprint(i)))
	}
	all, total, err := s.Changes(ctx, "kiosk", 0, -1)
	if err != nil || total != 5 || len(all) != 5 {
		t.Fatalf("Changes: %d %d %v", len(all), total, err)
	}
	for i, c := range all {
		want := fmt.Sprintf("Recipe kiosk, version 0.0.%d saved.", 5-i)
		if c.Message != want || !hex40.MatchString(c.Commit) || c.Revision != nil {
			t.Errorf("change %d: %+v, want message %q", i, c, want)
		}
		ts, err := time.Parse(time.RFC3339, c.Timestamp)
		if err != nil || !strings.HasSuffix(c.Timestamp, "Z") || time.Since(ts) > time.Hour || time.Since(ts) < -time.Minute {
			t.Errorf("change %d timestamp %q: %v", i, c.Timestamp, err)
		}
	}
	// newest first: each change's parent chain reaches the next one
	if gitOut(t, s, "merge-base", "--is-ancestor", all[1].Commit, all[0].Commit) != "" {
		t.Errorf("merge-base printed something")
	}
	if _, err := runGit(ctx, s.repo, nil, "merge-base", "--is-ancestor", all[0].Commit, all[1].Commit); err == nil {
		t.Errorf("change 0 is an ancestor of change 1: not newest first")
	}
	for _, p := range []struct{ off, lim, first, n int }{{0, 2, 0, 2}, {1, 2, 1, 2}, {4, 20, 4, 1}, {5, 20, 0, 0}, {99, 1, 0, 0}, {0, 0, 0, 0}, {-3, 1, 0, 1}} {
		got, total, _ := s.Changes(ctx, "kiosk", p.off, p.lim)
		if total != 5 || len(got) != p.n || (p.n > 0 && got[0].Commit != all[p.first].Commit) {
			t.Errorf("Changes(offset %d, limit %d): %d items (total %d)", p.off, p.lim, len(got), total)
		}
	}
	if _, _, err := s.Changes(ctx, "nosuch", 0, -1); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Changes nosuch: %v", err)
	}
}

func TestTag(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	push(t, s, bp(t, "kiosk", "", "a"))
	if rev, err := s.Tag(ctx, "kiosk"); err != nil || rev != 1 {
		t.Fatalf("first Tag = %d, %v", rev, err)
	}
	if rev, err := s.Tag(ctx, "kiosk"); err != nil || rev != 1 {
		t.Errorf("Tag of an already tagged change = %d, %v", rev, err)
	}
	push(t, s, bp(t, "kiosk", "", "b"))
	push(t, s, bp(t, "web", "", "w"))
	if rev, err := s.Tag(ctx, "web"); err != nil || rev != 1 {
		t.Errorf("web's first Tag = %d, %v (revisions are per blueprint)", rev, err)
	}
	if rev, err := s.Tag(ctx, "kiosk"); err != nil || rev != 2 {
		t.Errorf("second Tag = %d, %v", rev, err)
	}
	push(t, s, bp(t, "kiosk", "", "c"))
	changes, _, _ := s.Changes(ctx, "kiosk", 0, -1)
	var got []string
	for _, c := range changes {
		if c.Revision == nil {
			got = append(got, "null")
		} else {
			got = append(got, fmt.Sprint(*c.Revision))
		}
	}
	if strings.Join(got, ",") != "null,2,1" {
		t.Errorf("revisions newest first = %v, want null,2,1", got)
	}
	if tags := gitOut(t, s, "tag", "-l"); tags != "kiosk.toml-r1\nkiosk.toml-r2\nweb.toml-r1" {
		t.Errorf("git tags: %q", tags)
	}
	if tagger := gitOut(t, s, "for-each-ref", "--format=%(taggername)", "refs/tags/kiosk.toml-r2"); tagger != "cosa composer" {
		t.Errorf("tagger %q", tagger)
	}
	if _, err := s.Tag(ctx, "nosuch"); !errors.Is(err, ErrUnknownBlueprint) {
		t.Errorf("Tag nosuch: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	for _, n := range []string{"..", ".", "a/b", "../../etc/passwd", ".git"} {
		if _, _, err := s.Get(ctx, n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get %q: %v", n, err)
		}
		if _, err := s.Delete(ctx, n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Delete %q: %v", n, err)
		}
		if _, err := s.Push(ctx, &Blueprint{Name: n}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Push %q: %v", n, err)
		}
		if _, _, err := s.Changes(ctx, n, 0, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Changes %q: %v", n, err)
		}
	}
}

// TestConcurrentPushes pushes one blueprint from 20 goroutines, half of them
// through a second Store on the same directory (as another process would),
// while other blueprints are pushed alongside. Every push must succeed and
// the history must be linear with 20 distinct versions.
func TestConcurrentPushes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*Store{openStore(t, dir), openStore(t, dir)}
	const n = 20
	var wg sync.WaitGroup
	versions := make([]string, n)
	errs := make([]error, n+5)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := stores[i%2].Push(ctx, bp(t, "kiosk", "", fmt.Sprint("writer ", i)))
			versions[i], errs[i] = r.Version, err
		}()
	}
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[n+i] = stores[i%2].Push(ctx, bp(t, fmt.Sprint("other", i), "", "x"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("push %d: %v", i, err)
		}
	}
	sort.Slice(versions, func(i, j int) bool {
		a, _ := parseSemver(versions[i])
		b, _ := parseSemver(versions[j])
		return a.patch < b.patch
	})
	for i, v := range versions {
		if want := fmt.Sprintf("0.0.%d", i+1); v != want {
			t.Errorf("versions %v: want 0.0.1 ... 0.0.%d, each once", versions, n)
			break
		}
	}
	s := stores[0]
	changes, total, err := s.Changes(ctx, "kiosk", 0, -1)
	if err != nil || total != n {
		t.Fatalf("Changes: %d, %v", total, err)
	}
	if want := fmt.Sprintf("Recipe kiosk, version 0.0.%d saved.", n); changes[0].Message != want {
		t.Errorf("newest change %q, want %q", changes[0].Message, want)
	}
	if merges := gitOut(t, s, "rev-list", "--min-parents=2", "HEAD"); merges != "" {
		t.Errorf("history has merges: %s", merges)
	}
	if count := gitOut(t, s, "rev-list", "--count", "HEAD"); count != fmt.Sprint(n+5+1) {
		t.Errorf("%s commits, want %d (+1 for the store's first)", count, n+5+1)
	}
	if status := gitOut(t, s, "status", "--porcelain"); status != "" {
		t.Errorf("work tree not clean: %s", status)
	}
	gitOut(t, s, "fsck", "--strict", "--no-progress")
	if names, total, _ := s.List(ctx, 0, -1); total != 6 {
		t.Errorf("List: %v", names)
	}
}

// TestStaleLocks leaves what a killed process would: git's index.lock and
// branch lock, the dirty marker, an uncommitted work-tree file, a half
// written temp file. The store must carry on as if nothing happened.
func TestStaleLocks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	push(t, s, bp(t, "kiosk", "", "committed"))

	gitDir := filepath.Join(s.repo, ".git")
	if err := os.WriteFile(filepath.Join(gitDir, "index.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// git itself refuses to work now: the lock is real to it.
	if _, err := runGit(ctx, s.repo, nil, "add", "--", "kiosk.toml"); err == nil || !strings.Contains(err.Error(), "index.lock") {
		t.Fatalf("git did not see the stale lock: %v", err)
	}
	if r := push(t, s, bp(t, "kiosk", "", "after index.lock")); r.Version != "0.0.2" {
		t.Errorf("push past a stale index.lock stored %s", r.Version)
	}
	if _, err := os.Stat(filepath.Join(gitDir, "index.lock")); err == nil {
		t.Errorf("stale index.lock still there")
	}

	// A process died between writing the work tree and committing.
	for name, content := range map[string]string{
		filepath.Join(gitDir, "index.lock"):                         "",
		filepath.Join(gitDir, "refs", "heads", branch+".lock"):      "",
		filepath.Join(s.repo, "kiosk.toml"):                         "name = \"half-writ",
		filepath.Join(s.repo, "new.toml"):                           "name = \"new\"\n",
		filepath.Join(dir, "dirty"):                                 "kiosk\n",
		filepath.Join(s.tmp, "write-123"):                           "partial",
		filepath.Join(s.ws, "draft.toml"):                           "name = \"draft\"\n",
		filepath.Join(gitDir, "refs", "tags", "kiosk.toml-r1.lock"): "",
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Reads use the last commit and are unaffected.
	if b, _, err := s.Get(ctx, "kiosk"); err != nil || b.Description != "after index.lock" {
		t.Errorf("Get during the mess: %+v %v", b, err)
	}
	if names, _, _ := s.List(ctx, 0, -1); strings.Join(names, ",") != "kiosk" {
		t.Errorf("List shows an uncommitted file: %v", names)
	}
	// The next change (here a tag, whose ref lock was left too) repairs.
	if rev, err := s.Tag(ctx, "kiosk"); err != nil || rev != 1 {
		t.Errorf("Tag after a crash: %d %v", rev, err)
	}
	if r := push(t, s, bp(t, "kiosk", "", "after crash")); r.Version != "0.0.3" {
		t.Errorf("push after a crash stored %s", r.Version)
	}
	if status := gitOut(t, s, "status", "--porcelain"); status != "" {
		t.Errorf("work tree not clean after repair: %q", status)
	}
	if _, err := os.Stat(filepath.Join(dir, "dirty")); err == nil {
		t.Errorf("dirty marker left")
	}
	// Workspace copies are not the repository's business.
	if _, changed, err := s.Get(ctx, "draft"); err != nil || !changed {
		t.Errorf("workspace copy lost in the repair: %v", err)
	}
	// Reopening (a restart) clears leftover temp files.
	openStore(t, dir)
	if _, err := os.Stat(filepath.Join(s.tmp, "write-123")); err == nil {
		t.Errorf("temp file survived a reopen")
	}
	gitOut(t, s, "fsck", "--strict", "--no-progress")
}

// TestOpenRepairsInterruptedCreation: a store whose first Open died after
// git init but before the first commit.
func TestOpenRepairsInterruptedCreation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repo := filepath.Join(dir, "git")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runGit(ctx, repo, nil, "init", "-q", "-b", branch); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	push(t, s, bp(t, "kiosk", "", "x"))
	if n, _, _ := s.List(ctx, 0, -1); len(n) != 1 {
		t.Errorf("List: %v", n)
	}
}

func TestCancelledContext(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	// Hold the exclusive lock as another process would, then ask with a
	// context that is already done: the wait ends with the context's error.
	unlock, err := flock(context.Background(), filepath.Join(dir, "lock"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Push(ctx, bp(t, "kiosk", "", "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Push with a cancelled context: %v", err)
	}
}
