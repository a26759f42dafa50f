// Package defaultconfig holds cosa's default config (a small Debian bookworm
// OSTree system), compiled into the binary so `cosa init` with no source
// works offline. This directory doubles as the repo's own config: running
// cosa in the repository root builds it.
package defaultconfig

import "embed"

// FS holds manifest.yaml, image.yaml, overlay.d/, postprocess/ and tests/.
//
//go:embed manifest.yaml image.yaml all:overlay.d postprocess tests
var FS embed.FS
