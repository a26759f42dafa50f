package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/platform"
)

// Cloud image stages turn the shared raw disk (the "image" pipeline) into
// the formats clouds import. Format conversions that qemu-img can do use
// org.cosa.qemu-img.convert; these stages cover the two archive formats.

func init() {
	register("org.cosa.tar.gnu-sparse", func() StageImpl { return &TarGNUSparse{} })
	register("org.cosa.ova", func() StageImpl { return &OVA{} })
}

// vmdkOptions are the qemu-img options of the streamOptimized vmdk shared
// by aws (ImportSnapshot) and vmware (inside the OVA): an LSI Logic
// adapter and hardware version 6 are what both import paths accept.
const vmdkOptions = "adapter_type=lsilogic,subformat=streamOptimized,compat6"

// vhdOptions make a fixed VHD whose virtual size is exactly the raw disk's
// size (force_size: no CHS rounding), so it stays a whole number of MiB as
// Azure requires.
const vhdOptions = "subformat=fixed,force_size=on"

// The cloud pipeline builders: aws' vmdk pipeline is named for the
// format, not the platform, because vmware's OVA takes it as its input.
func init() {
	const vmdkFile = "disk.vmdk"
	vmdk := func(disk Disk) Pipeline { return convertPipeline("vmdk", disk, vmdkFile, "vmdk", vmdkOptions) }
	RegisterPipeline("vmdk", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		m.Pipelines = append(m.Pipelines, vmdk(disk))
		return "vmdk", vmdkFile
	})
	RegisterPipeline("vhd", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		m.Pipelines = append(m.Pipelines, convertPipeline(p.Name, disk, "disk.vhd", "vpc", vhdOptions))
		return p.Name, "disk.vhd"
	})
	RegisterPipeline("gce-tar", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		m.Pipelines = append(m.Pipelines, Pipeline{Name: p.Name, Stages: []Stage{{Type: "org.cosa.tar.gnu-sparse",
			Inputs:  map[string]string{"image": "name:" + disk.Pipeline},
			Options: opts(TarGNUSparse{Source: disk.File, Member: "disk.raw", Filename: "disk.tar.gz"})}}})
		return p.Name, "disk.tar.gz"
	})
	RegisterPipeline("ova", func(m *Manifest, p platform.Platform, disk Disk, spec ImageSpec) (string, string) {
		v := vmdk(disk)
		m.Pipelines = append(m.Pipelines, v, Pipeline{Name: p.Name, Stages: []Stage{{Type: "org.cosa.ova",
			Inputs:  map[string]string{"disk": "name:" + v.Name},
			Options: opts(OVA{Disk: vmdkFile, Filename: "disk.ova", Name: spec.OSName, CPUs: 2, MemoryMiB: 2048, Firmware: "efi"})}}})
		return p.Name, "disk.ova"
	})
}

// TarGNUSparse archives a file of the "image" input as the only member of
// a GNU-format tar (holes recorded as a sparse map, not stored), gzipped:
// the layout Google Compute Engine imports (a member named disk.raw).
// Owner, mode and times are fixed so the same disk gives the same bytes.
type TarGNUSparse struct {
	Source   string `json:"source"`   // file in the image input
	Member   string `json:"member"`   // its name in the archive
	Filename string `json:"filename"` // the .tar.gz written to the tree
}

func (s *TarGNUSparse) Validate() error {
	for _, f := range [][2]string{{"source", s.Source}, {"member", s.Member}, {"filename", s.Filename}} {
		if err := checkFile(f[0], f[1]); err != nil {
			return err
		}
	}
	if !strings.HasSuffix(s.Filename, ".tar.gz") && !strings.HasSuffix(s.Filename, ".tgz") {
		return fmt.Errorf("filename: %q must end in .tar.gz or .tgz", s.Filename)
	}
	return nil
}
func (s *TarGNUSparse) Inputs() []string { return []string{"image"} }
func (s *TarGNUSparse) Run(ctx context.Context, e *Env) error {
	src := filepath.Join(e.Inputs["image"], s.Source)
	if _, err := os.Stat(src); err != nil {
		return err
	}
	// The member gets its name from a link in scratch; the input object
	// is never touched. GNU tar finds the holes with SEEK_DATA/SEEK_HOLE.
	dir := filepath.Join(e.Scratch, "tar")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(src, filepath.Join(dir, s.Member)); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(e.Tree, s.Filename))
	if err != nil {
		return err
	}
	defer out.Close()
	// gzip in-process: no file name or time in the gzip header.
	zw, err := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	args := []string{"--format=gnu", "--sparse", "--dereference", "--numeric-owner", "--owner=0", "--group=0",
		"--mode=0644", "--mtime=@0", "-C", dir, "-cf", "-", s.Member}
	fmt.Fprintf(e.Log, "+ tar %s | gzip > %s\n", strings.Join(args, " "), s.Filename)
	cmd := hostcmd.Command("tar", args...)
	cmd.Stdout, cmd.Stderr, cmd.TailLines = zw, e.Log, 10
	before, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := cmd.Run(ctx); err != nil && !onlyCtimeMoved(err, src, before) {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return out.Close()
}

