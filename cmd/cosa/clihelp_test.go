package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cosa-build/cosa/internal/version"
	"github.com/cosa-build/cosa/pkg/events"
)

// allCommands is every command in the tree, hidden ones included.
func allCommands() []*cobra.Command {
	root := newRootCmd(&globals{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out = append(out, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

func TestEveryCommandHasExample(t *testing.T) {
	cmds := allCommands()
	if len(cmds) < 25 {
		t.Fatalf("only %d commands found", len(cmds))
	}
	for _, c := range cmds {
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no Example", c.CommandPath())
			continue
		}
		// An example runs the command it documents.
		if !strings.Contains(c.Example, c.CommandPath()) && !strings.Contains(c.Example, "cosa "+c.Name()) {
			t.Errorf("%s: example does not show the command:\n%s", c.CommandPath(), c.Example)
		}
	}
	// And it is what --help shows.
	r := cosa(t, "build", "--help").wantOK(t)
	if !strings.Contains(r.stdout, "Examples:\n  cosa build\n") {
		t.Errorf("build --help lacks its examples:\n%s", r.stdout)
	}
}

// pflag takes the first `backquoted` word of a usage string as the flag's
// value name ("--fetch cosa fetch"), and prints "(default X)" after the
// usage when the default is not the zero value: a usage string must do
// neither by accident.
func TestFlagUsages(t *testing.T) {
	n := 0
	for _, c := range allCommands() {
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				n++
				if strings.Contains(f.Usage, "`") {
					t.Errorf("%s --%s: backquote in usage %q", c.CommandPath(), f.Name, f.Usage)
				}
				shown := !slices.Contains([]string{"", "0", "false", "[]", "0s"}, f.DefValue)
				if shown && strings.Contains(strings.ToLower(f.Usage), "default") {
					t.Errorf("%s --%s: usage %q names a default and pflag adds (default %q)", c.CommandPath(), f.Name, f.Usage, f.DefValue)
				}
			})
		}
	}
	if n < 50 {
		t.Fatalf("only %d flags visited", n)
	}
	r := cosa(t, "build", "--help").wantOK(t)
	if !strings.Contains(r.stdout, "      --fetch            run cosa fetch first") {
		t.Errorf("build --help:\n%s", r.stdout)
	}
	r = cosa(t, "buildfetch", "--help").wantOK(t)
	line, _, _ := strings.Cut(r.stdout[strings.Index(r.stdout, "--build string"):], "\n")
	if strings.Count(line, "default") != 1 {
		t.Errorf("buildfetch --build shows more than one default:\n%s", r.stdout)
	}
}

// An S3 location is written one way in help: s3://BUCKET/PREFIX.
func TestS3LocationOneSpelling(t *testing.T) {
	for _, c := range allCommands() {
		var text []string
		text = append(text, c.Use, c.Short, c.Long, c.Example)
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { text = append(text, f.Usage) })
		for _, s := range text {
			for _, bad := range []string{"s3://B/P", "s3://BUCKET[/PREFIX]", " BUCKET/PREFIX"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s: %q written as %q, want s3://BUCKET/PREFIX", c.CommandPath(), s, bad)
				}
			}
		}
	}
}

