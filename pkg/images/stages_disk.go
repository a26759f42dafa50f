package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/intree"
	"github.com/cosa-build/cosa/pkg/qcow2"
	"golang.org/x/sys/unix"
)

// Disk stages work on an image file inside the tree, with no loop devices
// and no mounts: each filesystem is written into the file at its
// partition's offset (mkfs.ext4 -d, mkfs.xfs -p, mkfs.vfat --offset plus
// mtools), so they run the same in a container or CI job as on a laptop.

func init() {
	register("org.cosa.truncate", func() StageImpl { return &Truncate{} })
	register("org.cosa.gpt", func() StageImpl { return &GPT{} })
	register("org.cosa.mkfs.ext4", func() StageImpl { return &MkfsTree{FSType: "ext4"} })
	register("org.cosa.mkfs.vfat", func() StageImpl { return &MkfsVfat{} })
	register("org.cosa.grub2.efi", func() StageImpl { return &GrubEFI{} })
	register("org.cosa.grub2.bios", func() StageImpl { return &GrubBIOS{} })
	register("org.cosa.qemu-img.convert", func() StageImpl { return &QemuImgConvert{} })
	register("org.cosa.qcow2", func() StageImpl { return &Qcow2Write{} })
}

// Partition type GUIDs (UEFI spec 2.10 table 5.7, Discoverable Partitions Spec).
const (
	GUIDBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	GUIDESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GUIDLinuxFS  = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	GUIDRootX86  = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
)

