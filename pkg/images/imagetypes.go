package images

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/cosa-build/cosa/pkg/platform"
)

// Platforms come from pkg/platform's table. Each entry names the
// pipeline builder (registered here by the stage files) that turns the
// shared raw disk into its artifact, so adding a platform touches the
// table and, when no builder fits, one stage file.

// Disk is the raw disk a manifest's image pipeline makes.
type Disk struct {
	Pipeline string // "image", or "image4k" for 4Kn disks
	File     string // the disk file in that pipeline's tree
}

// PipelineBuilder appends to m, which already holds the tree pipeline and
// the disk's image pipeline, the pipelines that make platform p's artifact
// and returns the pipeline to export and the file in it. Pipeline names are
// not part of stage ids, so a conversion another platform already ran is a
// cache hit.
type PipelineBuilder func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (export, file string)

var pipelineBuilders = map[string]PipelineBuilder{}

// RegisterPipeline makes b the builder of the platforms whose table entry
// names it. Stage files call it from init.
func RegisterPipeline(name string, b PipelineBuilder) {
	if _, dup := pipelineBuilders[name]; dup {
		panic("images: pipeline builder " + name + " registered twice")
	}
	pipelineBuilders[name] = b
}

// HasPipeline reports whether a pipeline builder of that name exists.
func HasPipeline(name string) bool {
	_, ok := pipelineBuilders[name]
	return ok
}

// RegisterStage adds a stage type; for stage files outside this package
// (the ones here call register from init).
func RegisterStage(name string, f func() StageImpl) {
	if _, dup := registry[name]; dup {
		panic("images: stage type " + name + " registered twice")
	}
	register(name, f)
}

// DiskPipeline names the pipeline that makes p's raw disk: the 4Kn disk
// is another disk, the other platforms share the 512-byte one.
func DiskPipeline(p platform.Platform) string {
	if p.SectorSize == 4096 {
		return "image4k"
	}
	return "image"
}

// rawFile is the disk file of the image pipelines.
const rawFile = "disk.raw"

func init() {
	// metal ships the image pipeline's raw disk as is.
	RegisterPipeline("raw", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		return disk.Pipeline, disk.File
	})
	// qemu and openstack: the same qcow2, so one cached object. Its
	// clusters are compressed (zstd by default): a build keeps one qcow2
	// per build, and compressed it is about 40% of the plain one (336 vs
	// 876 MB for the default config). zstd is written by cosa's own
	// writer (org.cosa.qcow2, pkg/qcow2): it compresses on every core,
	// takes unchanged clusters from the last image instead of compressing
	// them again (a rebuild: 0.7 s instead of qemu-img's 3.2 to 3.5), and
	// its file is a function of the raw disk. zlib goes through qemu-img
	// convert -W (unordered: on every core, bytes differing from run to
	// run); a plain qcow2 is written in order, where -W would scatter it.
	RegisterPipeline("qcow2", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		c := QemuImgConvert{Source: disk.File, Filename: "disk.qcow2", Format: "qcow2"}
		switch spec.Qcow2Compression {
		case "zstd":
			m.Pipelines = append(m.Pipelines, Pipeline{Name: p.Name, Stages: []Stage{{Type: "org.cosa.qcow2",
				Inputs: map[string]string{"image": "name:" + disk.Pipeline}, Options: opts(Qcow2Write{Source: disk.File, Filename: "disk.qcow2"})}}})
			return p.Name, "disk.qcow2"
		case "zlib":
			c.Compress, c.Unordered = true, true
		}
		m.Pipelines = append(m.Pipelines, Pipeline{Name: p.Name, Stages: []Stage{convertStage(disk, c)}})
		return p.Name, "disk.qcow2"
	})
}

// convertPipeline is a pipeline that converts disk with qemu-img.
func convertPipeline(name string, disk Disk, file, format, options string) Pipeline {
	return Pipeline{Name: name, Stages: []Stage{convertStage(disk, QemuImgConvert{Source: disk.File, Filename: file, Format: format, Options: options})}}
}

// convertStage is the qemu-img convert stage c reading disk.
func convertStage(disk Disk, c QemuImgConvert) Stage {
	return Stage{Type: "org.cosa.qemu-img.convert", Inputs: map[string]string{"image": "name:" + disk.Pipeline}, Options: opts(c)}
}

// ImageSpec is what an image type needs to know about the build.
type ImageSpec struct {
	Commit     string   // OSTree commit checksum
	Ref        string   // ref the deployment tracks
	OSName     string   // stateroot name
	KernelArgs []string // from the config (kernel-args + image extra-kargs)
	SizeGiB    int
	Rootfs     string // ext4
	// Qcow2Compression is image.yaml's qcow2-compression: zstd, zlib or
	// none ("" is none).
	Qcow2Compression string
}

// Disk layout (docs/architecture.md#disk-layout): partition numbers used by stages.
const (
	partBIOS = 1
	partESP  = 2
	partBoot = 3
	partRoot = 4
)

