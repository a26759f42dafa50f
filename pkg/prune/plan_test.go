package prune

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

// testIndex lists b5 (newest) .. b1, with "stable" on b2.
func testIndex(t *testing.T) *build.BuildsIndex {
	idx := build.NewIndex()
	for _, id := range []string{"b1", "b2", "b3", "b4", "b5"} {
		idx.Insert(id, "x86_64")
	}
	if err := idx.SetTag("stable", "b2", "", time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	return idx
}

func allOnDiskExcept(missing ...string) func(string) bool {
	return func(id string) bool { return !slices.Contains(missing, id) }
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       Options
		missing    []string
		tagB4      bool
		wantRemove []string
		wantKeep   []string
		wantErr    string
	}{
		{name: "keep 2; tagged old build kept", opts: Options{KeepLastN: 2},
			wantRemove: []string{"b3", "b1"}, wantKeep: []string{"b5", "b4", "b2"}},
		{name: "keep more than exist", opts: Options{KeepLastN: 10},
			wantKeep: []string{"b5", "b4", "b3", "b2", "b1"}},
		{name: "tagged build inside the window counts toward N", opts: Options{KeepLastN: 2}, tagB4: true,
			wantRemove: []string{"b3", "b1"}, wantKeep: []string{"b5", "b4", "b2"}},
		{name: "missing on disk is left alone and not counted", opts: Options{KeepLastN: 2}, missing: []string{"b4", "b1"},
			wantRemove: nil, wantKeep: []string{"b5", "b4", "b3", "b2", "b1"}},
		{name: "missing newest", opts: Options{KeepLastN: 1}, missing: []string{"b5"},
			wantRemove: []string{"b3", "b1"}, wantKeep: []string{"b5", "b4", "b2"}},
		{name: "dry run plans the same", opts: Options{KeepLastN: 2, DryRun: true},
			wantRemove: []string{"b3", "b1"}, wantKeep: []string{"b5", "b4", "b2"}},
		{name: "keep 0 refused", opts: Options{KeepLastN: 0}, wantErr: "at least 1"},
		{name: "explicit", opts: Options{Builds: []string{"b1", "b3", "b1"}},
			wantRemove: []string{"b3", "b1"}, wantKeep: []string{"b5", "b4", "b2"}},
		{name: "explicit unknown", opts: Options{Builds: []string{"b9"}}, wantErr: `"b9" is not in builds.json`},
		{name: "explicit tagged", opts: Options{Builds: []string{"b2"}}, wantErr: `"b2" is tagged stable`},
		{name: "explicit latest", opts: Options{Builds: []string{"b5"}}, wantErr: `"b5" is the latest build`},
		{name: "explicit latest is newest on disk", opts: Options{Builds: []string{"b4"}}, missing: []string{"b5"}, wantErr: "latest"},
		{name: "explicit not on disk", opts: Options{Builds: []string{"b3"}}, missing: []string{"b3"}, wantErr: "not on disk"},
		{name: "explicit reports every problem", opts: Options{Builds: []string{"b9", "b2"}}, wantErr: "b9\" is not in builds.json\nbuild \"b2\" is tagged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := testIndex(t)
			if tc.tagB4 {
				idx.SetTag("next", "b4", "", time.Unix(0, 0))
			}
			remove, keep, err := Plan(idx, allOnDiskExcept(tc.missing...), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(remove, tc.wantRemove) || !slices.Equal(keep, tc.wantKeep) {
				t.Errorf("remove %v keep %v, want remove %v keep %v", remove, keep, tc.wantRemove, tc.wantKeep)
			}
		})
	}
}
