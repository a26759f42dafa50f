package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

// The standard fixture, oldest first: id2 is listed in builds.json but
// has no directory; id3 is tagged "candidate" and "stable", id2 "old".
const (
	id1 = "12.20261120.dev.0"
	id2 = "12.20261121.dev.0"
	id3 = "12.20261122.dev.0"
	id4 = "12.20261122.dev.1"
)

func standardBuilds(t *testing.T) (string, *build.Dir) {
	t.Helper()
	wd := initWorkdir(t)
	d := makeBuilds(t, wd, map[string]string{"stable": id3, "candidate": id3, "old": id2},
		fakeBuild{id: id1, onDisk: true, day: 20},
		fakeBuild{id: id2, onDisk: false, day: 21},
		fakeBuild{id: id3, onDisk: true, day: 22},
		fakeBuild{id: id4, onDisk: true, day: 23},
	)
	return wd, d
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestList(t *testing.T) {
	wd, _ := standardBuilds(t)
	row := func(id, ts, commit, tags string) string {
		return fmt.Sprintf("%-19s%-8s%-22s%-15s%s\n", id, arch, ts, commit, tags)
	}
	want := fmt.Sprintf("%-19s%-8s%-22s%-15s%s\n", "BUILD", "ARCHES", "TIMESTAMP", "COMMIT", "TAGS") +
		row(id4, "2026-11-23T10:05:00Z", hexOf("commit " + id4)[:12], "-") +
		row(id3, "2026-11-22T10:05:00Z", hexOf("commit " + id3)[:12], "candidate,stable") +
		row(id2, "-", "(not on disk)", "old") +
		row(id1, "2026-11-20T10:05:00Z", hexOf("commit " + id1)[:12], "-")
	cosa(t, "-C", wd, "list").wantOK(t).wantStdout(t, want)

	r := cosa(t, "-C", wd, "list", "--json").wantOK(t)
	got := resultOf(t, "list", r.stdout)["builds"]
	wantJSON := []any{
		map[string]any{"id": id4, "arches": []any{arch}, "timestamp": "2026-11-23T10:05:00Z", "ostree-commit": hexOf("commit " + id4), "tags": []any{}, "on-disk": true},
		map[string]any{"id": id3, "arches": []any{arch}, "timestamp": "2026-11-22T10:05:00Z", "ostree-commit": hexOf("commit " + id3), "tags": []any{"candidate", "stable"}, "on-disk": true},
		map[string]any{"id": id2, "arches": []any{arch}, "tags": []any{"old"}, "on-disk": false},
		map[string]any{"id": id1, "arches": []any{arch}, "timestamp": "2026-11-20T10:05:00Z", "ostree-commit": hexOf("commit " + id1), "tags": []any{}, "on-disk": true},
	}
	if fmt.Sprint(got) != fmt.Sprint(wantJSON) {
		t.Errorf("list --json:\n%v\nwant:\n%v", got, wantJSON)
	}
}

func TestListEmpty(t *testing.T) {
	wd := initWorkdir(t)
	cosa(t, "-C", wd, "list").wantOK(t).wantStdout(t, "No builds.\n")
	r := cosa(t, "-C", wd, "list", "--json").wantOK(t)
	if b := resultOf(t, "list", r.stdout)["builds"]; fmt.Sprint(b) != "[]" {
		t.Errorf("list --json of no builds: %v", b)
	}
	// Listing does not create builds.json.
	if got := dirEntries(t, filepath.Join(wd, "builds")); len(got) != 0 {
		t.Errorf("builds/ holds %v", got)
	}
}

func TestMetaGetDump(t *testing.T) {
	wd, d := standardBuilds(t)
	cosa(t, "-C", wd, "meta", "--get", "buildid").wantOK(t).wantStdout(t, id4+"\n")
	cosa(t, "-C", wd, "meta", "--build", "latest", "--get", "buildid").wantOK(t).wantStdout(t, id4+"\n")
	cosa(t, "-C", wd, "meta", "--build", id1, "--get", "buildid", "--get", "images.ostree.sha256", "--get", "images.ostree.size").
		wantOK(t).wantStdout(t, id1+"\n"+hexOf("ostree "+id1)+"\n1020\n")
	cosa(t, "-C", wd, "meta", "--build", id1, "--get", "coreos-assembler.basearch").wantOK(t).wantStdout(t, arch+"\n")
	cosa(t, "-C", wd, "meta", "--build", id1, "--get", "images.ostree").wantOK(t).wantStdout(t, fmt.Sprintf(`{
  "path": "debian-ostree-%s-ostree.%s.tar",
  "sha256": "%s",
  "size": 1020
}
`, id1, arch, hexOf("ostree "+id1)))

	r := cosa(t, "-C", wd, "meta", "--build", id3, "--dump").wantOK(t)
	file := readFile(t, d.MetaPath(id3, arch))
	if r.stdout != file {
		t.Errorf("--dump:\n%s\nmeta.json:\n%s", r.stdout, file)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m["buildid"] != id3 {
		t.Errorf("--dump is not the build's JSON: %v %v", err, m["buildid"])
	}
}

func TestMetaSet(t *testing.T) {
	wd, d := standardBuilds(t)
	path := d.MetaPath(id4, arch)

	cosa(t, "-C", wd, "meta", "--set", "coreos-assembler.config-dirty=true").wantOK(t).wantStdout(t, "")
	cosa(t, "-C", wd, "meta", "--get", "coreos-assembler.config-dirty").wantOK(t).wantStdout(t, "true\n")
	if !strings.Contains(readFile(t, path), `"coreos-assembler.config-dirty": "true",`) {
		t.Errorf("meta.json after --set:\n%s", readFile(t, path))
	}
	// The other builds are untouched.
	if strings.Contains(readFile(t, d.MetaPath(id3, arch)), "config-dirty") {
		t.Error("--set changed another build")
	}

	before := readFile(t, path)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--set", "ostree-commit=nothex"}, 1, `error: --set ostree-commit: cannot set "ostree-commit": meta.json invalid at "/ostree-commit": `},
		// Nothing is written when a later --set fails.
		{[]string{"--set", "summary=fine", "--set", "ostree-timestamp=yesterday"}, 1, `error: --set ostree-timestamp: cannot set "ostree-timestamp": meta.json invalid at "/ostree-timestamp": `},
		{[]string{"--set", "summary"}, 2, `error: --set "summary": want KEY=VALUE` + "\n"},
		{[]string{"--set", "images.=x"}, 1, `error: --set images.: invalid meta key "images.": empty path segment` + "\n"},
		{[]string{"--build", id2, "--set", "summary=x"}, 1, "error: build " + id2 + " is not in " + d.Root + "\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cosa(t, append([]string{"-C", wd, "meta"}, tc.args...)...).wantCode(t, tc.code).wantStdout(t, "")
			if !strings.HasPrefix(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line starting %q", r.stderr, tc.want)
			}
			if got := readFile(t, path); got != before {
				t.Errorf("meta.json changed by a failed --set:\n%s", got)
			}
		})
	}
	if got := dirEntries(t, filepath.Dir(path)); !slices.Equal(got, []string{"meta.json"}) {
		t.Errorf("%s holds %v (temp files left?)", filepath.Dir(path), got)
	}
}

