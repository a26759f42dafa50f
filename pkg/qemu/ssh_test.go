package qemu

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestNewSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	s, err := NewSSH(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s.Port <= 0 || s.Port > 65535 {
		t.Errorf("port %d", s.Port)
	}
	if _, err := os.Stat(s.Key.Private); err != nil {
		t.Errorf("private key: %v", err)
	}
	if !strings.HasPrefix(s.Key.Public, "ssh-ed25519 ") {
		t.Errorf("public key %q", s.Key.Public)
	}
	args := strings.Join(s.Args(), " ")
	if !strings.Contains(args, "-i "+s.Key.Private) || !strings.Contains(args, "-p "+strconv.Itoa(s.Port)) {
		t.Errorf("ssh args %q do not use the key and port", args)
	}
}
