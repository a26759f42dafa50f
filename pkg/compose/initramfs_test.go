package compose

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cpioNewc is a newc archive of the named regular files, as dracut writes.
func cpioNewc(files map[string]string, order []string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry := func(name, data string, mode int) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		pad()
		b.WriteString(data)
		pad()
	}
	for _, n := range order {
		entry(n, files[n], 0o100644)
	}
	entry("TRAILER!!!", "", 0)
	return b.Bytes()
}

// fakeInitramfs writes an early (uncompressed) archive followed by a
// gzip-compressed one, the way dracut lays out an image with microcode.
func fakeInitramfs(t *testing.T, path string, main []string) {
	t.Helper()
	var out bytes.Buffer
	out.Write(cpioNewc(map[string]string{"kernel/x86/microcode/GenuineIntel.bin": "ucode"}, []string{"kernel/x86/microcode/GenuineIntel.bin"}))
	out.Write(make([]byte, 512-out.Len()%512))
	files := map[string]string{}
	for _, n := range main {
		files[n] = "content of " + n
	}
	zw := gzip.NewWriter(&out)
	zw.Write(cpioNewc(files, main))
	zw.Close()
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInitramfsFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "initramfs.img")
	fakeInitramfs(t, p, []string{"usr/bin/systemctl", "./etc/passwd", "usr/lib/modules/6.1/modules.dep"})
	got, err := initramfsFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etc/passwd", "kernel/x86/microcode/GenuineIntel.bin", "usr/bin/systemctl", "usr/lib/modules/6.1/modules.dep"}
	if !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}
	// A format we cannot list must fail, so that the image is never reused.
	os.WriteFile(p, []byte("\x28\xb5\x2f\xfdzstd data"), 0o644)
	if _, err := initramfsFiles(p); err == nil {
		t.Error("an unknown format was listed")
	}
}

func TestInitramfsKey(t *testing.T) {
	base := []deltaEntry{
		{Path: "etc", Mode: fs.ModeDir | 0o755, List: "hostname/0\npasswd/0\n"},
		{Path: "etc/hostname", Mode: 0o644, Size: 5, Sum: "h1"},
		{Path: "usr/lib/systemd/network", Mode: fs.ModeDir | 0o755, List: "80-cosa-dhcp.network/0\n"},
		{Path: "usr/lib/systemd/network/80-cosa-dhcp.network", Mode: 0o644, Size: 10, Sum: "n1"},
		{Path: "usr/share/doc/x", Mode: 0o644, Size: 3, Sum: "d1"},
		{Path: "usr/lib/systemd/system/x.service", Mode: 0o644, Size: 3, Sum: "u1"},
		{Path: "usr/bin/tool", Mode: fs.ModeSymlink | 0o777, Target: "other"},
		{Path: "usr/local/bin/copied", Mode: 0o755, Size: 3, Sum: "c1"},
	}
	image := map[string]bool{"usr/local/bin/copied": true}
	key := initramfsKey("base/1", "6.1", base, image)
	if key != initramfsKey("base/1", "6.1", slices.Clone(base), image) {
		t.Fatal("the key is not stable")
	}
	change := func(i int, f func(e *deltaEntry)) []deltaEntry {
		d := slices.Clone(base)
		f(&d[i])
		return d
	}
	same := map[string][]deltaEntry{
		// Content dracut neither copies nor reads: a .network file with no
		// network module in the image, documentation.
		"network file content": change(3, func(e *deltaEntry) { e.Sum, e.Size = "n2", 11 }),
		"doc content":          change(4, func(e *deltaEntry) { e.Sum = "d2" }),
	}
	for name, d := range same {
		if initramfsKey("base/1", "6.1", d, image) != key {
			t.Errorf("%s changed the key", name)
		}
	}
	differ := map[string]func() string{
		"base instance": func() string { return initramfsKey("base/2", "6.1", base, image) },
		"kernel":        func() string { return initramfsKey("base/1", "6.2", base, image) },
		"/etc content": func() string {
			return initramfsKey("base/1", "6.1", change(1, func(e *deltaEntry) { e.Sum = "h2" }), image)
		},
		"unit content": func() string {
			return initramfsKey("base/1", "6.1", change(5, func(e *deltaEntry) { e.Sum = "u2" }), image)
		},
		"content in the image": func() string {
			return initramfsKey("base/1", "6.1", change(7, func(e *deltaEntry) { e.Sum = "c2" }), image)
		},
		"a file added": func() string {
			return initramfsKey("base/1", "6.1", change(2, func(e *deltaEntry) { e.List += "90-new.network/0\n" }), image)
		},
		"mode of an unread file": func() string {
			return initramfsKey("base/1", "6.1", change(3, func(e *deltaEntry) { e.Mode = 0o755 }), image)
		},
		"owner of an unread file": func() string {
			return initramfsKey("base/1", "6.1", change(4, func(e *deltaEntry) { e.UID = 7 }), image)
		},
		"symlink target": func() string {
			return initramfsKey("base/1", "6.1", change(6, func(e *deltaEntry) { e.Target = "elsewhere" }), image)
		},
		"a path more in the delta": func() string {
			return initramfsKey("base/1", "6.1", append(slices.Clone(base), deltaEntry{Path: "var/x", Mode: 0o644}), image)
		},
		"the network file in the image": func() string {
			img := map[string]bool{"usr/local/bin/copied": true, "usr/lib/systemd/network/80-cosa-dhcp.network": true}
			return initramfsKey("base/1", "6.1", change(3, func(e *deltaEntry) { e.Sum = "n2" }), img)
		},
	}
	for name, k := range differ {
		if k() == key {
			t.Errorf("changing the %s keeps the key", name)
		}
	}
}