// onlyCtimeMoved reports whether tar's failure was only its "file changed
// as we read it" on src while src's size and mtime stayed the same. Cache
// objects are written once, but a concurrent buildextend hard-links and
// chmods the same object into builds/, which moves its ctime, and GNU tar
// compares ctimes; content writes would move the mtime.
func onlyCtimeMoved(err error, src string, before os.FileInfo) bool {
	var ee *hostcmd.Error
	if !errors.As(err, &ee) || ee.ExitCode != 1 {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(ee.Stderr), "\n") {
		if !strings.HasSuffix(line, ": file changed as we read it") {
			return false
		}
	}
	after, serr := os.Stat(src)
	return serr == nil && after.Size() == before.Size() && after.ModTime().Equal(before.ModTime())
}

// OVA packs a streamOptimized vmdk from the "disk" input with a generated
// OVF 1.0 descriptor and a SHA256 manifest into an OVA (a USTAR archive:
// descriptor first, then manifest, then disk, as OVF 1.0 section 5.3
// requires). The VM has CPUs vCPUs, MemoryMiB of memory, an LSI Logic SCSI
// controller holding the disk, a VMXNET3 NIC on "VM Network", and boots
// with Firmware (efi or bios).
type OVA struct {
	Disk      string `json:"disk"`     // streamOptimized vmdk in the disk input
	Filename  string `json:"filename"` // the .ova written to the tree
	Name      string `json:"name"`     // VM name; the OVA's members are <name>.ovf, .mf, -disk1.vmdk
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Firmware  string `json:"firmware"`
}

