package compose

import (
	"fmt"
	"runtime"
)

// BaseArch is the architecture name cosa uses in paths and meta.json
// (coreos-assembler's basearch, the kernel's naming).
func BaseArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "ppc64le":
		return "ppc64le"
	case "s390x":
		return "s390x"
	}
	return runtime.GOARCH
}

// DebianArch maps a basearch to Debian's architecture name.
func DebianArch(basearch string) (string, error) {
	switch basearch {
	case "x86_64":
		return "amd64", nil
	case "aarch64":
		return "arm64", nil
	case "ppc64le":
		return "ppc64el", nil
	case "s390x":
		return "s390x", nil
	}
	return "", fmt.Errorf("unsupported architecture %q", basearch)
}