func TestScanDelta(t *testing.T) {
	root := t.TempDir()
	for p, data := range map[string]string{"etc/passwd": "root", "usr/lib/modules/6.1/initramfs.img": "img", "usr/lib/modules/6.1/modules.dep": "dep"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	// Nothing changed after a time in the future.
	d, err := scanDelta(root, time.Now().Add(time.Hour))
	if err != nil || len(d) != 0 {
		t.Fatalf("future: %v, %v", d, err)
	}
	d, err = scanDelta(root, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]deltaEntry{}
	for _, e := range d {
		got[e.Path] = e
	}
	if _, ok := got["usr/lib/modules/6.1/initramfs.img"]; ok {
		t.Error("dracut's output counted as its input")
	}
	if e := got["etc/passwd"]; e.Sum != "4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2" || e.Size != 4 {
		t.Errorf("etc/passwd: %+v", e)
	}
	if e := got["bin"]; e.Target != "usr/bin" {
		t.Errorf("bin: %+v", e)
	}
	if e := got["etc"]; e.List != "passwd/0\n" {
		t.Errorf("etc listing %q", e.List)
	}
	if e := got["usr/lib/modules/6.1"]; e.List != "initramfs.img/0\nmodules.dep/0\n" {
		t.Errorf("modules listing %q (the image's name is part of the listing, which is the same every build)", e.List)
	}
}

func TestInitramfsCacheRoundTrip(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	img := filepath.Join(t.TempDir(), "initramfs.img")
	fakeInitramfs(t, img, []string{"etc/passwd", "usr/bin/udevadm"})
	delta := []deltaEntry{
		{Path: "etc/passwd", Mode: 0o644, Size: 4, Sum: "p1"},
		{Path: "usr/share/doc/readme", Mode: 0o644, Size: 4, Sum: "r1"},
	}
	if _, _, ok := lookupInitramfs(cache, "base/1", "6.1", delta); ok {
		t.Fatal("empty cache hit")
	}
	if err := storeInitramfs(ctx, cache, "base/1", "6.1", img, delta, nil); err != nil {
		t.Fatal(err)
	}
	got, rec, ok := lookupInitramfs(cache, "base/1", "6.1", delta)
	if !ok || rec.Mode != 0o600 {
		t.Fatalf("stored image not found: %v %+v", ok, rec)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(got)
	if !bytes.Equal(a, b) {
		t.Error("the cached image differs from dracut's")
	}
	other := slices.Clone(delta)
	other[1].Sum = "r2"
	if _, _, ok := lookupInitramfs(cache, "base/1", "6.1", other); !ok {
		t.Error("a change to a file dracut does not read missed the cache")
	}
	other[0].Sum = "p2"
	if _, _, ok := lookupInitramfs(cache, "base/1", "6.1", other); ok {
		t.Error("a change to a file in the image hit the cache")
	}
	for _, c := range []struct{ base, kver string }{{"base/2", "6.1"}, {"", "6.1"}, {"base/1", "6.2"}, {"base/1", "../x"}} {
		if _, _, ok := lookupInitramfs(cache, c.base, c.kver, delta); ok {
			t.Errorf("base %q kernel %q hit the cache", c.base, c.kver)
		}
	}
	// A cached image that is not what was stored is never used.
	os.WriteFile(got, append(b, 0), 0o644)
	if _, _, ok := lookupInitramfs(cache, "base/1", "6.1", delta); ok {
		t.Error("a changed cached image was reused")
	}
}

// The mark separates what changed before it from what changed after it,
// even within one tick of the file system's clock.
func TestChangeMark(t *testing.T) {
	dir := t.TempDir()
	before := filepath.Join(dir, "before")
	after := filepath.Join(dir, "after")
	os.WriteFile(after, []byte("x"), 0o644)
	os.WriteFile(before, []byte("x"), 0o644)
	mark, err := changeMark(t.TempDir()) // as Compose: beside the tree, not in it
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(after, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := scanDelta(dir, mark)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range d {
		paths = append(paths, e.Path)
	}
	if !slices.Equal(paths, []string{"after"}) {
		t.Errorf("changed after the mark: %q, want only \"after\"", paths)
	}
}

// TestCompressInitramfs: dracut's uncompressed image (an early archive of
// microcode, then the main one) becomes the early archive as it was
// followed by the main one gzipped, with its mode kept; the paths come
// back as initramfsFiles lists them from the result. An image that is a
// symlink is refused, not followed.
func TestCompressInitramfs(t *testing.T) {
	ctx := context.Background()
	for _, early := range []bool{true, false} {
		root := t.TempDir()
		img := filepath.Join(root, initramfsPath("6.1"))
		if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
			t.Fatal(err)
		}
		var in bytes.Buffer
		if early {
			in.Write(cpioNewc(map[string]string{"kernel/x86/microcode/GenuineIntel.bin": "ucode"}, []string{"kernel", "kernel/x86/microcode/GenuineIntel.bin"}))
			in.Write(make([]byte, 512-in.Len()%512))
		}
		head := in.Len()
		main := []string{"usr/bin/systemctl", "./etc/passwd", "usr/lib/modules/6.1/modules.dep"}
		files := map[string]string{}
		for _, n := range main {
			files[n] = strings.Repeat("content of "+n, 1000)
		}
		in.Write(cpioNewc(files, main))
		if err := os.WriteFile(img, in.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		names, err := compressInitramfs(ctx, root, "6.1")
		if err != nil {
			t.Fatal(err)
		}
		listed, err := initramfsFiles(img)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names, listed) || !slices.Contains(names, "etc/passwd") || slices.Contains(names, "kernel") != early {
			t.Errorf("early %v: returned %q, the image lists %q", early, names, listed)
		}
		out, _ := os.ReadFile(img)
		if !bytes.Equal(out[:head], in.Bytes()[:head]) || out[head] != 0x1f || out[head+1] != 0x8b || len(out) >= in.Len() {
			t.Errorf("early %v: the image is not the early part as it was, then gzip (%d bytes from %d)", early, len(out), in.Len())
		}
		zr, err := gzip.NewReader(bytes.NewReader(out[head:]))
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, in.Bytes()[head:]) {
			t.Errorf("early %v: the gzipped part is not the main archive (%v)", early, err)
		}
		if fi, err := os.Stat(img); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("early %v: mode after %v (%v), want 0600", early, fi.Mode(), err)
		}
	}
	root := t.TempDir()
	img := filepath.Join(root, initramfsPath("6.1"))
	os.MkdirAll(filepath.Dir(img), 0o755)
	outside := filepath.Join(t.TempDir(), "host-file")
	os.WriteFile(outside, cpioNewc(map[string]string{"a": "b"}, []string{"a"}), 0o644)
	os.Symlink(outside, img)
	if _, err := compressInitramfs(ctx, root, "6.1"); err == nil {
		t.Error("an image that is a symlink was followed")
	}
	if b, _ := os.ReadFile(outside); b[0] != '0' {
		t.Error("the file outside the tree was changed")
	}
}
