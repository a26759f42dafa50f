// Package assemble runs `cosa build`: it checks the inputs against the latest
// build, composes the root (pkg/compose), commits it to the workdir's OSTree
// repo (pkg/ostree), exports the commit, and finalizes the build directory
// (pkg/build): meta.json, commitmeta.json, package list and pkgdiff are
// written into a hidden staging dir under builds/, which is renamed into
// place before builds.json and `latest` are updated, so no reader ever sees
// a build that is not complete.
package assemble