func TestVersion(t *testing.T) {
	want := version.Get()
	cosa(t, "--version").wantOK(t).wantStdout(t, want.String()+"\n")
	r := cosa(t, "version").wantOK(t)
	for _, s := range []string{"cosa " + want.Version + "\n", "module:    github.com/cosa-build/cosa\n", "go:        " + want.GoVersion} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("cosa version lacks %q:\n%s", s, r.stdout)
		}
	}
	r = cosa(t, "--json", "version").wantOK(t)
	if err := events.ValidateLines([]byte(r.stdout)); err != nil {
		t.Errorf("--json version: %v\n%s", err, r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var ev struct {
		Event   string       `json:"event"`
		Command string       `json:"command"`
		Result  version.Info `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if ev.Event != "result" || ev.Command != "version" || ev.Result != want {
		t.Errorf("--json version ends with %+v, want a result carrying %+v", ev, want)
	}
	// "version" as a flag value or a subcommand's own --version flag does
	// not make a command print-only.
	for args, want := range map[string]bool{
		"--version": false, "version": false, "-C /w version": false, "--json version": false,
		"build --version 1.2": true, "-C version build": true, "build --help": false,
		"__complete build --build ": false, "gen-docs --man x": false, "build": true, "": false,
	} {
		if got := needsNamespace(strings.Fields(args)); got != want {
			t.Errorf("needsNamespace(%q) = %v, want %v", args, got, want)
		}
	}
}

func TestArgsHint(t *testing.T) {
	r := cosa(t, "build", "ostree").wantCode(t, 2)
	if !strings.Contains(r.stderr, `cosa build takes no arguments, got "ostree"`) || !strings.Contains(r.stderr, "--skip-image") {
		t.Errorf("stderr: %q", r.stderr)
	}
	r = cosa(t, "buildupload", "bucket/prefix").wantCode(t, 2)
	if !strings.Contains(r.stderr, "see 'cosa buildupload --help' for its subcommands") {
		t.Errorf("stderr: %q", r.stderr)
	}
}

func TestFlagGroups(t *testing.T) {
	wd := initWorkdir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"test", "--uefi", "--bios"}, "error: give only one of --uefi or --bios (got --bios and --uefi)\n"},
		{[]string{"run", "--uefi", "--bios"}, "error: give only one of --uefi or --bios (got --bios and --uefi)\n"},
		{[]string{"buildupload", "--all", "--build", "x", "s3", "b/p"}, "error: give only one of --build or --all (got --all and --build)\n"},
		{[]string{"prune", "--keep-last-n", "2", "--build", "x"}, "error: give only one of --keep-last-n or --build (got --build and --keep-last-n)\n"},
		{[]string{"buildextend-aws", "--upload", "--region", "us-east-1"}, "error: --upload, --region and --bucket must be given together (missing --bucket)\n"},
		{[]string{"meta"}, "error: give one of --get, --set or --dump\n"},
	} {
		before := snapshot(t, wd)
		cosa(t, append([]string{"-C", wd}, tc.args...)...).wantCode(t, 2).wantStderr(t, tc.want)
		wantUnchanged(t, strings.Join(tc.args, " "), before, snapshot(t, wd))
	}
	// Other errors pass through untouched.
	if err := clearFlagGroupError(os.ErrNotExist); err != os.ErrNotExist {
		t.Errorf("clearFlagGroupError changed %v", err)
	}
}

func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	man, compl := filepath.Join(dir, "man"), filepath.Join(dir, "completion")
	cosa(t, "gen-docs", "--man", man, "--completion", compl).wantOK(t)
	for _, c := range allCommands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		page := filepath.Join(man, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		data, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("no man page for %s: %v", c.CommandPath(), err)
			continue
		}
		if !bytes.Contains(data, []byte(".TH \"COSA\" \"1\"")) || !bytes.Contains(data, []byte("EXAMPLE")) {
			t.Errorf("%s: not a section-1 page with examples:\n%.400s", page, data)
		}
	}
	// Placeholders survive markdown (go-md2man drops <...> as HTML), and
	// cobra's indented shell snippets are not escaped.
	if data, _ := os.ReadFile(filepath.Join(man, "cosa-build.1")); !bytes.Contains(data, []byte(`instead of <prefix>\&.<YYYYMMDD>`)) {
		t.Errorf("cosa-build.1 lost the placeholders:\n%s", data)
	}
	if data, _ := os.ReadFile(filepath.Join(man, "cosa-completion-bash.1")); !bytes.Contains(data, []byte("\nsource <(cosa completion bash)\n")) {
		t.Errorf("cosa-completion-bash.1 escaped a code block:\n%s", data)
	}
	for name, want := range map[string]string{"cosa.bash": "__start_cosa", "_cosa": "#compdef cosa", "cosa.fish": "complete -c cosa"} {
		data, err := os.ReadFile(filepath.Join(compl, name))
		if err != nil || !bytes.Contains(data, []byte(want)) {
			t.Errorf("%s: %v, want it to contain %q", name, err, want)
		}
	}
	cosa(t, "gen-docs").wantCode(t, 2)
}

// --junit names a file to write after the boots: a path that cannot be
// written is refused before anything boots.
func TestTestJUnitBadPath(t *testing.T) {
	wd := initWorkdir(t)
	before := snapshot(t, wd)
	r := cosa(t, "-C", wd, "test", "--junit", filepath.Join(wd, "no", "such", "dir", "r.xml")).wantCode(t, 2)
	r.wantStderrContains(t, "--junit "+filepath.Join(wd, "no", "such", "dir", "r.xml")+": no directory ")
	wantUnchanged(t, "test --junit", before, snapshot(t, wd))
}

// --jobs below zero is refused before anything boots.
func TestTestNegativeJobs(t *testing.T) {
	wd := initWorkdir(t)
	before := snapshot(t, wd)
	cosa(t, "-C", wd, "test", "--jobs", "-1").wantCode(t, 2).wantStderrContains(t, "--jobs -1: want 1 or more")
	wantUnchanged(t, "test --jobs", before, snapshot(t, wd))
}
