package compose

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/intree"
)

// Reusing the initramfs. dracut was 14 s of a rebuild on 2 idle cores
// (40 s busy), and an overlay change rarely touches anything it reads. It
// runs again unless every input it could see is provably the same as when
// the cached image was made:
//
//   - the exact dracut command, its environment and the kernel version
//     (initramfsFormat is bumped when cosa calls dracut differently);
//   - the base tree: the same base cache entry, named by its key (the
//     locked packages and mmdebstrap's options) and by the instance token
//     written when that entry was stored, so a base made again by a
//     non-reproducible mmdebstrap run never matches an image made from the
//     old one. Everything packages put in the tree is covered by this;
//   - everything the build changed on top of the base before dracut runs
//     (overlays, units, hostname, users, postprocess scripts, apt
//     sources): found by ctime, which every change to an inode sets to the
//     current time and which nothing in user space can set back, so every
//     file, directory and symlink with a ctime after the base was in place
//     is in the set. For each of them the key holds its path, type, mode,
//     owner and symlink target, and for a directory its list of entries (so
//     a file added or removed anywhere counts, as dracut's globs and
//     existence checks would see it). A file's content is in the key when
//     dracut may read it: it is in the cached image (dracut copied it), or
//     it lies under a path whose content dracut reads to decide what to do
//     (contentZones: all of /etc, dracut's own modules and config, kernel
//     modules and firmware, udev, systemd units, the dynamic linker's
//     files, binaries and libraries).
//
// What is left out is the content of a file that the image does not hold
// and that lies outside those zones, e.g. /usr/lib/systemd/network/*.network
// when no network module is in the initramfs: dracut's modules read such
// files only to copy them, so if they had been read they would be in the
// image. COSA_NO_SKIP=1 turns reuse off, to compare against a full run.

// initramfsFormat is part of every key: bump it when cosa runs dracut
// differently or the key's meaning changes.
const initramfsFormat = "cosa-initramfs-2"

// contentZones are tree paths (relative, no leading slash) whose files
// dracut may read the content of without copying them into the image.
var contentZones = []string{
	"etc",
	"usr/lib/dracut", "usr/share/dracut",
	"usr/lib/modules", "usr/lib/firmware", "usr/lib/modprobe.d", "usr/lib/modules-load.d",
	"usr/lib/udev", "usr/lib/systemd/system", "usr/lib/systemd/system-generators",
	"usr/lib/systemd/system.conf.d", "usr/lib/systemd/journald.conf.d",
	"usr/lib/ostree", "usr/lib/os-release", "usr/lib/sysctl.d", "usr/lib/tmpfiles.d",
	"usr/lib/sysusers.d", "usr/lib/kernel",
	"usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/libexec",
}

// inContentZone reports whether rel is one of contentZones or below one.
func inContentZone(rel string) bool {
	for _, z := range contentZones {
		if rel == z || strings.HasPrefix(rel, z+"/") {
			return true
		}
	}
	return false
}

// dracutArgv is how Compose runs dracut for kernel version kver.
func dracutArgv(kver string) []string {
	// Uncompressed: compressInitramfs gzips it (level 1, as dracut's
	// gzip -n -1 did: dracut's default -9 took 60 s instead of 14 s on 2
	// cores for a 39 MB instead of a 44 MB image, measured).
	// TMPDIR=/run: dracut stages the image's 1,500 files (130 MB) in the
	// sandbox's tmpfs, not in the tree's /var/tmp. On an ext4 without a
	// journal, inodes freed in the last minute (six while their table
	// block is dirty) are skipped one by one at every later allocation in
	// their group, and the commit right after dracut allocates 3,000 of
	// them: 1.5 s -> 1.1 s, measured. The image is the same byte for byte.
	return []string{"env", "TMPDIR=/run", "dracut", "--force", "--quiet", "--no-hostonly", "--reproducible", "--add", "ostree",
		"--no-compress", initramfsPath(kver), kver}
}

// initramfsPath is where the image goes, seen from inside the tree.
func initramfsPath(kver string) string { return "/usr/lib/modules/" + kver + "/initramfs.img" }

