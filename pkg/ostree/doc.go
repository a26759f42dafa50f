// Package ostree is a small typed wrapper over the ostree command-line tool.
//
// The Go bindings (ostree-go) are not available to this project and libostree
// has no static build for cgo, so every operation shells out to the `ostree`
// binary that Debian ships. Each method maps to one ostree subcommand; errors
// carry the subcommand and the last lines of its stderr so a failure names
// what ostree itself said.
package ostree
