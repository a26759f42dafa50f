// Package extend adds disk images to builds: it turns a build's OSTree
// commit and the config's image settings into a pipeline manifest
// (pkg/images), runs it against the workdir's stage cache, copies the
// exported file into the build directory and records it in meta.json under
// the build lock, re-reading meta.json first so concurrent buildextend runs
// never lose each other's entries.
package extend
