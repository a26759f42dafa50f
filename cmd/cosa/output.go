package main

import (
	"fmt"
	"io"
	"path"
	"sort"
	"sync"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/progress"
)

// Output rules (docs/events.md): under --json stdout holds only JSON event
// lines (pkg/events), the last one a "result" on success or an "error" on
// failure; whatever is meant for people goes to stderr. Without --json,
// progress is text on stderr and each command's summary text on stdout.

// events returns where this command's events go: JSON lines on stdout
// under --json, text on stderr otherwise. It is one sink per run, so that
// lines from concurrent emitters never interleave.
func (g *globals) events() events.Sink {
	g.sinkOnce.Do(func() {
		if g.JSON {
			g.sink = &events.JSONLines{W: g.Stdout}
		} else {
			g.sink = events.NewText(g.Stderr)
		}
	})
	return g.sink
}

// progress reports long steps to g.events().
func (g *globals) progress() *progress.Reporter { return progress.New(g.events()) }

// summaryOut is where packages write their one-line summaries ("Built
// ...", "Added ..."): stdout for people, stderr under --json, where the
// result event says the same for programs.
func (g *globals) summaryOut() io.Writer {
	if g.JSON {
		return g.Stderr
	}
	return g.Stdout
}

// note is a line of a command's summary that is not its result: stdout
// in text mode, an info event under --json.
func (g *globals) note(text string) {
	if g.JSON {
		g.events().Emit(events.Event{Type: events.Info, Message: text})
		return
	}
	fmt.Fprintln(g.Stdout, text)
}

// result ends a successful command: under --json the "result" event that
// carries what the command made, otherwise text (if any) on stdout.
func (g *globals) result(command string, payload any, text string) {
	if g.JSON {
		g.events().Emit(events.Event{Type: events.Result, Command: command, Result: payload})
		return
	}
	if text != "" {
		fmt.Fprintln(g.Stdout, text)
	}
}

// artifactRef is how results name a build's file. Path is relative to
// the workdir (builds/ID/ARCH/FILE), so a result stays true when the
// workdir is moved or seen through another mount.
type artifactRef struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Sha256 string `json:"sha256"`
	// Action is what compress or decompress did to it.
	Action string `json:"action,omitempty"`
}

func newArtifactRef(id, arch, name string, a build.Artifact) artifactRef {
	return artifactRef{Name: name, Path: path.Join("builds", id, arch, a.Path), Size: a.Size, Sha256: a.Sha256}
}

// artifactRefs lists a build's artifacts from its meta.json, by name.
func artifactRefs(id, arch string, m *build.Meta) []artifactRef {
	names := make([]string, 0, len(m.Images))
	for n := range m.Images {
		names = append(names, n)
	}
	sort.Strings(names)
	refs := make([]artifactRef, 0, len(names))
	for _, n := range names {
		refs = append(refs, newArtifactRef(id, arch, n, m.Images[n]))
	}
	return refs
}

// objectCollector passes events on to a sink and keeps the objects that
// moved (or would), for a command's result.
type objectCollector struct {
	next    events.Sink
	actions map[string]bool
	mu      sync.Mutex
	objects []string
}

func collectObjects(next events.Sink, actions ...string) *objectCollector {
	c := &objectCollector{next: next, actions: map[string]bool{}, objects: []string{}}
	for _, a := range actions {
		c.actions[a] = true
	}
	return c
}

// Emit is called from concurrent transfers; next serialises its own
// writes, and the list is guarded here.
func (c *objectCollector) Emit(e events.Event) {
	if (e.Type == events.Object || e.Type == events.Index) && c.actions[e.Action] {
		c.mu.Lock()
		c.objects = append(c.objects, e.Object)
		c.mu.Unlock()
	}
	c.next.Emit(e)
}

// emitError ends a failed command under --json: an "error" event naming
// the command, the message and the exit code, so a consumer reading only
// stdout learns how the run ended.
func (g *globals) emitError(command string, err error, code int) {
	g.events().Emit(events.Event{Type: events.Error, Command: command, Error: err.Error(), ExitCode: code})
}