func opts(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Manifest generates the pipeline manifest for platform; the returned name
// is the pipeline to export and the file in it.
func (spec ImageSpec) Manifest(p platform.Platform) (*Manifest, string, string, error) {
	build, ok := pipelineBuilders[p.Pipeline]
	if !ok {
		return nil, "", "", fmt.Errorf("platform %s: no pipeline builder %q", p.Name, p.Pipeline)
	}
	if spec.Rootfs != "" && spec.Rootfs != "ext4" {
		return nil, "", "", fmt.Errorf("rootfs %q: only ext4 can be built without mounting; set rootfs: ext4 in image.yaml", spec.Rootfs)
	}
	if spec.SizeGiB < 2 {
		return nil, "", "", fmt.Errorf("image size %d GiB is too small (2 GiB minimum)", spec.SizeGiB)
	}
	kargs := append([]string{"root=LABEL=root", "rw"}, spec.KernelArgs...)
	tree := Pipeline{Name: "tree", Stages: []Stage{
		{Type: "org.cosa.ostree.init-fs"},
		{Type: "org.cosa.ostree.os-init", Options: opts(OSTreeOSInit{OSName: spec.OSName})},
		{Type: "org.cosa.ostree.config", Options: opts(OSTreeConfig{Config: map[string]string{"sysroot.bootloader": "none"}})},
		// No checkpoint: storing the pulled repo was a copy of every
		// object, and a pull that links what an earlier tree holds
		// (OSTreePullLocal, Env.Reuse) costs less than that copy.
		{Type: "org.cosa.ostree.pull-local", Options: opts(OSTreePullLocal{Commit: spec.Commit, Ref: spec.Ref})},
		{Type: "org.cosa.ostree.deploy", Options: opts(OSTreeDeploy{OSName: spec.OSName, Ref: spec.Ref, KernelArgs: kargs})},
		{Type: "org.cosa.ostree.fstab", Options: opts(OSTreeFstab{OSName: spec.OSName, Entries: []FstabEntry{
			{Label: "boot", Path: "/boot", FSType: "ext4", Options: "defaults", Freq: 1, PassNo: 2}}})},
		{Type: "org.cosa.grub2.bls-config", Options: opts(GrubBLSConfig{Timeout: 1, Serial: true})},
	}}
	sector, name := p.SectorSize, DiskPipeline(p)
	const raw = rawFile
	treeIn := map[string]string{"tree": "name:tree"}
	stages := []Stage{
		{Type: "org.cosa.truncate", Options: opts(Truncate{Filename: raw, Size: int64(spec.SizeGiB) << 30})},
		{Type: "org.cosa.gpt", Options: opts(GPT{Filename: raw, SectorSize: sector, Partitions: []GPTPartition{
			{Name: "BIOS-BOOT", Type: GUIDBIOSBoot, SizeMiB: 1},
			{Name: "EFI-SYSTEM", Type: GUIDESP, SizeMiB: 127},
			{Name: "boot", Type: GUIDLinuxFS, SizeMiB: 384},
			{Name: "root", Type: GUIDRootX86},
		}})},
		{Type: "org.cosa.mkfs.vfat", Options: opts(MkfsVfat{Filename: raw, SectorSize: sector, Partition: partESP, Label: "EFI-SYSTEM"})},
		{Type: "org.cosa.grub2.efi", Options: opts(GrubEFI{Filename: raw, SectorSize: sector, Partition: partESP})},
		{Type: "org.cosa.mkfs.ext4", Inputs: treeIn, Options: opts(MkfsTree{Filename: raw, SectorSize: sector, Partition: partBoot, Label: "boot", Path: "boot",
			UUID: fsUUID(spec.OSName, "boot", "uuid"), HashSeed: fsUUID(spec.OSName, "boot", "hash_seed")})},
		{Type: "org.cosa.mkfs.ext4", Inputs: treeIn, Options: opts(MkfsTree{Filename: raw, SectorSize: sector, Partition: partRoot, Label: "root", Path: ".", Empty: []string{"boot"},
			UUID: fsUUID(spec.OSName, "root", "uuid"), HashSeed: fsUUID(spec.OSName, "root", "hash_seed")})},
	}
	if p.BIOS() {
		stages = append(stages, Stage{Type: "org.cosa.grub2.bios", Options: opts(GrubBIOS{Filename: raw, Partition: partBIOS})})
	}
	image := Pipeline{Name: name, Stages: stages}
	m := &Manifest{Version: ManifestVersion, Pipelines: []Pipeline{tree, image}}
	export, file := build(m, p, Disk{Pipeline: name, File: raw}, spec)
	return m, export, file, m.Validate()
}

// fsUUID is a UUID (version 4 layout) fixed for one OS's filesystem, the
// same in every build: every copy of an image shares its UUIDs anyway,
// and the system finds its filesystems by label.
func fsUUID(osname, label, what string) string {
	h := sha256.Sum256([]byte("cosa fs " + what + "\x00" + osname + "\x00" + label))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
