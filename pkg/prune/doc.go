// Package prune removes old builds from a builds/ directory: Plan decides
// which builds go, Execute removes them in an order that never leaves
// builds.json or the latest symlink pointing at a missing build, and Run
// ties the two together under the builds/ lock.
package prune
