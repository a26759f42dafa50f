package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

// evil is text a bucket could put in builds.json or meta.json: a window
// title change, an 8-bit CSI, a screen clear, a carriage return that
// overwrites the line and a bidi override.
const evil = "\x1b]0;owned\x07 \u009b2J \x1b[2J\rok \u202eevil"

// wantTerminalSafe fails if out holds anything a terminal would act on.
func wantTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if termsafe.Text(out) != out {
		t.Errorf("%s prints terminal control characters: %q", what, out)
	}
}

func TestRemoteTextIsEscaped(t *testing.T) {
	wd, d := standardBuilds(t)

	// A tag merged from a remote builds.json: its name is checked, its
	// description and creation time are free text.
	path := filepath.Join(d.Root, build.IndexFile)
	var idx map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &idx); err != nil {
		t.Fatal(err)
	}
	for _, tag := range idx["tags"].([]any) {
		tag.(map[string]any)["description"] = evil
		tag.(map[string]any)["created"] = "\x1b[2J"
	}
	data, _ := json.Marshal(idx)
	os.WriteFile(path, data, 0o644)

	r := cosa(t, "-C", wd, "tag", "list").wantOK(t)
	wantTerminalSafe(t, "tag list", r.stdout)
	if !strings.Contains(r.stdout, `\x1b]0;owned\x07 \u009b2J \x1b[2J\x0dok \u202eevil`) {
		t.Errorf("tag list does not show the description escaped:\n%s", r.stdout)
	}

	// A fetched meta.json with free text in a typed field, and one with a
	// control character where the schema wants a timestamp.
	set := func(id, from, to string) {
		p := d.MetaPath(id, arch)
		s := readFile(t, p)
		if !strings.Contains(s, from) {
			t.Fatalf("%q not in %s", from, p)
		}
		os.WriteFile(p, []byte(strings.Replace(s, from, to, 1)), 0o644)
	}
	enc, _ := json.Marshal(evil)
	set(id3, `"name": "debian-ostree"`, `"name": "debian-ostree", "summary": `+string(enc))
	set(id4, `"coreos-assembler.build-timestamp": "2026-11-23T10:05:00Z"`, `"coreos-assembler.build-timestamp": "\u001b[2J"`)

	r = cosa(t, "-C", wd, "list").wantOK(t)
	wantTerminalSafe(t, "list", r.stdout)
	r = cosa(t, "-C", wd, "list", "--json").wantOK(t)
	wantTerminalSafe(t, "list --json", r.stdout)

	r = cosa(t, "-C", wd, "meta", "--build", id3, "--get", "summary").wantOK(t)
	wantTerminalSafe(t, "meta --get summary", r.stdout)
	if r.stdout != termsafe.String(evil)+"\n" {
		t.Errorf("meta --get summary = %q", r.stdout)
	}
	r = cosa(t, "-C", wd, "meta", "--build", id3, "--dump").wantOK(t)
	wantTerminalSafe(t, "meta --dump", r.stdout)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m["summary"] != evil {
		t.Errorf("meta --dump no longer decodes to the file's value: %v %q", err, m["summary"])
	}
	r = cosa(t, "-C", wd, "meta", "--build", id4, "--dump").wantOK(t)
	wantTerminalSafe(t, "meta --dump of an invalid meta.json", r.stdout)
	// The error names the bad value; quoted, since it is the file's text.
	r = cosa(t, "-C", wd, "meta", "--build", id4, "--get", "buildid").wantCode(t, 1).
		wantStderrContains(t, `meta.json invalid at "/coreos-assembler.build-timestamp"`)
	wantTerminalSafe(t, "the error", r.stderr)
}

// Error text from a server reaches the terminal only escaped: here an HTTP
// reason phrase, which Go's client passes on as the server sent it.
func TestServerErrorTextIsEscaped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 500 "+strings.NewReplacer("\r", "", "\u009b", "").Replace(evil)+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	wd := initWorkdir(t)
	r := cosa(t, "-C", wd, "buildfetch", "--url", "http://"+ln.Addr().String()+"/builds").wantCode(t, 1)
	if !strings.Contains(r.stderr, `\x1b]0;owned\x07`) {
		t.Errorf("stderr does not show the server's text escaped: %q", r.stderr)
	}
	wantTerminalSafe(t, "buildfetch error", r.stderr)
}