func (s *OVA) Validate() error {
	for _, f := range [][2]string{{"disk", s.Disk}, {"filename", s.Filename}, {"name", s.Name}} {
		if err := checkFile(f[0], f[1]); err != nil {
			return err
		}
	}
	if !strings.HasSuffix(s.Filename, ".ova") {
		return fmt.Errorf("filename: %q must end in .ova", s.Filename)
	}
	if len(s.Name) > 80 {
		return fmt.Errorf("name: longer than 80 characters")
	}
	if s.CPUs < 1 || s.CPUs > 128 {
		return fmt.Errorf("cpus: %d out of range 1..128", s.CPUs)
	}
	if s.MemoryMiB < 256 || s.MemoryMiB > 1<<20 || s.MemoryMiB%4 != 0 {
		return fmt.Errorf("memory_mib: %d must be a multiple of 4 between 256 and 1048576", s.MemoryMiB)
	}
	if s.Firmware != "efi" && s.Firmware != "bios" {
		return fmt.Errorf("firmware: %q must be efi or bios", s.Firmware)
	}
	return nil
}
func (s *OVA) Inputs() []string { return []string{"disk"} }
func (s *OVA) Run(ctx context.Context, e *Env) error {
	vmdk := filepath.Join(e.Inputs["disk"], s.Disk)
	info, err := e.Output(ctx, "qemu-img", "info", "--output=json", "-f", "vmdk", vmdk)
	if err != nil {
		return err
	}
	var qi struct {
		VirtualSize int64 `json:"virtual-size"`
		FormatData  struct {
			Data struct {
				CreateType string `json:"create-type"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal([]byte(info), &qi); err != nil {
		return fmt.Errorf("qemu-img info: %v", err)
	}
	if qi.FormatData.Data.CreateType != "streamOptimized" {
		return fmt.Errorf("%s: create type %q, an OVA needs streamOptimized", s.Disk, qi.FormatData.Data.CreateType)
	}
	st, err := os.Stat(vmdk)
	if err != nil {
		return err
	}
	diskName := s.Name + "-disk1.vmdk"
	ovf := []byte(s.descriptor(diskName, st.Size(), qi.VirtualSize))
	diskSum, _, err := fileutil.SHA256File(vmdk)
	if err != nil {
		return err
	}
	mf := fmt.Sprintf("SHA256(%s.ovf)= %s\nSHA256(%s)= %s\n", s.Name, fileutil.SHA256Hex(ovf), diskName, diskSum)

	out, err := os.Create(filepath.Join(e.Tree, s.Filename))
	if err != nil {
		return err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0),
			Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{s.Name + ".ovf", ovf}, {s.Name + ".mf", []byte(mf)}} {
		if err := tw.WriteHeader(hdr(f.name, int64(len(f.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(hdr(diskName, st.Size())); err != nil {
		return fmt.Errorf("%s: %w", diskName, err)
	}
	in, err := os.Open(vmdk)
	if err != nil {
		return err
	}
	defer in.Close()
	if _, err := io.Copy(tw, in); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.Log, "wrote %s: %s.ovf, %s.mf, %s (%d bytes, capacity %d)\n", s.Filename, s.Name, s.Name, diskName, st.Size(), qi.VirtualSize)
	return out.Close()
}

// descriptor is the OVF 1.0 envelope (DSP0243 1.0). Names are plain file
// names (checked by Validate), so nothing needs XML escaping. rasd
// elements are in the alphabetical order the CIM schema's sequence needs.
func (s *OVA) descriptor(diskFile string, fileSize, capacity int64) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w(`<?xml version="1.0" encoding="UTF-8"?>`)
	w(`<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"` +
		` xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"` +
		` xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"` +
		` xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`)
	w(`  <References>`)
	w(`    <File ovf:href="%s" ovf:id="file1" ovf:size="%d"/>`, diskFile, fileSize)
	w(`  </References>`)
	w(`  <DiskSection>`)
	w(`    <Info>Virtual disk information</Info>`)
	w(`    <Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"`+
		` ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`, capacity)
	w(`  </DiskSection>`)
	w(`  <NetworkSection>`)
	w(`    <Info>The list of logical networks</Info>`)
	w(`    <Network ovf:name="VM Network">`)
	w(`      <Description>The VM Network network</Description>`)
	w(`    </Network>`)
	w(`  </NetworkSection>`)
	w(`  <VirtualSystem ovf:id="%s">`, s.Name)
	w(`    <Info>A virtual machine</Info>`)
	w(`    <Name>%s</Name>`, s.Name)
	w(`    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">`)
	w(`      <Info>The kind of installed guest operating system</Info>`)
	w(`    </OperatingSystemSection>`)
	w(`    <VirtualHardwareSection>`)
	w(`      <Info>Virtual hardware requirements</Info>`)
	w(`      <System>`)
	w(`        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>`)
	w(`        <vssd:InstanceID>0</vssd:InstanceID>`)
	w(`        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>`, s.Name)
	w(`        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>`)
	w(`      </System>`)
	item := func(fields ...string) {
		w(`      <Item>`)
		for i := 0; i < len(fields); i += 2 {
			w(`        <rasd:%s>%s</rasd:%s>`, fields[i], fields[i+1], fields[i])
		}
		w(`      </Item>`)
	}
	item("AllocationUnits", "hertz * 10^6", "Description", "Number of Virtual CPUs",
		"ElementName", fmt.Sprintf("%d virtual CPU(s)", s.CPUs), "InstanceID", "1", "ResourceType", "3",
		"VirtualQuantity", fmt.Sprint(s.CPUs))
	item("AllocationUnits", "byte * 2^20", "Description", "Memory Size",
		"ElementName", fmt.Sprintf("%dMB of memory", s.MemoryMiB), "InstanceID", "2", "ResourceType", "4",
		"VirtualQuantity", fmt.Sprint(s.MemoryMiB))
	item("Address", "0", "Description", "SCSI Controller", "ElementName", "SCSI controller 0",
		"InstanceID", "3", "ResourceSubType", "lsilogic", "ResourceType", "6")
	item("AddressOnParent", "0", "ElementName", "Hard disk 1", "HostResource", "ovf:/disk/vmdisk1",
		"InstanceID", "4", "Parent", "3", "ResourceType", "17")
	item("AddressOnParent", "7", "AutomaticAllocation", "true", "Connection", "VM Network",
		"Description", "VmxNet3 ethernet adapter on &quot;VM Network&quot;", "ElementName", "Network adapter 1",
		"InstanceID", "5", "ResourceSubType", "VmxNet3", "ResourceType", "10")
	w(`      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="%s"/>`, s.Firmware)
	w(`    </VirtualHardwareSection>`)
	w(`  </VirtualSystem>`)
	w(`</Envelope>`)
	return b.String()
}