func TestMetaErrors(t *testing.T) {
	wd, d := standardBuilds(t)
	index := readFile(t, filepath.Join(d.Root, build.IndexFile))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--get", "nope"}, 1, `error: build ` + id4 + `: meta key "nope": no such key` + "\n"},
		{[]string{"--get", "images.qemu.path"}, 1, `error: build ` + id4 + `: meta key "images.qemu.path": no such key` + "\n"},
		{[]string{"--build", "../../etc", "--get", "buildid"}, 2, `error: invalid build id "../../etc": must match [A-Za-z0-9][A-Za-z0-9._+-]*` + "\n"},
		{[]string{"--build", "latest/../x", "--get", "buildid"}, 2, `error: invalid build id "latest/../x": must match [A-Za-z0-9][A-Za-z0-9._+-]*` + "\n"},
		{[]string{"--build", "12.20990101.dev.0", "--get", "buildid"}, 1, "error: build 12.20990101.dev.0 is not in " + d.Root + "\n"},
		{[]string{"--get", "buildid", "--dump"}, 2, "error: give only one of --get, --set or --dump (got --dump and --get)\n"},
		{[]string{"--get", "buildid", "--set", "summary=x"}, 2, "error: give only one of --get, --set or --dump (got --get and --set)\n"},
		{[]string{}, 2, "error: give one of --get, --set or --dump\n"},
		{[]string{"--arch", "../x", "--get", "buildid"}, 1, `error: invalid arch "../x": must match [a-z0-9][a-z0-9_]*` + "\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cosa(t, append([]string{"-C", wd, "meta"}, tc.args...)...).wantCode(t, tc.code).wantStdout(t, "").wantStderr(t, tc.want)
		})
	}
	if got := readFile(t, filepath.Join(d.Root, build.IndexFile)); got != index {
		t.Error("builds.json changed")
	}

	empty := initWorkdir(t)
	cosa(t, "-C", empty, "meta", "--get", "buildid").wantCode(t, 1).
		wantStderr(t, "error: there are no builds yet; run `cosa build`\n")
}

