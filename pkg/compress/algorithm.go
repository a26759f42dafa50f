// Package compress implements `cosa compress` and `cosa decompress`: it
// replaces a build's artifacts by gzip, xz or zstd compressed copies (and
// back), keeping meta.json consistent with the files on disk at every
// instant so that an interrupted run can simply be started again.
//
// The stream codecs are usable on their own (CompressStream,
// DecompressStream); Compress and Decompress work on a build directory.
// Output is byte-compatible with the standard tools: gzip -d, xz -d and
// zstd -d read what we write, and we read what they write.
package compress

import (
	"fmt"
	"runtime"
	"strings"
)

// Algorithm is a compression format.
type Algorithm string

// The supported formats.
const (
	Gzip Algorithm = "gzip"
	XZ   Algorithm = "xz"
	Zstd Algorithm = "zstd"
)

// Algorithms lists the supported formats in a stable order.
var Algorithms = []Algorithm{Gzip, XZ, Zstd}

// ParseAlgorithm checks a user-supplied name ("gzip", "xz" or "zstd").
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown compressor %q (want gzip, xz or zstd)", s)
}

// Suffix is the file name extension the format appends: ".gz", ".xz" or
// ".zst".
func (a Algorithm) Suffix() string {
	switch a {
	case Gzip:
		return ".gz"
	case XZ:
		return ".xz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// FromPath returns the format a file name's extension says it is in.
func FromPath(path string) (Algorithm, bool) {
	for _, a := range Algorithms {
		if strings.HasSuffix(path, a.Suffix()) {
			return a, true
		}
	}
	return "", false
}

// IsCompressed reports whether path ends in one of our suffixes.
func IsCompressed(path string) bool {
	_, ok := FromPath(path)
	return ok
}

// StreamOptions tune CompressStream and DecompressStream.
type StreamOptions struct {
	// Fast selects the fastest level: gzip -1, xz -0, zstd level 1.
	// Otherwise the tools' defaults are used: gzip -6, xz -6, zstd -3.
	Fast bool
	// Threads is the number of compression threads; 0 means one per CPU.
	Threads int
	// InProcess makes zstd use the Go encoder even when zstd(1) is
	// installed. That is faster for mostly-zero (sparse) input, which
	// would otherwise be pushed through a pipe; zstd(1) is faster on
	// dense data.
	InProcess bool
}

func (o StreamOptions) threads() int {
	if o.Threads > 0 {
		return o.Threads
	}
	return runtime.NumCPU()
}
