package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// StageImpl is a stage type: its options struct, decoded strictly from the
// manifest, validated, then run against the pipeline's tree.
type StageImpl interface {
	// Validate checks the options without touching the system.
	Validate() error
	// Inputs names the inputs the stage needs (usually none).
	Inputs() []string
	// Run changes env.Tree in place.
	Run(ctx context.Context, env *Env) error
}

// registry maps stage type names to constructors of empty option structs.
var registry = map[string]func() StageImpl{}

func register(name string, f func() StageImpl) { registry[name] = f }

// StageTypes lists the registered stage types, sorted.
func StageTypes() []string {
	var out []string
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func newStage(typ string) (StageImpl, error) {
	f, ok := registry[typ]
	if !ok {
		return nil, fmt.Errorf("unknown stage type %q", typ)
	}
	return f(), nil
}

func decodeOptions(raw json.RawMessage, st StageImpl) error {
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(st); err != nil {
			return err
		}
	}
	return st.Validate()
}

// Sources are run-time locations stages read from; not part of stage IDs.
type Sources struct {
	// OSTreeRepo is the repo ostree stages pull commits from.
	OSTreeRepo string `json:"ostree-repo,omitempty"`
}

// Env is what a running stage sees.
type Env struct {
	Tree    string            // the pipeline's working tree, changed in place
	Inputs  map[string]string // input name -> finished tree of that pipeline (read-only)
	Sources Sources
	Scratch string    // a private scratch dir, removed after the stage
	Log     io.Writer // the stage's output; its tail goes into errors
	// Reuse are finished trees in the store, newest first. A stage may
	// hard-link files out of them whose name proves their content (an
	// OSTree object is named by its checksum), or take bytes it has
	// checked (the qcow2 writer decompresses a cluster and compares it),
	// instead of making the same bytes again; it never changes them, and
	// its output must be what it would have made without them.
	Reuse []string
}

// Cmd runs a host tool, logging its output; the error carries the tail.
func (e *Env) Cmd(ctx context.Context, name string, args ...string) error {
	_, err := e.Output(ctx, name, args...)
	return err
}

// Output runs a host tool and returns its stdout; its stdout and stderr
// also go to the stage's log.
func (e *Env) Output(ctx context.Context, name string, args ...string) (string, error) {
	return e.output(ctx, nil, name, args...)
}

// CmdNoSync is Cmd for a tool whose own fsync or syncfs of what it wrote
// buys nothing: the store never syncs objects, the build makes them
// durable with one syncfs of the file system when it publishes. mke2fs
// fsyncs the whole image before it exits and `ostree admin deploy`
// syncfs's the file system it deployed to, which on a busy disk was
// seconds of waiting each (mkfs.ext4 -d of the default root: 10.9 s, 4.7
// s without). With libeatmydata installed (Debian: eatmydata) those calls
// return at once; without it the tool runs as Cmd would.
func (e *Env) CmdNoSync(ctx context.Context, name string, args ...string) error {
	var env []string
	if lib := eatmydataLib(); lib != "" {
		env = []string{"LD_PRELOAD=" + lib}
	}
	_, err := e.output(ctx, env, name, args...)
	return err
}

func (e *Env) output(ctx context.Context, env []string, name string, args ...string) (string, error) {
	fmt.Fprintf(e.Log, "+ %s%s %s\n", strings.Join(append(env, ""), " "), name, strings.Join(args, " "))
	c := hostcmd.Command(name, args...)
	c.Echo = e.Log
	c.Env = env
	return c.Output(ctx)
}

// eatmydataLib is the path of libeatmydata, "" when it is not installed.
var eatmydataLib = sync.OnceValue(func() string {
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libeatmydata.so.1", "/usr/lib/aarch64-linux-gnu/libeatmydata.so.1",
		"/usr/lib64/libeatmydata.so.1", "/usr/lib/libeatmydata.so.1"} {
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			return p
		}
	}
	return ""
})