// tagRow is a line of `cosa tag list` for the fixture's 17-character ids.
func tagRow(name, target, created, desc string) string {
	return strings.TrimRight(fmt.Sprintf("%-11s%-19s%-22s%s", name, target, created, desc), " ") + "\n"
}

func TestTag(t *testing.T) {
	wd := initWorkdir(t)
	d := makeBuilds(t, wd, nil,
		fakeBuild{id: id1, onDisk: true, day: 20},
		fakeBuild{id: id2, onDisk: false, day: 21},
		fakeBuild{id: id4, onDisk: true, day: 23},
	)
	indexPath := filepath.Join(d.Root, build.IndexFile)
	readIndex := func() *build.BuildsIndex {
		t.Helper()
		idx, err := d.ReadIndex()
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	cosa(t, "-C", wd, "tag", "list").wantOK(t).wantStdout(t, "No tags.\n")

	start := time.Now().UTC().Truncate(time.Second)
	cosa(t, "-C", wd, "tag", "update", "--tag", "stable", "--build", id1).wantOK(t).wantStdout(t, "")
	cosa(t, "-C", wd, "tag", "update", "--tag", "candidate").wantOK(t).wantStdout(t, "") // latest
	cosa(t, "-C", wd, "tag", "update", "--tag", "archived", "--build", id2, "--description", "gone from disk").wantOK(t)
	idx := readIndex()
	if len(idx.Tags) != 3 {
		t.Fatalf("tags = %+v", idx.Tags)
	}
	for _, tag := range idx.Tags {
		created, err := time.Parse(time.RFC3339, tag.Created)
		if err != nil || created.Before(start) || created.After(time.Now()) {
			t.Errorf("tag %s created %q (%v)", tag.Name, tag.Created, err)
		}
	}
	created := func(i int) string { return idx.Tags[i].Created }
	cosa(t, "-C", wd, "tag", "list").wantOK(t).wantStdout(t,
		tagRow("TAG", "BUILD", "CREATED", "DESCRIPTION")+
			tagRow("stable", id1, created(0), "-")+
			tagRow("candidate", id4, created(1), "-")+
			tagRow("archived", id2, created(2), "gone from disk"))
	cosa(t, "-C", wd, "list").wantOK(t)
	if got := readIndex().TagsOf(id4); !slices.Equal(got, []string{"candidate"}) {
		t.Errorf("tags of %s = %v", id4, got)
	}

	// Moving a tag keeps its description unless a new one is given.
	cosa(t, "-C", wd, "tag", "update", "--tag", "archived", "--build", id4).wantOK(t)
	if tg := readIndex().Tags[2]; tg.Target != id4 || tg.Description != "gone from disk" {
		t.Errorf("moved tag = %+v", tg)
	}

	// Failures leave builds.json alone.
	before := readFile(t, indexPath)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"update", "--tag", "stable", "--build", "12.20990101.dev.0"}, 1, "error: build 12.20990101.dev.0 is not in builds.json\n"},
		{[]string{"update", "--tag", "stable", "--build", "../../etc"}, 2, `error: invalid build id "../../etc": must match [A-Za-z0-9][A-Za-z0-9._+-]*` + "\n"},
		{[]string{"update", "--tag", "no/slash", "--build", id1}, 2, `error: invalid tag name "no/slash": must match [A-Za-z0-9][A-Za-z0-9._+-]*` + "\n"},
		{[]string{"update", "--build", id1}, 2, "error: --tag is required\n"},
		{[]string{"delete", "--tag", "nope"}, 1, "error: no tag named \"nope\"\n"},
		{[]string{"delete"}, 2, "error: --tag is required\n"},
		{[]string{"list", "extra"}, 2, "error: cosa tag list takes no arguments, got \"extra\"; options are flags, see 'cosa tag list --help'\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cosa(t, append([]string{"-C", wd, "tag"}, tc.args...)...).wantCode(t, tc.code).wantStdout(t, "").wantStderr(t, tc.want)
			if readFile(t, indexPath) != before {
				t.Error("builds.json changed")
			}
		})
	}

	cosa(t, "-C", wd, "tag", "delete", "--tag", "stable").wantOK(t).wantStdout(t, "")
	cosa(t, "-C", wd, "tag", "delete", "--tag", "candidate").wantOK(t)
	cosa(t, "-C", wd, "tag", "delete", "--tag", "archived").wantOK(t)
	cosa(t, "-C", wd, "tag", "list").wantOK(t).wantStdout(t, "No tags.\n")
	cosa(t, "-C", wd, "tag", "delete", "--tag", "stable").wantCode(t, 1).wantStderr(t, "error: no tag named \"stable\"\n")
	if got := readIndex().IDs(); !slices.Equal(got, []string{id4, id2, id1}) {
		t.Errorf("builds = %v", got)
	}
}

