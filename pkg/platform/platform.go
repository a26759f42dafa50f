// Package platform is the one list of the image types cosa builds. Each
// entry is a buildextend-<name> command, a key of meta.json's images and a
// key of image.yaml's platforms; config validation, the pipeline manifests
// (pkg/images), buildextend (pkg/extend) and the CLI all read it, so a new
// platform is a new entry here plus, when no existing pipeline fits, a
// pipeline builder next to its stages in pkg/images.
//
// The package imports nothing of cosa's: consumers import it, never the
// other way round.
package platform

import (
	"fmt"
	"slices"
	"sync"
)

// Platform describes one image type.
type Platform struct {
	// Name is the command suffix, the meta.json images key and the
	// image.yaml platforms key.
	Name string
	// Format says what the file is, for --help.
	Format string
	// Extension is the artifact's file extension (no dot); the file in the
	// exported pipeline is disk.<Extension>.
	Extension string
	// Pipeline names the pkg/images pipeline builder that turns the raw
	// disk into the artifact.
	Pipeline string
	// SectorSize is the logical sector size of the raw disk: 512, or 4096
	// for 4Kn disks, which boot by UEFI only.
	SectorSize int
	// Compressed artifacts are compressed already (and imported as they
	// are), so `cosa compress` leaves them alone.
	Compressed bool
	// Upload names what buildextend-<name> --upload makes ("" for none).
	Upload string
	// Aliases are more names of the buildextend command.
	Aliases []string
}

// Names of platforms that code refers to by name.
const (
	Qemu  = "qemu"  // the image `cosa build` makes and `cosa run` boots
	Metal = "metal" // the raw disk `cosa run --platform metal` boots
	AWS   = "aws"   // the vmdk `buildextend-aws --upload` imports
)

// UploadAMI is the Upload of a platform whose --upload registers an AMI.
const UploadAMI = "ami"

// BIOS reports whether the disk also boots by BIOS: BIOS INT 13h booting
// of 4Kn disks is not a thing.
func (p Platform) BIOS() bool { return p.SectorSize == 512 }

func (p Platform) String() string { return p.Name }

var (
	mu    sync.RWMutex
	table = []Platform{
		{Name: Qemu, Format: "qcow2", Extension: "qcow2", Pipeline: "qcow2", SectorSize: 512},
		{Name: Metal, Format: "raw disk", Extension: "raw", Pipeline: "raw", SectorSize: 512},
		{Name: "metal4k", Format: "raw disk, 4096-byte sectors, UEFI only", Extension: "raw", Pipeline: "raw", SectorSize: 4096},
		// Cloud images: the qemu/metal disk converted to each cloud's
		// import format.
		{Name: AWS, Format: "streamOptimized vmdk", Extension: "vmdk", Pipeline: "vmdk", SectorSize: 512,
			Compressed: true, Upload: UploadAMI, Aliases: []string{"buildextend-ec2"}},
		{Name: "openstack", Format: "qcow2", Extension: "qcow2", Pipeline: "qcow2", SectorSize: 512},
		{Name: "gcp", Format: "disk.raw in a GNU sparse tar.gz", Extension: "tar.gz", Pipeline: "gce-tar", SectorSize: 512},
		{Name: "azure", Format: "fixed VHD, a whole number of MiB", Extension: "vhd", Pipeline: "vhd", SectorSize: 512},
		{Name: "vmware", Format: "OVA: OVF descriptor and streamOptimized vmdk", Extension: "ova", Pipeline: "ova", SectorSize: 512,
			Compressed: true},
	}
)

// All returns the platforms in the order commands and messages list them.
func All() []Platform {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Platform, len(table))
	for i, p := range table {
		p.Aliases = slices.Clone(p.Aliases)
		out[i] = p
	}
	return out
}

// Names returns the platform names, in table order.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, len(table))
	for i, p := range table {
		out[i] = p.Name
	}
	return out
}

// Lookup finds a platform by name.
func Lookup(name string) (Platform, bool) {
	mu.RLock()
	defer mu.RUnlock()
	for _, p := range table {
		if p.Name == name {
			p.Aliases = slices.Clone(p.Aliases)
			return p, true
		}
	}
	return Platform{}, false
}

// Parse is Lookup with an error naming the platforms there are.
func Parse(name string) (Platform, error) {
	if p, ok := Lookup(name); ok {
		return p, nil
	}
	return Platform{}, fmt.Errorf("unknown platform %q (have %v)", name, Names())
}

// Must is Lookup of a name the code relies on (the constants above); a
// missing one is a programming error.
func Must(name string) Platform {
	p, ok := Lookup(name)
	if !ok {
		panic("platform: no platform " + name)
	}
	return p
}

// Add appends p to the table and returns the function that removes it
// again. It is for tests that show a new platform reaches every consumer;
// cosa's own platforms are the table above.
func Add(p Platform) (remove func()) {
	if err := p.check(); err != nil {
		panic("platform.Add: " + err.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, q := range table {
		if q.Name == p.Name {
			panic("platform.Add: duplicate platform " + p.Name)
		}
	}
	table = append(table, p)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		table = slices.DeleteFunc(table, func(q Platform) bool { return q.Name == p.Name })
	}
}

// check reports an entry that consumers could not use.
func (p Platform) check() error {
	switch {
	case p.Name == "" || p.Extension == "" || p.Pipeline == "" || p.Format == "":
		return fmt.Errorf("%q: name, format, extension and pipeline are required", p.Name)
	case p.SectorSize != 512 && p.SectorSize != 4096:
		return fmt.Errorf("%s: sector size %d is not 512 or 4096", p.Name, p.SectorSize)
	case p.Upload != "" && p.Upload != UploadAMI:
		return fmt.Errorf("%s: unknown upload %q", p.Name, p.Upload)
	}
	for _, r := range p.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%q: names are lower-case letters and digits", p.Name)
		}
	}
	return nil
}
