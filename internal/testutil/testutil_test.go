package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	WriteTree(t, root, map[string]string{
		"a/b.txt":  "hello",
		"a/run.sh": "#!/bin/sh\n",
		"link":     "symlink:a/b.txt",
		"empty":    "dir:",
		"pipe":     "fifo:",
	})
	if b, err := os.ReadFile(filepath.Join(root, "link")); err != nil || string(b) != "hello" {
		t.Errorf("link reads %q, %v", b, err)
	}
	checks := map[string]os.FileMode{"a/b.txt": 0o644, "a/run.sh": 0o755, "empty": os.ModeDir | 0o755, "pipe": os.ModeNamedPipe | 0o644}
	for name, want := range checks {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Mode()&^0o022 != want&^0o022 { // the umask may take group/other write
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestIsolateAWS(t *testing.T) {
	t.Setenv("AWS_PROFILE", "prod")
	IsolateAWS(t, "AKID", "", "eu-west-1")
	want := map[string]string{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
		"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"}
	for k, v := range want {
		if got := os.Getenv(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		if _, err := os.Stat(os.Getenv(k)); !os.IsNotExist(err) {
			t.Errorf("%s = %q exists (err %v): the host's files could leak in", k, os.Getenv(k), err)
		}
	}
}
