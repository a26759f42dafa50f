package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func fakeInfo(t *testing.T, bi *debug.BuildInfo) {
	old := readBuildInfo
	readBuildInfo = func() (*debug.BuildInfo, bool) { return bi, bi != nil }
	t.Cleanup(func() { readBuildInfo = old })
}

func TestGetFromCheckout(t *testing.T) {
	fakeInfo(t, &debug.BuildInfo{GoVersion: "go1.25.4", Main: debug.Module{Path: "github.com/cosa-build/cosa", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}})
	i := Get()
	if want := "cosa (devel) 0123456789ab+dirty 2026-11-30T10:00:00Z go1.25.4"; i.String() != want {
		t.Errorf("String() = %q, want %q", i.String(), want)
	}
	if !strings.Contains(i.Text(), "0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)") {
		t.Errorf("Text():\n%s", i.Text())
	}
	g := i.MetaGit()
	if g == nil || g.Commit != "0123456789abcdef0123456789abcdef01234567" || g.Dirty != "true" || g.Origin != "https://github.com/cosa-build/cosa" {
		t.Errorf("MetaGit() = %+v", g)
	}
}

func TestGetRelease(t *testing.T) {
	fakeInfo(t, &debug.BuildInfo{GoVersion: "go1.25.4", Main: debug.Module{Path: "github.com/cosa-build/cosa", Version: "v1.4.0"}})
	i := Get()
	if i.String() != "cosa v1.4.0 go1.25.4" {
		t.Errorf("String() = %q", i.String())
	}
	if g := i.MetaGit(); g == nil || g.Commit != "v1.4.0" || g.Dirty != "" {
		t.Errorf("MetaGit() = %+v", g)
	}
}

func TestGetNothingKnown(t *testing.T) {
	fakeInfo(t, nil)
	i := Get()
	if i.Version != "(devel)" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Errorf("Get() = %+v", i)
	}
	if g := i.MetaGit(); g != nil {
		t.Errorf("MetaGit() = %+v, want nil when nothing is known", g)
	}
	if !strings.Contains(i.Text(), "revision:  unknown") {
		t.Errorf("Text():\n%s", i.Text())
	}
}