// pruneFixture is a workdir with an OSTree repo holding a ref per on-disk
// build. Oldest first: pA, pB (tagged stable), pC (not on disk), pD, pE.
const (
	pA = "12.20261118.dev.0"
	pB = "12.20261119.dev.0"
	pC = "12.20261120.dev.0"
	pD = "12.20261121.dev.0"
	pE = "12.20261122.dev.0"
)

func buildRef(id string) string { return "cosa/builds/" + id + "/" + arch }

func pruneFixture(t *testing.T) (string, *build.Dir, string) {
	t.Helper()
	needTool(t, "ostree")
	wd := initWorkdir(t)
	d := makeBuilds(t, wd, map[string]string{"stable": pB},
		fakeBuild{id: pA, onDisk: true, day: 18},
		fakeBuild{id: pB, onDisk: true, day: 19},
		fakeBuild{id: pC, onDisk: false, day: 20},
		fakeBuild{id: pD, onDisk: true, day: 21},
		fakeBuild{id: pE, onDisk: true, day: 22},
	)
	repo := filepath.Join(wd, "tmp", "repo")
	empty := t.TempDir()
	runTool(t, wd, "ostree", "--repo="+repo, "init", "--mode=bare-user")
	for _, id := range []string{pA, pB, pD, pE} {
		runTool(t, wd, "ostree", "--repo="+repo, "commit", "--fsync=false", "--branch="+buildRef(id), "--tree=dir="+empty, "--subject="+id)
	}
	return wd, d, repo
}

func refs(t *testing.T, repo string) []string {
	t.Helper()
	out := strings.Fields(runTool(t, "/", "ostree", "--repo="+repo, "refs"))
	slices.Sort(out)
	return out
}

func TestPruneDryRun(t *testing.T) {
	wd, d, repo := pruneFixture(t)
	builds, refsBefore := snapshot(t, d.Root), refs(t, repo)
	cosa(t, "-C", wd, "prune", "--keep-last-n", "1", "--dry-run").wantOK(t).
		wantStdout(t, "Would prune "+pD+", "+pA+"; keeping "+pE+", "+pC+", "+pB+"\n")
	wantUnchanged(t, "builds/ after --dry-run", builds, snapshot(t, d.Root))
	if got := refs(t, repo); !slices.Equal(got, refsBefore) {
		t.Errorf("refs after --dry-run: %v", got)
	}
	cosa(t, "-C", wd, "prune", "--keep-last-n", "10").wantOK(t).
		wantStdout(t, "Nothing to prune; keeping "+strings.Join([]string{pE, pD, pC, pB, pA}, ", ")+"\n")
	wantUnchanged(t, "builds/ after a prune with nothing to do", builds, snapshot(t, d.Root))
}

