// Package images is cosa's pipeline engine and the image types built on it.
//
// The model follows osbuild. A Manifest is a list of named Pipelines; a
// pipeline is an ordered list of Stages that each change the pipeline's
// tree (a directory; disk images are files inside it) in place. A stage
// has a type, typed options and, optionally, inputs: the finished trees of
// other pipelines, mounted read-only by path.
//
// Every stage has an ID: the sha256 of its type, its options in canonical
// JSON, the previous stage's ID and the IDs of its inputs. Equal IDs mean
// equal outputs, which is what makes caching sound: the tree after a
// checkpointed stage, and after the last stage of every pipeline, is stored
// in the object store (cache/objects/<id>, committed by rename) and a later
// run starts from the newest stored stage instead of from scratch. A
// pipeline's ID is its last stage's ID.
//
// Only the pipelines needed for the requested exports run. Locations that do
// not change what a stage produces (where the OSTree repo lives) come from
// the Sources given at run time and are not part of any ID; what does change
// it (the commit checksum) is an option.
package images
