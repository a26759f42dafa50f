// Package debrepo makes small signed apt repositories for tests: .debs
// built with dpkg-deb, Packages and Release written here (apt-ftparchive
// is not needed), InRelease signed with a throwaway gpg key. apt verifies
// such a repository as it does any archive: with gpgv on Debian 12, given
// the key as a keyring file in signed-by.
package debrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// Key is a throwaway signing key in its own gpg home.
type Key struct {
	Home    string // gpg home holding the secret key
	Keyring string // binary keyring (.gpg) with the public key, for signed-by
}

// NewKey makes a signing key under dir. Call Close to stop the gpg-agent
// it starts.
func NewKey(dir, name string) (*Key, error) {
	home := filepath.Join(dir, "gnupg")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	k := &Key{Home: home, Keyring: filepath.Join(dir, name+".gpg")}
	if err := k.gpg("--quick-gen-key", name+" <"+name+"@cosa.invalid>", "ed25519", "sign", "never"); err != nil {
		return nil, err
	}
	if err := k.gpg("--output", k.Keyring, "--export", name+"@cosa.invalid"); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

func (k *Key) gpg(args ...string) error {
	// Tests make keys and repos up front; nothing to cancel.
	return hostcmd.Run(context.Background(), "gpg", append([]string{"--batch", "--quiet", "--homedir", k.Home,
		"--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
}

// Close stops the key's gpg-agent.
func (k *Key) Close() {
	hostcmd.Run(context.Background(), "gpgconf", "--homedir", k.Home, "--kill", "gpg-agent")
}

// Package is one .deb to build.
type Package struct {
	Name, Version string
	Arch          string            // Debian arch, e.g. amd64 or all
	Priority      string            // default optional
	Depends       string            // optional Depends field
	Files         map[string]string // path in the package (no leading /) -> content
}

// Repo is a repository with one suite and one component.
type Repo struct {
	Dir, Suite, Component, Arch string // Arch: the Debian arch indexed
}

// Write builds the packages into r.Dir/pool and writes the suite's
// indexes; with a key, the Release file is signed as InRelease (and
// Release.gpg), without one it is left unsigned.
func (r Repo) Write(pkgs []Package, key *Key) error {
	pool := filepath.Join(r.Dir, "pool")
	if err := os.MkdirAll(pool, 0o755); err != nil {
		return err
	}
	var index bytes.Buffer
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	for _, p := range pkgs {
		deb, err := buildDeb(pool, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(deb)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		prio := p.Priority
		if prio == "" {
			prio = "optional"
		}
		fmt.Fprintf(&index, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: cosa tests <tests@cosa.invalid>\nPriority: %s\nSection: misc\n",
			p.Name, p.Version, p.Arch, prio)
		if p.Depends != "" {
			fmt.Fprintf(&index, "Depends: %s\n", p.Depends)
		}
		fmt.Fprintf(&index, "Filename: pool/%s\nSize: %d\nSHA256: %s\nDescription: %s for cosa tests\n\n",
			filepath.Base(deb), len(data), hex.EncodeToString(sum[:]), p.Name)
	}
	rel := r.Component + "/binary-" + r.Arch + "/Packages"
	dists := filepath.Join(r.Dir, "dists", r.Suite)
	if err := os.MkdirAll(filepath.Join(dists, filepath.Dir(rel)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dists, rel), index.Bytes(), 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(index.Bytes())
	release := fmt.Sprintf("Origin: cosa-tests\nLabel: cosa-tests\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: %s\nComponents: %s\nSHA256:\n %s %d %s\n",
		r.Suite, r.Suite, time.Now().UTC().Format(time.RFC1123), r.Arch, r.Component, hex.EncodeToString(sum[:]), index.Len(), rel)
	for _, f := range []string{"InRelease", "Release.gpg"} {
		os.Remove(filepath.Join(dists, f))
	}
	if err := os.WriteFile(filepath.Join(dists, "Release"), []byte(release), 0o644); err != nil {
		return err
	}
	if key == nil {
		return nil
	}
	if err := key.gpg("--clearsign", "--output", filepath.Join(dists, "InRelease"), filepath.Join(dists, "Release")); err != nil {
		return err
	}
	return key.gpg("--detach-sign", "--armor", "--output", filepath.Join(dists, "Release.gpg"), filepath.Join(dists, "Release"))
}

// buildDeb builds p with dpkg-deb into dir and returns its path.
func buildDeb(dir string, p Package) (string, error) {
	tree, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tree)
	if err := os.Chmod(tree, 0o755); err != nil {
		return "", err
	}
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: cosa tests <tests@cosa.invalid>\nDescription: %s for cosa tests\n",
		p.Name, p.Version, p.Arch, p.Name)
	if p.Depends != "" {
		ctl += "Depends: " + p.Depends + "\n"
	}
	files := map[string]string{"DEBIAN/control": ctl}
	for k, v := range p.Files {
		files[k] = v
	}
	for name, content := range files {
		path := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	deb := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", p.Name, p.Version, p.Arch))
	if err := hostcmd.Run(context.Background(), "dpkg-deb", "--root-owner-group", "--build", tree, deb); err != nil {
		return "", err
	}
	return deb, nil
}
