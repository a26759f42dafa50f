// Package compose turns a cosa config into a root filesystem ready to commit.
//
// It works in two phases so that `cosa build` never touches the network:
//
//   - Fetch resolves the package set with apt against the configured suite
//     (a private apt state under cache/apt, never the host's), downloads the
//     exact .debs into cache/debs, and writes a lock file naming each package's
//     version and sha256, plus a flat apt repository index over those debs.
//   - Compose verifies the cache against the lock, runs mmdebstrap in a new
//     network namespace with that flat repository as its only source (or
//     copies the tree it made for the same lock and options from
//     cache/rootfs, see basecache.go), applies
//     overlays, units and postprocess scripts inside a sandbox (own mount, pid
//     and network namespaces), rebuilds the initramfs with the ostree dracut
//     module, and rearranges the tree into the layout OSTree expects.
package compose
