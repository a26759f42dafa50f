// Package build reads and writes cosa's versioned build directory
// (WORKDIR/builds), laid out the way coreos-assembler lays out its builds/
// so that tools written for one can read the other:
//
//	builds/builds.json          index of builds, newest first, plus tags
//	builds/latest -> <id>       relative symlink to the newest build
//	builds/<id>/<arch>/meta.json
//	builds/.lock                flock(2) target serialising writers
//
// Every file is replaced atomically (fileutil.WriteFileAtomic) so that a reader never
// sees a half-written index or meta.json, and every read-modify-write of
// shared state happens under the builds/.lock flock.
package build
