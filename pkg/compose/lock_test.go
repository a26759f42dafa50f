package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// VerifyCache hashes the .debs concurrently but reports like a loop in
// name order would: the first bad package by name, whatever finished first.
func TestVerifyCache(t *testing.T) {
	dir := t.TempDir()
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	index := []byte("Package: a\n")
	write("Packages", index)
	l := &Lockfile{IndexSha256: sum(index), Packages: map[string]LockedPackage{}}
	for i := range 20 {
		name := fmt.Sprintf("pkg%02d", i)
		data := []byte(strings.Repeat(name, 1000))
		write(name+".deb", data)
		l.Packages[name] = LockedPackage{Version: "1", Filename: name + ".deb", Sha256: sum(data)}
	}
	if err := l.VerifyCache(dir); err != nil {
		t.Fatalf("intact cache: %v", err)
	}

	write("pkg17.deb", []byte("changed"))
	write("pkg05.deb", []byte("changed too"))
	for range 5 {
		err := l.VerifyCache(dir)
		if err == nil || !strings.Contains(err.Error(), "package pkg05: pkg05.deb has sha256") {
			t.Fatalf("two changed .debs: %v; want the error to name pkg05, the first by name", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "pkg02.deb")); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyCache(dir); err == nil || !strings.Contains(err.Error(), "package pkg02 1 is not in the cache") {
		t.Fatalf("missing .deb: %v", err)
	}
	write("Packages", []byte("other\n"))
	if err := l.VerifyCache(dir); err == nil || !strings.Contains(err.Error(), "Packages does not match the lock file") {
		t.Fatalf("changed index: %v", err)
	}
}
