package imagebuild

import "github.com/cosa-build/cosa/pkg/config"

// DefaultConfig loads the default config every generated config builds on:
// cosa serve reads its distro and repos for the service's package index.
func DefaultConfig() (*config.Config, error) {
	g := &gen{files: map[string][]byte{}}
	if err := g.defaultConfig(); err != nil {
		return nil, err
	}
	return g.defaults, nil
}