func TestPrune(t *testing.T) {
	wd, d, repo := pruneFixture(t)
	// latest is stale (someone pointed it at the oldest build): pruning
	// that build must repoint it rather than leave it dangling.
	if err := d.SetLatest(pA); err != nil {
		t.Fatal(err)
	}
	cosa(t, "-C", wd, "prune", "--keep-last-n", "2").wantOK(t).
		wantStdout(t, "Pruned "+pA+"; keeping "+pE+", "+pD+", "+pC+", "+pB+"\n")

	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.IDs(); !slices.Equal(got, []string{pE, pD, pC, pB}) {
		t.Errorf("builds.json = %v (the entry without a directory must stay)", got)
	}
	if got := idx.TagsOf(pB); !slices.Equal(got, []string{"stable"}) {
		t.Errorf("tags of %s = %v", pB, got)
	}
	var dirs []string
	for _, name := range dirEntries(t, d.Root) {
		if !strings.HasPrefix(name, ".") && name != build.IndexFile && name != build.LatestLink {
			dirs = append(dirs, name)
		}
	}
	if want := []string{pB, pD, pE}; !slices.Equal(dirs, want) {
		t.Errorf("build dirs = %v, want %v", dirs, want)
	}
	if latest, err := d.Latest(); latest != pE || err != nil {
		t.Errorf("latest = %q, %v; want %s", latest, err, pE)
	}
	if got, want := refs(t, repo), []string{buildRef(pB), buildRef(pD), buildRef(pE)}; !slices.Equal(got, want) {
		t.Errorf("refs = %v, want %v", got, want)
	}

	// Now keep only the newest: pD goes, the tagged pB stays.
	cosa(t, "-C", wd, "prune", "--keep-last-n", "1").wantOK(t).
		wantStdout(t, "Pruned "+pD+"; keeping "+pE+", "+pC+", "+pB+"\n")
	if got, want := refs(t, repo), []string{buildRef(pB), buildRef(pE)}; !slices.Equal(got, want) {
		t.Errorf("refs = %v, want %v", got, want)
	}
	cosa(t, "-C", wd, "list").wantOK(t)
}

func TestPruneExplicitBuild(t *testing.T) {
	wd, d, repo := pruneFixture(t)
	builds := snapshot(t, d.Root)
	cosa(t, "-C", wd, "prune", "--build", pB).wantCode(t, 1).wantStdout(t, "").
		wantStderr(t, `error: build "`+pB+`" is tagged stable; delete the tag first`+"\n")
	cosa(t, "-C", wd, "prune", "--build", pE).wantCode(t, 1).
		wantStderr(t, `error: build "`+pE+`" is the latest build`+"\n")
	cosa(t, "-C", wd, "prune", "--build", pC).wantCode(t, 1).
		wantStderr(t, `error: build "`+pC+`" is not on disk`+"\n")
	wantUnchanged(t, "builds/ after refused prunes", builds, snapshot(t, d.Root))

	cosa(t, "-C", wd, "prune", "--build", pD).wantOK(t).
		wantStdout(t, "Pruned "+pD+"; keeping "+pE+", "+pC+", "+pB+", "+pA+"\n")
	if got, want := refs(t, repo), []string{buildRef(pA), buildRef(pB), buildRef(pE)}; !slices.Equal(got, want) {
		t.Errorf("refs = %v, want %v", got, want)
	}
}

func TestPruneBadKeep(t *testing.T) {
	wd, _ := standardBuilds(t)
	before := snapshot(t, wd)
	for _, n := range []string{"0", "-1"} {
		cosa(t, "-C", wd, "prune", "--keep-last-n", n).wantCode(t, 2).wantStdout(t, "").
			wantStderr(t, "error: --keep-last-n must be at least 1\n")
	}
	wantUnchanged(t, "workdir", before, snapshot(t, wd))
}

func TestLockTimeout(t *testing.T) {
	wd, d := standardBuilds(t)
	release, err := d.Lock(context.Background(), time.Second, "test holder", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	holder := fmt.Sprintf("held by pid %d: test holder", os.Getpid())
	want := "waiting for lock on builds/ (" + holder + ")...\n" +
		"error: timed out after 200ms waiting for lock on builds/ (" + holder + ")\n"
	before := snapshot(t, d.Root)

	for _, args := range [][]string{
		{"tag", "update", "--tag", "stable", "--build", id1},
		{"tag", "delete", "--tag", "stable"},
		{"meta", "--set", "summary=x"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cosa(t, append([]string{"-C", wd, "--lock-timeout", "200ms"}, args...)...).
				wantCode(t, 1).wantStdout(t, "").wantStderr(t, want)
		})
	}
	wantUnchanged(t, "builds/ while locked", before, snapshot(t, d.Root))

	// Readers do not need the lock.
	cosa(t, "-C", wd, "--lock-timeout", "200ms", "list").wantOK(t)
	cosa(t, "-C", wd, "--lock-timeout", "200ms", "tag", "list").wantOK(t)
	cosa(t, "-C", wd, "--lock-timeout", "200ms", "meta", "--get", "buildid").wantOK(t).wantStdout(t, id4+"\n")

	release()
	cosa(t, "-C", wd, "--lock-timeout", "200ms", "tag", "update", "--tag", "stable", "--build", id1).wantOK(t)
}