// deltaEntry is one path the build changed on top of the base.
type deltaEntry struct {
	Path   string // relative to the root
	Mode   fs.FileMode
	UID    uint32
	GID    uint32
	Size   int64
	Target string // symlink target
	List   string // a directory's entries, "name/type\n" sorted
	Sum    string // a regular file's sha256
}

// changeMark returns a time t such that every inode changed before the
// call has a ctime before t and every inode changed after it has a ctime
// at or after t. File systems stamp ctime from a clock that advances in
// ticks, so the mark is the ctime of a file touched until the tick
// changes (a few milliseconds): the files just written share the old tick.
func changeMark(dir string) (time.Time, error) {
	p := filepath.Join(dir, ".cosa-change-mark")
	defer os.Remove(p)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return time.Time{}, err
	}
	ctime := func(mode fs.FileMode) (time.Time, error) {
		if err := os.Chmod(p, mode); err != nil {
			return time.Time{}, err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return time.Time{}, err
		}
		st := info.Sys().(*syscall.Stat_t)
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec), nil
	}
	first, err := ctime(0o644)
	if err != nil {
		return time.Time{}, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		t, err := ctime(fs.FileMode(0o600 + 0o044*(i%2)))
		if err != nil {
			return time.Time{}, err
		}
		if t.After(first) {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("the ctime clock of %s did not advance", dir)
}

// scanDelta lists every path under root whose inode changed at or after
// since (a changeMark taken once the base was in place).
func scanDelta(root string, since time.Time) ([]deltaEntry, error) {
	cut := since
	var out []deltaEntry
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			rel = ""
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", path)
		}
		// dracut's own output is not one of its inputs.
		if d, f := filepath.Split(rel); f == "initramfs.img" && filepath.Dir(filepath.Clean(d)) == "usr/lib/modules" {
			return nil
		}
		if time.Unix(st.Ctim.Sec, st.Ctim.Nsec).Before(cut) {
			return nil
		}
		e := deltaEntry{Path: rel, Mode: info.Mode(), UID: st.Uid, GID: st.Gid, Size: info.Size()}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			if e.Target, err = os.Readlink(path); err != nil {
				return err
			}
		case d.IsDir():
			ents, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			var b strings.Builder
			for _, x := range ents { // sorted by name
				fmt.Fprintf(&b, "%s/%o\n", x.Name(), uint32(x.Type()))
			}
			e.List = b.String()
			e.Size = 0 // a directory's size depends on its history, not its entries
		case info.Mode().IsRegular():
			if e.Sum, _, err = fileutil.SHA256File(path); err != nil {
				return err
			}
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// initramfsKey is the key of an image made by dracut for kver from a tree
// whose base is baseID and whose changes on top of it are delta, given the
// image's file list (which decides whose content counts).
func initramfsKey(baseID, kver string, delta []deltaEntry, inImage map[string]bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nbase %s\nkernel %s\nargv %q\nenv %q\n", initramfsFormat, baseID, kver, dracutArgv(kver), sandboxEnv)
	for _, e := range delta {
		fmt.Fprintf(h, "%q %o %d %d", e.Path, uint32(e.Mode), e.UID, e.GID)
		switch {
		case e.Mode&fs.ModeSymlink != 0:
			fmt.Fprintf(h, " -> %q", e.Target)
		case e.Mode.IsDir():
			fmt.Fprintf(h, " dir %d\n%s", len(e.List), e.List)
		case e.Mode.IsRegular():
			if inImage[e.Path] || inContentZone(e.Path) {
				fmt.Fprintf(h, " file %d %s", e.Size, e.Sum)
			}
		}
		fmt.Fprintf(h, "\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// initramfsCacheDir holds, per kernel version, the last image dracut made
// (<kver>.img) and its record (<kver>.json).
func initramfsCacheDir(cacheDir string) string { return filepath.Join(cacheDir, "initramfs") }

// initramfsRecord is what is kept next to a cached image.
type initramfsRecord struct {
	Key    string      `json:"key"`
	Mode   fs.FileMode `json:"mode"`
	Sha256 string      `json:"sha256"`
	Files  []string    `json:"files"` // the image's paths, relative
}

func validKver(kver string) bool {
	return kver != "" && kver != "." && kver != ".." && !strings.ContainsAny(kver, "/\x00")
}

// lookupInitramfs returns the cached image for kver when its key matches
// the tree's inputs (delta on top of base baseID), checking the image
// against the sha256 recorded for it.
func lookupInitramfs(cacheDir, baseID, kver string, delta []deltaEntry) (string, *initramfsRecord, bool) {
	if baseID == "" || !validKver(kver) {
		return "", nil, false
	}
	dir := initramfsCacheDir(cacheDir)
	data, err := os.ReadFile(filepath.Join(dir, kver+".json"))
	if err != nil {
		return "", nil, false
	}
	var rec initramfsRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Key == "" {
		return "", nil, false
	}
	if initramfsKey(baseID, kver, delta, setOf(rec.Files)) != rec.Key {
		return "", nil, false
	}
	img := filepath.Join(dir, kver+".img")
	if sum, _, err := fileutil.SHA256File(img); err != nil || sum != rec.Sha256 {
		return "", nil, false
	}
	return img, &rec, true
}

// storeInitramfs keeps a copy of the image dracut just made from the tree
// (delta on top of base baseID), replacing the previous one for kver.
func storeInitramfs(ctx context.Context, cacheDir, baseID, kver, img string, delta []deltaEntry, files []string) error {
	if baseID == "" || !validKver(kver) {
		return nil
	}
	info, err := os.Lstat(img)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", img)
	}
	if files == nil {
		if files, err = initramfsFiles(img); err != nil {
			// An image we cannot list is never reused; the build goes on.
			return nil
		}
	}
	dir := initramfsCacheDir(cacheDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmpImg := filepath.Join(dir, ".tmp-"+kver+".img")
	os.Remove(tmpImg)
	if err := copyFile(ctx, img, tmpImg); err != nil {
		os.Remove(tmpImg)
		return err
	}
	sum, _, err := fileutil.SHA256File(tmpImg)
	if err != nil {
		os.Remove(tmpImg)
		return err
	}
	rec := initramfsRecord{Key: initramfsKey(baseID, kver, delta, setOf(files)), Mode: info.Mode().Perm(), Sha256: sum, Files: files}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// The record goes first so that a crash between the two renames leaves
	// a record whose sha256 the old image fails: no false reuse.
	os.Remove(filepath.Join(dir, kver+".json"))
	if err := os.Rename(tmpImg, filepath.Join(dir, kver+".img")); err != nil {
		return err
	}
	return fileutil.WriteFileAtomic(filepath.Join(dir, kver+".json"), data, 0o644)
}

// copyFile copies the file src to dst as cp -a does.
func copyFile(ctx context.Context, src, dst string) error {
	return hostcmd.Run(ctx, "cp", "-a", "--reflink=auto", "--no-target-directory", src, dst)
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// initramfsFiles lists the paths in an initramfs: newc cpio archives,
// uncompressed (early microcode) and then gzip-compressed, as dracut
// writes them with --compress=gzip.
func initramfsFiles(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var names []string
	for {
		magic, err := br.Peek(6)
		if err == io.EOF || (err != nil && len(magic) == 0) {
			break
		}
		switch {
		case bytes.Equal(magic, []byte("070701")) || bytes.Equal(magic, []byte("070702")):
			n, err := cpioNames(br)
			if err != nil {
				return nil, err
			}
			names = append(names, n...)
			skipZeros(br)
		case magic[0] == 0x1f && magic[1] == 0x8b:
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, err
			}
			zb := bufio.NewReaderSize(zr, 1<<20)
			for {
				if _, err := zb.Peek(6); err != nil {
					break
				}
				n, err := cpioNames(zb)
				if err != nil {
					return nil, err
				}
				names = append(names, n...)
				skipZeros(zb)
			}
			sort.Strings(names)
			return names, nil
		default:
			return nil, fmt.Errorf("%s: unknown data in the initramfs", path)
		}
	}
	sort.Strings(names)
	return names, nil
}

// cpioNames reads one newc archive up to its trailer and returns its paths.
func cpioNames(r *bufio.Reader) ([]string, error) {
	var names []string
	var off int64
	hdr := make([]byte, 110)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		if m := string(hdr[:6]); m != "070701" && m != "070702" {
			return nil, fmt.Errorf("cpio: bad magic %q", m)
		}
		field := func(i int) (int64, error) {
			return strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
		}
		fsize, err1 := field(6)
		nsize, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil || nsize < 1 || nsize > 4096 || fsize < 0 {
			return nil, fmt.Errorf("cpio: bad header")
		}
		name := make([]byte, nsize)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, err
		}
		off += 110 + nsize
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := r.Discard(int(pad)); err != nil {
				return nil, err
			}
			off += pad
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return names, nil
		}
		if _, err := r.Discard(int(fsize)); err != nil {
			return nil, err
		}
		off += fsize
		if pad := (4 - off%4) % 4; pad > 0 {
			if _, err := r.Discard(int(pad)); err != nil {
				return nil, err
			}
			off += pad
		}
		n = strings.TrimPrefix(strings.TrimPrefix(n, "./"), "/")
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
}

// compressInitramfs gzips the image dracut left uncompressed (it runs
// with --no-compress) at initramfsPath(kver) in root, and returns the
// paths in it for the initramfs cache. dracut's own gzip -1 ran on one
// core inside the sandbox (0.8 s for the default 129 MB cpio), and the
// cache then read the paths back by decompressing the image (0.6 s);
// here the cpio is listed as it is and compressed on every core
// (compress.CompressStream's parallel gzip at level 1, deterministic
// whatever the core count). Leading archives holding only kernel/ entries
// (early microcode, ACPI tables) stay uncompressed, where the kernel
// looks for them, as dracut leaves them.
//
// The tree is not trusted: the image is opened and replaced through an
// os.Root, and replaced with the owner and mode dracut gave it.
func compressInitramfs(ctx context.Context, root, kver string) ([]string, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	name := strings.TrimPrefix(initramfsPath(kver), "/")
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file")
	}
	var data []byte
	if err == nil {
		data, err = io.ReadAll(f)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("initramfs %s: %w", name, err)
	}
	st := fi.Sys().(*syscall.Stat_t)

	// The archives one after the other, each padded with zeros; split is
	// where the first one with more than kernel/ entries starts.
	var names []string
	split := -1
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, 1<<20)
	for {
		m, _ := br.Peek(6)
		if len(m) == 0 {
			break
		}
		start := len(data) - rd.Len() - br.Buffered()
		if string(m) != "070701" && string(m) != "070702" {
			return nil, fmt.Errorf("initramfs %s: not an uncompressed cpio archive at byte %d", name, start)
		}
		n, err := cpioNames(br)
		if err != nil {
			return nil, fmt.Errorf("initramfs %s: %w", name, err)
		}
		if split < 0 && !allUnder(n, "kernel") {
			split = start
		}
		names = append(names, n...)
		skipZeros(br)
	}
	if split < 0 {
		split = len(data)
	}
	var out bytes.Buffer
	out.Grow(split + (len(data)-split)/2)
	out.Write(data[:split])
	if split < len(data) {
		if err := compress.CompressStream(ctx, compress.Gzip, &out, bytes.NewReader(data[split:]), compress.StreamOptions{Fast: true}); err != nil {
			return nil, fmt.Errorf("initramfs %s: %w", name, err)
		}
	}
	if err := intree.ReplaceFile(r, name, out.Bytes(), fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("initramfs %s: %w", name, intree.Explain(err))
	}
	if err := r.Lchown(name, int(st.Uid), int(st.Gid)); err != nil {
		return nil, fmt.Errorf("initramfs %s: %w", name, err)
	}
	sort.Strings(names)
	return names, nil
}

// skipZeros skips the zeros archives are padded with up to the next one.
func skipZeros(br *bufio.Reader) {
	for {
		b, err := br.Peek(1)
		if err != nil || b[0] != 0 {
			return
		}
		br.ReadByte()
	}
}

// allUnder reports whether names is not empty and all of it is dir or
// under it.
func allUnder(names []string, dir string) bool {
	for _, n := range names {
		if n != dir && !strings.HasPrefix(n, dir+"/") {
			return false
		}
	}
	return len(names) > 0
}