var (
	fileRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	guidRE  = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,16}$`)
)

func checkFile(field, name string) error {
	if !fileRE.MatchString(name) {
		return fmt.Errorf("%s: %q must be a plain file name", field, name)
	}
	return nil
}

func checkSector(s int) error {
	if s != 512 && s != 4096 {
		return fmt.Errorf("sector_size: %d must be 512 or 4096", s)
	}
	return nil
}

// Truncate creates a sparse file of Size bytes.
type Truncate struct {
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
}

func (s *Truncate) Validate() error {
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	if s.Size < 1<<30 || s.Size > 4<<40 || s.Size%(1<<20) != 0 {
		return fmt.Errorf("size: %d must be a whole number of MiB between 1 GiB and 4 TiB", s.Size)
	}
	return nil
}
func (s *Truncate) Inputs() []string { return nil }
func (s *Truncate) Run(ctx context.Context, e *Env) error {
	f, err := os.OpenFile(filepath.Join(e.Tree, s.Filename), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(s.Size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// GPTPartition is one partition; SizeMiB 0 means the rest of the disk.
type GPTPartition struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	SizeMiB int64  `json:"size_mib"`
}

// GPT writes a GUID partition table with the given logical sector size.
// Partitions start at 1 MiB and follow each other, so the byte layout is
// the same for 512- and 4096-byte sectors.
type GPT struct {
	Filename   string         `json:"filename"`
	SectorSize int            `json:"sector_size"`
	Partitions []GPTPartition `json:"partitions"`
}

func (s *GPT) Validate() error {
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	if err := checkSector(s.SectorSize); err != nil {
		return err
	}
	if len(s.Partitions) == 0 || len(s.Partitions) > 128 {
		return fmt.Errorf("partitions: need 1..128")
	}
	for i, p := range s.Partitions {
		if !labelRE.MatchString(p.Name) || !guidRE.MatchString(p.Type) {
			return fmt.Errorf("partitions[%d]: needs a name [A-Za-z0-9._-]{1,16} and a type GUID", i)
		}
		if p.SizeMiB < 0 || (p.SizeMiB == 0 && i != len(s.Partitions)-1) {
			return fmt.Errorf("partitions[%d].size_mib: only the last partition may take the rest (0)", i)
		}
	}
	return nil
}
func (s *GPT) Inputs() []string { return nil }
func (s *GPT) Run(ctx context.Context, e *Env) error {
	var script strings.Builder
	script.WriteString("label: gpt\n")
	for i, p := range s.Partitions {
		if i == 0 {
			script.WriteString("start=1MiB, ")
		}
		if p.SizeMiB > 0 {
			fmt.Fprintf(&script, "size=%dMiB, ", p.SizeMiB)
		}
		fmt.Fprintf(&script, "type=%s, name=\"%s\"\n", p.Type, p.Name)
	}
	layout := filepath.Join(e.Scratch, "layout.sfdisk")
	if err := os.WriteFile(layout, []byte(script.String()), 0o644); err != nil {
		return err
	}
	// util-linux 2.38's sfdisk cannot set the sector size of a plain file;
	// fdisk can (-b) and imports the same script with its I command.
	img := filepath.Join(e.Tree, s.Filename)
	cmd := fmt.Sprintf("printf 'I\\n%%s\\nw\\n' %s | fdisk -b %d %s", shellQuote(layout), s.SectorSize, shellQuote(img))
	return e.Cmd(ctx, "/bin/sh", "-c", cmd)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// PartitionExtent is where a partition lies, in bytes.
type PartitionExtent struct{ Start, Size int64 }

// Partitions reads the partition table of img with the given sector size.
func Partitions(ctx context.Context, e *Env, img string, sector int) ([]PartitionExtent, error) {
	out, err := e.Output(ctx, "fdisk", "-b", strconv.Itoa(sector), "-l", "-o", "Device,Start,Sectors", img)
	if err != nil {
		return nil, err
	}
	var parts []PartitionExtent
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || !strings.HasPrefix(f[0], img) {
			continue
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("fdisk: cannot parse %q", line)
		}
		parts = append(parts, PartitionExtent{start * int64(sector), n * int64(sector)})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%s has no partitions", img)
	}
	return parts, nil
}

func partition(ctx context.Context, e *Env, img string, sector, n int) (PartitionExtent, error) {
	parts, err := Partitions(ctx, e, img, sector)
	if err != nil {
		return PartitionExtent{}, err
	}
	if n < 1 || n > len(parts) {
		return PartitionExtent{}, fmt.Errorf("partition %d: the image has %d", n, len(parts))
	}
	return parts[n-1], nil
}

// MkfsTree makes an ext4 filesystem in a partition, filled from a
// directory of an input tree. Paths in Empty are left as empty directories
// (the root filesystem keeps /boot as a mount point).
type MkfsTree struct {
	FSType     string   `json:"-"`
	Filename   string   `json:"filename"`
	SectorSize int      `json:"sector_size"`
	Partition  int      `json:"partition"`
	Label      string   `json:"label"`
	Path       string   `json:"path"` // directory inside the "tree" input; "." = all
	Empty      []string `json:"empty,omitempty"`
	// UUID and HashSeed (mke2fs -U, -E hash_seed) make the filesystem's
	// metadata a function of its content: with random ones every group
	// descriptor, bitmap and inode table checksum differs from build to
	// build (metadata_csum is seeded from the UUID), so a rebuild's disk
	// shared 88% of its clusters with the last one instead of 98%, and
	// the qcow2 stage compresses again what differs.
	UUID     string `json:"uuid,omitempty"`
	HashSeed string `json:"hash_seed,omitempty"`
}

func (s *MkfsTree) Validate() error {
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	if err := checkSector(s.SectorSize); err != nil {
		return err
	}
	if s.Partition < 1 || s.Partition > 128 {
		return fmt.Errorf("partition: %d out of range 1..128", s.Partition)
	}
	if !labelRE.MatchString(s.Label) {
		return fmt.Errorf("label: %q is not a valid %s label", s.Label, s.FSType)
	}
	for _, u := range []string{s.UUID, s.HashSeed} {
		if u != "" && !guidRE.MatchString(u) {
			return fmt.Errorf("uuid/hash_seed: %q is not a UUID", u)
		}
	}
	for _, p := range append([]string{s.Path}, s.Empty...) {
		if p == "" || filepath.IsAbs(p) || strings.Contains(p, "..") {
			return fmt.Errorf("path %q must be relative and stay inside the tree", p)
		}
	}
	return nil
}
func (s *MkfsTree) Inputs() []string { return []string{"tree"} }
func (s *MkfsTree) Run(ctx context.Context, e *Env) error {
	img := filepath.Join(e.Tree, s.Filename)
	ext, err := partition(ctx, e, img, s.SectorSize, s.Partition)
	if err != nil {
		return err
	}
	if s.FSType != "ext4" {
		return fmt.Errorf("unknown filesystem %q", s.FSType)
	}
	// 4 KiB blocks always: mke2fs would pick 1 KiB for a small fs, which a
	// 4Kn disk cannot mount.
	ext4opts := fmt.Sprintf("offset=%d", ext.Start)
	if s.HashSeed != "" {
		ext4opts += ",hash_seed=" + s.HashSeed
	}
	mkfs := func(src string) []string {
		argv := []string{"mkfs.ext4", "-F", "-q", "-b", "4096", "-L", s.Label, "-d", src, "-E", ext4opts}
		if s.UUID != "" {
			argv = append(argv, "-U", s.UUID)
		}
		return append(argv, img, fmt.Sprintf("%dk", ext.Size/1024))
	}
	src := filepath.Join(e.Inputs["tree"], s.Path)
	if len(s.Empty) > 0 {
		staged := filepath.Join(e.Scratch, "fs")
		err := e.mkfsView(ctx, src, staged, s.Empty, mkfs(staged))
		if !errors.Is(err, errNoView) {
			if err == nil {
				fileutil.StartWriteback(img)
			}
			return err
		}
		// A hardlink copy leaves the input untouched; it cost 0.4 s
		// for the default root, and as much again to remove.
		os.RemoveAll(staged)
		if err := e.Cmd(ctx, "cp", "-al", src, staged); err != nil {
			return err
		}
		for _, p := range s.Empty {
			// Resolved inside the staged tree: a symlink at p is replaced,
			// one on the way to it refused, so nothing outside is removed.
			if err := intree.EmptyDirIn(staged, p); err != nil {
				return fmt.Errorf("empty %s: %w", p, err)
			}
		}
		src = staged
	}
	args := mkfs(src)
	err = e.CmdNoSync(ctx, args[0], args[1:]...)
	if err == nil {
		fileutil.StartWriteback(img)
	}
	return err
}

// errNoView is mkfsView saying it cannot make its view here.
var errNoView = errors.New("no view")

// mkfsView runs argv (an mkfs reading staged) with staged made a view of
// src in which each top-level name in empty is an empty directory: every
// other top-level directory of src is bind-mounted there, in a mount
// namespace of argv's own, files are hard-linked and symlinks copied.
// Nothing under src is copied or changed, and the mounts end with argv.
// It returns errNoView, having run nothing, where it cannot make the view
// (not root, no mount namespaces, entries of empty below the top level,
// special files at the top): the caller then copies instead.
func (e *Env) mkfsView(ctx context.Context, src, staged string, empty, argv []string) error {
	if os.Geteuid() != 0 {
		return errNoView
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return errNoView
	}
	emptied := map[string]bool{}
	for _, p := range empty {
		if strings.Contains(strings.Trim(p, "/"), "/") {
			return errNoView
		}
		emptied[strings.Trim(p, "/")] = true
	}
	top, err := os.Lstat(src)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := mkdirLike(staged, top); err != nil {
		return err
	}
	var binds []string
	for _, ent := range entries {
		from, to := filepath.Join(src, ent.Name()), filepath.Join(staged, ent.Name())
		fi, err := os.Lstat(from)
		if err != nil {
			return err
		}
		switch {
		case emptied[ent.Name()] && fi.IsDir():
			err = mkdirLike(to, fi)
		case emptied[ent.Name()]: // a symlink or file where a directory belongs: replaced
			err = os.Mkdir(to, 0o755)
		case fi.IsDir():
			// The mount point: the bind shows src's own directory there.
			err = os.Mkdir(to, 0o755)
			binds = append(binds, from, to)
		case fi.Mode().IsRegular():
			err = os.Link(from, to)
		case fi.Mode()&fs.ModeSymlink != 0:
			err = copySymlink(from, to, fi)
		default:
			return errNoView
		}
		if err != nil {
			return err
		}
	}
	for p := range emptied {
		if _, err := os.Lstat(filepath.Join(staged, p)); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(filepath.Join(staged, p), 0o755); err != nil {
				return err
			}
		}
	}
	if err := setTimesLike(staged, top); err != nil {
		return err
	}
	// Exit status 97: a mount failed, before argv ran.
	const script = `while [ "$1" != -- ]; do mount --bind -- "$1" "$2" || exit 97; shift 2; done; shift; exec "$@"`
	args := append(append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}, binds...), "--")
	err = e.CmdNoSync(ctx, "unshare", append(args, argv...)...)
	var he *hostcmd.Error
	if errors.As(err, &he) && (he.ExitCode == 97 || strings.HasPrefix(he.LastLine(), "unshare:")) {
		return errNoView
	}
	return err
}

// mkdirLike makes dir with the mode, owner and times of fi.
func mkdirLike(dir string, fi fs.FileInfo) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := os.Chmod(dir, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return setTimesLike(dir, fi)
}

// setTimesLike gives path (not followed) the access and modification
// times of fi.
func setTimesLike(path string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copySymlink makes to a symlink like from (target, owner, times).
func copySymlink(from, to string, fi fs.FileInfo) error {
	target, err := os.Readlink(from)
	if err != nil {
		return err
	}
	if err := os.Symlink(target, to); err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return setTimesLike(to, fi)
}

// MkfsVfat makes a FAT filesystem in a partition (the EFI system partition).
type MkfsVfat struct {
	Filename   string `json:"filename"`
	SectorSize int    `json:"sector_size"`
	Partition  int    `json:"partition"`
	Label      string `json:"label"`
}

func (s *MkfsVfat) Validate() error {
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	if err := checkSector(s.SectorSize); err != nil {
		return err
	}
	if s.Partition < 1 || s.Partition > 128 || len(s.Label) == 0 || len(s.Label) > 11 {
		return fmt.Errorf("partition 1..128 and a label of 1..11 characters are required")
	}
	return nil
}
func (s *MkfsVfat) Inputs() []string { return nil }
func (s *MkfsVfat) Run(ctx context.Context, e *Env) error {
	img := filepath.Join(e.Tree, s.Filename)
	ext, err := partition(ctx, e, img, s.SectorSize, s.Partition)
	if err != nil {
		return err
	}
	// 127 MiB in 4 KiB single-sector clusters is too few clusters for
	// FAT32; FAT16 is what fits there.
	bits := "32"
	if s.SectorSize == 4096 {
		bits = "16"
	}
	return e.Cmd(ctx, "mkfs.vfat", "-F", bits, "-s", "1", "-S", strconv.Itoa(s.SectorSize), "-n", s.Label,
		"--offset", strconv.FormatInt(ext.Start/int64(s.SectorSize), 10), img, strconv.FormatInt(ext.Size/1024, 10))
}

// grubModules go into both GRUB images so nothing must load from disk
// before grub.cfg is read.
var grubModules = []string{"part_gpt", "ext2", "fat", "search", "search_label", "search_fs_uuid", "normal",
	"configfile", "linux", "echo", "test", "serial", "terminal", "gzio", "ls", "cat", "reboot", "halt"}

// grubEmbedCfg finds the boot partition by label and reads its grub.cfg.
const grubEmbedCfg = "search --no-floppy --label boot --set root\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n"

// GrubEFI writes a standalone GRUB EFI binary to the ESP's removable-media
// path (/EFI/BOOT/BOOTX64.EFI), so firmware boots it with no NVRAM entry.
type GrubEFI struct {
	Filename   string `json:"filename"`
	SectorSize int    `json:"sector_size"`
	Partition  int    `json:"partition"`
}

func (s *GrubEFI) Validate() error {
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	if s.Partition < 1 || s.Partition > 128 {
		return fmt.Errorf("partition: %d out of range", s.Partition)
	}
	return checkSector(s.SectorSize)
}
func (s *GrubEFI) Inputs() []string { return nil }
func (s *GrubEFI) Run(ctx context.Context, e *Env) error {
	img := filepath.Join(e.Tree, s.Filename)
	ext, err := partition(ctx, e, img, s.SectorSize, s.Partition)
	if err != nil {
		return err
	}
	cfg := filepath.Join(e.Scratch, "embed.cfg")
	if err := os.WriteFile(cfg, []byte(grubEmbedCfg), 0o644); err != nil {
		return err
	}
	efi := filepath.Join(e.Scratch, "BOOTX64.EFI")
	args := append([]string{"-O", "x86_64-efi", "-o", efi, "-p", "/grub", "-c", cfg}, grubModules...)
	if err := e.Cmd(ctx, "grub-mkimage", append(args, "efi_gop", "all_video")...); err != nil {
		return err
	}
	at := fmt.Sprintf("%s@@%d", img, ext.Start)
	os.Setenv("MTOOLS_SKIP_CHECK", "1")
	if err := e.Cmd(ctx, "mmd", "-i", at, "::/EFI", "::/EFI/BOOT"); err != nil {
		return err
	}
	return e.Cmd(ctx, "mcopy", "-i", at, efi, "::/EFI/BOOT/BOOTX64.EFI")
}

// GrubBIOS installs GRUB for BIOS: boot.img in the MBR's code area and
// core.img in the BIOS boot partition, patched as grub-bios-setup would
// (GRUB's boot/i386/pc/boot.S and diskboot.S define the offsets), without
// a loop device. BIOS booting needs 512-byte sectors.
type GrubBIOS struct {
	Filename  string `json:"filename"`
	Partition int    `json:"partition"`
}

// Offsets in boot.img and diskboot.img (GRUB_BOOT_MACHINE_* constants).
const (
	bootKernelSector = 0x5c  // u64 LBA of core.img's first sector
	bootDrive        = 0x64  // 0xff: the drive the BIOS booted from
	bootDriveCheck   = 0x66  // 2-byte jump skipped for hard disks
	diskbootBlocks   = 0x1f4 // u64 start, u16 count, u16 segment of the rest of core.img
	mbrCodeSize      = 440   // the MBR bytes before the disk signature
)

func (s *GrubBIOS) Validate() error {
	if s.Partition < 1 || s.Partition > 128 {
		return fmt.Errorf("partition: %d out of range", s.Partition)
	}
	return checkFile("filename", s.Filename)
}
func (s *GrubBIOS) Inputs() []string { return nil }
func (s *GrubBIOS) Run(ctx context.Context, e *Env) error {
	img := filepath.Join(e.Tree, s.Filename)
	ext, err := partition(ctx, e, img, 512, s.Partition)
	if err != nil {
		return err
	}
	cfg := filepath.Join(e.Scratch, "embed.cfg")
	if err := os.WriteFile(cfg, []byte(grubEmbedCfg), 0o644); err != nil {
		return err
	}
	corePath := filepath.Join(e.Scratch, "core.img")
	args := append([]string{"-O", "i386-pc", "-o", corePath, "-p", "/grub", "-c", cfg}, grubModules...)
	if err := e.Cmd(ctx, "grub-mkimage", append(args, "biosdisk")...); err != nil {
		return err
	}
	core, err := os.ReadFile(corePath)
	if err != nil {
		return err
	}
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		return fmt.Errorf("grub-pc-bin is not installed: %w", err)
	}
	if len(boot) != 512 || len(core) < 512 {
		return fmt.Errorf("unexpected boot.img/core.img sizes %d/%d", len(boot), len(core))
	}
	lba := ext.Start / 512
	sectors := (int64(len(core)) + 511) / 512
	if sectors*512 > ext.Size {
		return fmt.Errorf("core.img (%d bytes) does not fit the BIOS boot partition (%d bytes)", len(core), ext.Size)
	}
	putLE(boot[bootKernelSector:], uint64(lba), 8)
	boot[bootDrive] = 0xff
	boot[bootDriveCheck], boot[bootDriveCheck+1] = 0x90, 0x90
	putLE(core[diskbootBlocks:], uint64(lba+1), 8)
	putLE(core[diskbootBlocks+8:], uint64(sectors-1), 2)
	putLE(core[diskbootBlocks+10:], 0x820, 2)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(boot[:mbrCodeSize], 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(core, ext.Start); err != nil {
		return err
	}
	return f.Close()
}

func putLE(b []byte, v uint64, n int) {
	for i := 0; i < n; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// QemuImgConvert converts an image file from the "image" input.
type QemuImgConvert struct {
	Source   string `json:"source"` // file in the image input
	Filename string `json:"filename"`
	Format   string `json:"format"`  // qcow2, vmdk, vpc, raw
	Options  string `json:"options"` // -o string, e.g. subformat=streamOptimized
	Compress bool   `json:"compress"`
	// Unordered (-W) lets qemu-img write clusters in the order they are
	// ready. In order, it compresses one cluster at a time; unordered, on
	// every core. The disk the image holds is the same, the file's bytes
	// are not from run to run.
	Unordered bool `json:"unordered,omitempty"`
}

func (s *QemuImgConvert) Validate() error {
	if err := checkFile("source", s.Source); err != nil {
		return err
	}
	if err := checkFile("filename", s.Filename); err != nil {
		return err
	}
	switch s.Format {
	case "qcow2", "vmdk", "vpc", "raw":
	default:
		return fmt.Errorf("format: %q must be one of qcow2, vmdk, vpc, raw", s.Format)
	}
	if strings.ContainsAny(s.Options, " \t\n") {
		return fmt.Errorf("options: no whitespace")
	}
	return nil
}
func (s *QemuImgConvert) Inputs() []string { return []string{"image"} }
func (s *QemuImgConvert) Run(ctx context.Context, e *Env) error {
	args := []string{"convert", "-f", "raw", "-O", s.Format}
	if s.Options != "" {
		args = append(args, "-o", s.Options)
	}
	if s.Compress {
		args = append(args, "-c")
	}
	if s.Unordered {
		args = append(args, "-W")
	}
	out := filepath.Join(e.Tree, s.Filename)
	args = append(args, filepath.Join(e.Inputs["image"], s.Source), out)
	// qemu-img convert does not sync its output (its default cache mode
	// for convert is unsafe): the disk can write it while the build goes on.
	if err := e.Cmd(ctx, "qemu-img", args...); err != nil {
		return err
	}
	fileutil.StartWriteback(out)
	return nil
}

// Qcow2Write writes the "image" input's raw disk as a zstd-compressed
// qcow2 with cosa's own writer (pkg/qcow2), which takes the clusters an
// earlier image of the store holds unchanged (Env.Reuse) instead of
// compressing them again: a rebuild compresses a few percent of its disk.
// The file is the same with or without an earlier image.
type Qcow2Write struct {
	Source   string `json:"source"` // file in the image input
	Filename string `json:"filename"`
}

func (s *Qcow2Write) Validate() error {
	if err := checkFile("source", s.Source); err != nil {
		return err
	}
	return checkFile("filename", s.Filename)
}
func (s *Qcow2Write) Inputs() []string { return []string{"image"} }
func (s *Qcow2Write) Run(ctx context.Context, e *Env) error {
	src, err := os.Open(filepath.Join(e.Inputs["image"], s.Source))
	if err != nil {
		return err
	}
	defer src.Close()
	out := filepath.Join(e.Tree, s.Filename)
	dst, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer dst.Close()
	var prev *qcow2.Image
	for _, t := range e.Reuse {
		if im, err := qcow2.Open(filepath.Join(t, s.Filename)); err == nil {
			prev = im
			defer im.Close()
			fmt.Fprintf(e.Log, "qcow2: reusing unchanged clusters of %s\n", filepath.Base(t))
			break
		}
	}
	st, err := qcow2.Write(ctx, dst, src, prev)
	if err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "qcow2: %d clusters with data: %d reused, %d compressed, %d stored plain, %d zero; %d bytes\n",
		st.Clusters, st.Reused, st.Compressed, st.Plain, st.Zero, st.Bytes)
	fileutil.StartWriteback(out)
	return nil
}
