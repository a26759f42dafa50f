package compose

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// The program prints what ldd prints, and exits as ldd exits, for every
// kind of file dracut-install may ask about; for the one case it takes
// (one file by path, regular, readable) it runs no shell: a BASH_ENV
// script, which bash runs as it starts the ldd script, marks every run
// that went through ldd.
func TestFastLddMatchesLdd(t *testing.T) {
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler (make deps installs gcc)")
	}
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		t.Skip("no ldd here")
	}
	prog, err := fastLddProg(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "bashenv")
	if err := os.WriteFile(marker, []byte("echo RAN-THE-LDD-SCRIPT >&2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	libc, _ := filepath.Glob("/usr/lib/*-linux-gnu/libc.so.6")
	sh, _ := filepath.EvalSymlinks("/bin/sh")
	addr := regexp.MustCompile(`0x[0-9a-f]+`)
	run := func(bin string, bashEnv bool, args ...string) (string, int) {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "BASH_ENV=")
		if bashEnv {
			c.Env = append(c.Env, "BASH_ENV="+marker)
		}
		out, err := c.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return addr.ReplaceAllString(string(out), "ADDR"), code
	}
	cases := []struct {
		args []string
		fast bool
	}{
		{[]string{sh}, true},     // a dynamic program
		{[]string{self}, true},   // a Go test binary
		{[]string{prog}, true},   // a static program: "not a dynamic executable"
		{[]string{script}, true}, // a script
		{[]string{ldd}, true},    // a bash script
		{[]string{dir}, false},   // a directory
		{[]string{filepath.Join(dir, "missing")}, false},
		{[]string{"ldd"}, false},      // a bare name
		{[]string{sh, script}, false}, // two files
		{[]string{"--version"}, false},
	}
	if len(libc) > 0 {
		cases = append(cases, struct {
			args []string
			fast bool
		}{[]string{libc[0]}, true})
	}
	for _, c := range cases {
		want, wantCode := run(ldd, false, c.args...)
		got, gotCode := run(prog, false, c.args...)
		if got != want || gotCode != wantCode {
			t.Errorf("%v: got exit %d\n%s\nldd: exit %d\n%s", c.args, gotCode, got, wantCode, want)
		}
		marked, _ := run(prog, true, c.args...)
		if ran := regexp.MustCompile("RAN-THE-LDD-SCRIPT").MatchString(marked); ran == c.fast {
			t.Errorf("%v: ran the ldd script %v, want %v", c.args, ran, !c.fast)
		}
	}
}
