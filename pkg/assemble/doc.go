// Package assemble runs `cosa build`: it assembles a build in phases.
//
//   - inputs: the fetched package lock must match the config; the input
//     hash covers everything the commit depends on (readInputs), and under
//     the builds/ lock it decides whether anything changed and picks the
//     build id (planBuild);
//   - compose: the root filesystem (pkg/compose);
//   - commit: the root becomes a commit in the workdir's OSTree repo
//     (pkg/ostree), with a ref per build;
//   - stage: the ostree archive, images, package list, pkgdiff,
//     commitmeta.json and meta.json are written into a hidden staging dir
//     under builds/;
//   - publish: the staging dir is renamed into place before builds.json
//     and `latest` are updated (pkg/build), so no reader ever sees a build
//     that is not complete;
//   - prune: builds beyond the newest few go, with their refs.
package assemble
