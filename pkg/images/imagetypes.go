package images

import (
	"encoding/json"
	"fmt"
)

// Platform is an image type cosa can build.
type Platform string

const (
	PlatformQemu    Platform = "qemu"    // qcow2, 512-byte sectors, BIOS + UEFI
	PlatformMetal   Platform = "metal"   // raw, 512-byte sectors, BIOS + UEFI
	PlatformMetal4k Platform = "metal4k" // raw, 4096-byte sectors, UEFI only
	// Cloud images: the qemu/metal disk (shared tree and image pipelines)
	// converted to each cloud's upload format.
	PlatformAWS       Platform = "aws"       // vmdk, streamOptimized (ImportSnapshot)
	PlatformOpenStack Platform = "openstack" // qcow2
	PlatformGCP       Platform = "gcp"       // disk.raw in a GNU sparse tar.gz
	PlatformAzure     Platform = "azure"     // fixed VHD, virtual size a whole number of MiB
	PlatformVMware    Platform = "vmware"    // OVA: OVF descriptor + streamOptimized vmdk
)

// Platforms lists the supported platforms.
func Platforms() []Platform {
	return []Platform{PlatformQemu, PlatformMetal, PlatformMetal4k,
		PlatformAWS, PlatformOpenStack, PlatformGCP, PlatformAzure, PlatformVMware}
}

// CloudPlatforms lists the platforms whose image is a cloud upload format.
func CloudPlatforms() []Platform {
	return []Platform{PlatformAWS, PlatformOpenStack, PlatformGCP, PlatformAzure, PlatformVMware}
}

// ParsePlatform checks a platform name.
func ParsePlatform(s string) (Platform, error) {
	for _, p := range Platforms() {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("unknown platform %q (have %v)", s, Platforms())
}

// Extension is the artifact file extension of the platform.
func (p Platform) Extension() string {
	switch p {
	case PlatformQemu, PlatformOpenStack:
		return "qcow2"
	case PlatformAWS:
		return "vmdk"
	case PlatformGCP:
		return "tar.gz"
	case PlatformAzure:
		return "vhd"
	case PlatformVMware:
		return "ova"
	}
	return "raw"
}

// MarshalText/UnmarshalText make Platform usable as a JSON/YAML value.
func (p Platform) MarshalText() ([]byte, error) { return []byte(p), nil }
func (p *Platform) UnmarshalText(b []byte) error {
	v, err := ParsePlatform(string(b))
	*p = v
	return err
}

// ImageSpec is what an image type needs to know about the build.
type ImageSpec struct {
	Commit     string   // OSTree commit checksum
	Ref        string   // ref the deployment tracks
	OSName     string   // stateroot name
	KernelArgs []string // from the config (kernel-args + image extra-kargs)
	SizeGiB    int
	Rootfs     string // ext4
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
func (spec ImageSpec) Manifest(p Platform) (*Manifest, string, string, error) {
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
		{Type: "org.cosa.ostree.pull-local", Options: opts(OSTreePullLocal{Commit: spec.Commit, Ref: spec.Ref}), Checkpoint: true},
		{Type: "org.cosa.ostree.deploy", Options: opts(OSTreeDeploy{OSName: spec.OSName, Ref: spec.Ref, KernelArgs: kargs})},
		{Type: "org.cosa.ostree.fstab", Options: opts(OSTreeFstab{OSName: spec.OSName, Entries: []FstabEntry{
			{Label: "boot", Path: "/boot", FSType: "ext4", Options: "defaults", Freq: 1, PassNo: 2}}})},
		{Type: "org.cosa.grub2.bls-config", Options: opts(GrubBLSConfig{Timeout: 1, Serial: true})},
	}}
	sector := 512
	name := "image"
	if p == PlatformMetal4k {
		sector, name = 4096, "image4k"
	}
	const raw = "disk.raw"
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
		{Type: "org.cosa.mkfs.ext4", Inputs: treeIn, Options: opts(MkfsTree{Filename: raw, SectorSize: sector, Partition: partBoot, Label: "boot", Path: "boot"})},
		{Type: "org.cosa.mkfs.ext4", Inputs: treeIn, Options: opts(MkfsTree{Filename: raw, SectorSize: sector, Partition: partRoot, Label: "root", Path: ".", Empty: []string{"boot"}})},
	}
	if sector == 512 {
		// BIOS INT 13h booting of 4Kn disks is not a thing; metal4k is UEFI only.
		stages = append(stages, Stage{Type: "org.cosa.grub2.bios", Options: opts(GrubBIOS{Filename: raw, Partition: partBIOS})})
	}
	image := Pipeline{Name: name, Stages: stages}
	m := &Manifest{Version: ManifestVersion, Pipelines: []Pipeline{tree, image}}
	switch p {
	case PlatformQemu:
		out := "disk.qcow2"
		m.Pipelines = append(m.Pipelines, Pipeline{Name: string(p), Stages: []Stage{
			{Type: "org.cosa.qemu-img.convert", Inputs: map[string]string{"image": "name:" + name},
				Options: opts(QemuImgConvert{Source: raw, Filename: out, Format: "qcow2"})}}})
		return m, string(p), out, m.Validate()
	case PlatformMetal, PlatformMetal4k:
		// metal ships the image pipeline's raw disk as is.
		return m, name, raw, m.Validate()
	case PlatformOpenStack, PlatformAWS, PlatformGCP, PlatformAzure, PlatformVMware:
		export, file := cloudPipelines(m, p, name, raw, spec)
		return m, export, file, m.Validate()
	}
	return nil, "", "", fmt.Errorf("unknown platform %q", p)
}
