package config

import "strings"

// minimalManifest is the smallest valid manifest.yaml.
const minimalManifest = `name: demo
ref: demo/x86_64/dev
distro:
  suite: bookworm
packages:
  - systemd
  - linux-image-amd64
`

// lines joins its arguments with newlines (and a trailing newline) so that
// tests can count lines easily.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }
