// Package version says which cosa is running, from the build information
// the Go toolchain embeds in every binary, so that no release step has to
// stamp it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/cosa-build/cosa/pkg/build"
)

// Info is what the binary knows about how it was built.
type Info struct {
	Module    string `json:"module"`
	Version   string `json:"version"`                // module version, "(devel)" for a checkout build
	Revision  string `json:"vcs_revision,omitempty"` // git commit of the checkout, if built from one
	Time      string `json:"vcs_time,omitempty"`     // commit time
	Modified  bool   `json:"vcs_modified"`           // the checkout had uncommitted changes
	GoVersion string `json:"go_version"`
}

// readBuildInfo is replaced by tests.
var readBuildInfo = debug.ReadBuildInfo

// Get reads the running binary's build information.
func Get() Info {
	i := Info{Module: "github.com/cosa-build/cosa", Version: "(devel)", GoVersion: runtime.Version()}
	bi, ok := readBuildInfo()
	if !ok {
		return i
	}
	if bi.Main.Path != "" {
		i.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one-line form `cosa --version` prints, e.g.
// "cosa (devel) 1a2b3c4d5e6f+dirty 2026-11-30T10:00:00Z go1.25.1".
func (i Info) String() string {
	parts := []string{"cosa", i.Version}
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if i.Modified {
			rev += "+dirty"
		}
		parts = append(parts, rev)
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	return strings.Join(append(parts, i.GoVersion), " ")
}

// Text is the multi-line form `cosa version` prints.
func (i Info) Text() string {
	rev, t := i.Revision, i.Time
	if rev == "" {
		rev = "unknown (not built from a git checkout)"
	} else if i.Modified {
		rev += " (with uncommitted changes)"
	}
	if t == "" {
		t = "unknown"
	}
	return fmt.Sprintf("cosa %s\nmodule:    %s\nrevision:  %s\ncommitted: %s\ngo:        %s",
		i.Version, i.Module, rev, t, i.GoVersion)
}

// MetaGit is what meta.json records about the cosa that made a build, in
// the key coreos-assembler's schema has for the git of the tool's own
// source (coreos-assembler.container-image-git): the commit, or failing
// that a released module version, and where that source lives. Nil when
// neither is known (a binary built without VCS stamping, or a test).
func (i Info) MetaGit() *build.GitSource {
	commit := i.Revision
	if commit == "" && i.Version != "(devel)" && len(i.Version) >= 5 {
		commit = i.Version
	}
	if commit == "" {
		return nil
	}
	g := &build.GitSource{Commit: commit, Origin: "https://" + i.Module}
	if i.Revision != "" {
		g.Dirty = fmt.Sprint(i.Modified)
	}
	return g
}
