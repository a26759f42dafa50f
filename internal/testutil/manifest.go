package testutil

// MinimalManifest is the smallest valid manifest.yaml. Its packages list
// comes last, so a test may add packages or keys by appending lines.
const MinimalManifest = `name: demo
ref: demo/x86_64/dev
distro:
  suite: bookworm
packages:
  - systemd
`
