package build

import (
	"strings"
)

// hex64 makes a distinct valid sha256-looking string from a seed.
func hex64(seed string) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; b.Len() < 64; i++ {
		b.WriteByte(digits[(int(seed[i%len(seed)])+i)%16])
	}
	return b.String()
}

// realisticMeta is shaped like the meta.json of a finished cosa build.
func realisticMeta(id string) *Meta {
	return &Meta{
		BuildID:                   id,
		Name:                      "fedora-coreos",
		Ref:                       "fedora/x86_64/coreos/testing-devel",
		Summary:                   "Fedora CoreOS testing-devel",
		OSTreeCommit:              hex64("commit"),
		OSTreeContentChecksum:     hex64("content"),
		OSTreeTimestamp:           "2026-11-22T10:00:00Z",
		OSTreeVersion:             id,
		OSTreeNMetadataTotal:      Int64(5123),
		OSTreeNMetadataWritten:    Int64(12),
		OSTreeNContentTotal:       Int64(40321),
		OSTreeNContentWritten:     Int64(77),
		OSTreeNCacheHits:          Int64(0),
		OSTreeContentBytesWritten: Int64(123456789),
		BaseArch:                  "x86_64",
		BuildTimestamp:            "2026-11-22T10:05:13Z",
		ConfigGitRev:              "v41.0-12-gdeadbeef",
		ConfigDirty:               "false",
		ImageInputChecksum:        hex64("imageinput"),
		RpmOstreeInputHash:        hex64("inputhash"),
		PkgDiff: []PkgDiffEntry{
			{Name: "kernel", Kind: PkgUpgraded, Previous: &PkgVersion{"6.11.3-300.fc41"}, New: &PkgVersion{"6.11.5-300.fc41"}},
			{Name: "nano-default-editor", Kind: PkgAdded, New: &PkgVersion{"8.2-1.fc41"}},
			{Name: "vim-minimal", Kind: PkgRemoved, Previous: &PkgVersion{"9.1.785-1.fc41"}},
		},
		Images: map[string]Artifact{
			"ostree": {Path: "fedora-coreos-" + id + "-ostree.x86_64.ociarchive", Sha256: hex64("ostree"), Size: 812345678},
			"qemu": {
				Path: "fedora-coreos-" + id + "-qemu.x86_64.qcow2.xz", Sha256: hex64("qemu"), Size: 734003200,
				UncompressedSha256: hex64("qemu-raw"), UncompressedSize: 1801256960,
			},
		},
		AMIs: []AMI{{Name: "us-east-1", HVM: "ami-0123456789abcdef0", Snapshot: "snap-0123456789abcdef0"}},
		S3:   &S3{Bucket: "fcos-builds", Key: "prod/streams/testing-devel/builds/" + id, PublicURL: "https://builds.example.org/" + id},
	}
}
