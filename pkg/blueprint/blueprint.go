// Package blueprint is the data model of `cosa serve`'s blueprints: the
// Weldr API's blueprint format (TOML as users push it, JSON as the API
// returns it), its validation, and a store that keeps blueprints in a git
// repository so that changes, undo and tag come from the history.
//
// Parsing is strict: a key the format does not have is an error naming it,
// never silently dropped. Customizations that exist in the format but that
// cosa may not be able to apply are parsed and kept, and
// (*Blueprint).Unsupported names them so the service can refuse them.
package blueprint

import (
	"reflect"
	"strings"
)

// Blueprint is one blueprint. Field order and names follow what the Weldr
// API returns, so encoding a Blueprint gives the API's shape.
type Blueprint struct {
	Name           string          `json:"name" toml:"name"`
	Description    string          `json:"description" toml:"description"`
	Version        string          `json:"version,omitempty" toml:"version,omitempty"`
	Packages       []Package       `json:"packages" toml:"packages"`
	Modules        []Package       `json:"modules" toml:"modules"`
	EnabledModules []EnabledModule `json:"enabled_modules" toml:"enabled_modules"`
	Groups         []Group         `json:"groups" toml:"groups"`
	Containers     []Container     `json:"containers,omitempty" toml:"containers,omitempty"`
	Customizations *Customizations `json:"customizations,omitempty" toml:"customizations,omitempty"`
	Distro         string          `json:"distro" toml:"distro"`
	Architecture   string          `json:"architecture,omitempty" toml:"architecture,omitempty"`
	Minimal        bool            `json:"minimal,omitempty" toml:"minimal,omitempty"`
}

// Package is an entry of packages or modules: a Debian package name (or a
// glob of names) and a version glob; "" and "*" mean any version.
type Package struct {
	Name    string `json:"name" toml:"name"`
	Version string `json:"version,omitempty" toml:"version,omitempty"`
}

// EnabledModule is an rpm modularity stream; cosa has no such thing, it is
// parsed so that it can be named as unsupported.
type EnabledModule struct {
	Name   string `json:"name" toml:"name"`
	Stream string `json:"stream" toml:"stream"`
}

// Group is a package group.
type Group struct {
	Name string `json:"name" toml:"name"`
}

// Container is a container image to embed in the image.
type Container struct {
	Source       string `json:"source" toml:"source"`
	Name         string `json:"name,omitempty" toml:"name,omitempty"`
	TLSVerify    *bool  `json:"tls-verify,omitempty" toml:"tls-verify,omitempty"`
	LocalStorage bool   `json:"local-storage,omitempty" toml:"local-storage,omitempty"`
}

// Customizations are the blueprint's changes to the image beyond packages.
// The typed fields are the ones cosa knows how to apply; the fields of type
// any are customizations the format has and cosa keeps only to name them
// (their content is not checked).
type Customizations struct {
	Hostname           string       `json:"hostname,omitempty" toml:"hostname,omitempty"`
	Kernel             *Kernel      `json:"kernel,omitempty" toml:"kernel,omitempty"`
	SSHKey             []SSHKey     `json:"sshkey,omitempty" toml:"sshkey,omitempty"`
	User               []User       `json:"user,omitempty" toml:"user,omitempty"`
	Group              []UserGroup  `json:"group,omitempty" toml:"group,omitempty"`
	Timezone           *Timezone    `json:"timezone,omitempty" toml:"timezone,omitempty"`
	Locale             *Locale      `json:"locale,omitempty" toml:"locale,omitempty"`
	Firewall           any          `json:"firewall,omitempty" toml:"firewall,omitempty"`
	Services           *Services    `json:"services,omitempty" toml:"services,omitempty"`
	Filesystem         []Filesystem `json:"filesystem,omitempty" toml:"filesystem,omitempty"`
	Disk               any          `json:"disk,omitempty" toml:"disk,omitempty"`
	InstallationDevice any          `json:"installation_device,omitempty" toml:"installation_device,omitempty"`
	PartitioningMode   any          `json:"partitioning_mode,omitempty" toml:"partitioning_mode,omitempty"`
	FDO                any          `json:"fdo,omitempty" toml:"fdo,omitempty"`
	OpenSCAP           any          `json:"openscap,omitempty" toml:"openscap,omitempty"`
	Ignition           any          `json:"ignition,omitempty" toml:"ignition,omitempty"`
	Directories        any          `json:"directories,omitempty" toml:"directories,omitempty"`
	Files              any          `json:"files,omitempty" toml:"files,omitempty"`
	Repositories       any          `json:"repositories,omitempty" toml:"repositories,omitempty"`
	FIPS               any          `json:"fips,omitempty" toml:"fips,omitempty"`
	Installer          any          `json:"installer,omitempty" toml:"installer,omitempty"`
	RPM                any          `json:"rpm,omitempty" toml:"rpm,omitempty"`
	RHSM               any          `json:"rhsm,omitempty" toml:"rhsm,omitempty"`
	CACerts            any          `json:"cacerts,omitempty" toml:"cacerts,omitempty"`
	ContainersStorage  any          `json:"containers-storage,omitempty" toml:"containers-storage,omitempty"`
	Firstboot          any          `json:"firstboot,omitempty" toml:"firstboot,omitempty"`
	DNF                any          `json:"dnf,omitempty" toml:"dnf,omitempty"`
	ISO                any          `json:"iso,omitempty" toml:"iso,omitempty"`
}

// Kernel customizes the kernel command line (and, in the format, the kernel
// package by name).
type Kernel struct {
	Name   string `json:"name,omitempty" toml:"name,omitempty"`
	Append string `json:"append,omitempty" toml:"append,omitempty"`
}

// SSHKey is the older way to give a user an authorized key.
type SSHKey struct {
	User string `json:"user" toml:"user"`
	Key  string `json:"key" toml:"key"`
}

// User is a user account to create. Password is a crypt(3) hash; see
// (*Blueprint).PlaintextPasswords.
type User struct {
	Name               string   `json:"name" toml:"name"`
	Description        string   `json:"description,omitempty" toml:"description,omitempty"`
	Password           string   `json:"password,omitempty" toml:"password,omitempty"`
	Key                string   `json:"key,omitempty" toml:"key,omitempty"`
	Home               string   `json:"home,omitempty" toml:"home,omitempty"`
	Shell              string   `json:"shell,omitempty" toml:"shell,omitempty"`
	Groups             []string `json:"groups,omitempty" toml:"groups,omitempty"`
	UID                *int64   `json:"uid,omitempty" toml:"uid,omitempty"`
	GID                *int64   `json:"gid,omitempty" toml:"gid,omitempty"`
	ExpireDate         *int64   `json:"expiredate,omitempty" toml:"expiredate,omitempty"`
	ForcePasswordReset *bool    `json:"force_password_reset,omitempty" toml:"force_password_reset,omitempty"`
}

// UserGroup is a system group to create.
type UserGroup struct {
	Name string `json:"name" toml:"name"`
	GID  *int64 `json:"gid,omitempty" toml:"gid,omitempty"`
}

// Timezone sets the time zone and NTP servers.
type Timezone struct {
	Timezone   string   `json:"timezone,omitempty" toml:"timezone,omitempty"`
	NTPServers []string `json:"ntpservers,omitempty" toml:"ntpservers,omitempty"`
}

// Locale sets the languages and the console keyboard layout.
type Locale struct {
	Languages []string `json:"languages,omitempty" toml:"languages,omitempty"`
	Keyboard  string   `json:"keyboard,omitempty" toml:"keyboard,omitempty"`
}

// Services enables, disables or masks systemd units.
type Services struct {
	Enabled  []string `json:"enabled,omitempty" toml:"enabled,omitempty"`
	Disabled []string `json:"disabled,omitempty" toml:"disabled,omitempty"`
	Masked   []string `json:"masked,omitempty" toml:"masked,omitempty"`
}

// Filesystem asks for a minimum size of the filesystem at Mountpoint.
// MinSize is bytes; pushed blueprints may give it as a number or as a string
// with a unit ("4 GiB"). TOML also accepts the older key "size" (Size, only
// while parsing: it is moved into MinSize).
type Filesystem struct {
	Mountpoint string `json:"mountpoint" toml:"mountpoint"`
	MinSize    Size   `json:"minsize,omitempty" toml:"minsize,omitempty"`
	Size       *Size  `json:"-" toml:"size,omitempty"`
}

// Size is a number of bytes.
type Size uint64

// normalize fills the lists the API always shows as [] and drops what the
// API drops (empty passwords), so that a parsed blueprint, its JSON and its
// TOML agree.
func (b *Blueprint) normalize() {
	fillLists(b)
	if len(b.Containers) == 0 {
		b.Containers = nil
	}
	if c := b.Customizations; c != nil {
		for i := range c.Filesystem {
			if c.Filesystem[i].Size != nil {
				c.Filesystem[i].MinSize = *c.Filesystem[i].Size
				c.Filesystem[i].Size = nil
			}
		}
	}
}

// Features lists the dotted key paths of every optional thing the blueprint
// asks for, down to the leaves: "packages.version",
// "customizations.user.key", "customizations.firewall" (a customization kept
// without a schema is one leaf). Name, description and version are not
// features. Each path appears once, in the API's field order.
func (b *Blueprint) Features() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	rv := reflect.ValueOf(b).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		switch rt.Field(i).Name {
		case "Name", "Description", "Version":
			continue
		}
		collectFeatures(rv.Field(i), tagName(rt.Field(i), "json"), add)
	}
	return out
}

func collectFeatures(v reflect.Value, path string, add func(string)) {
	if v.IsZero() {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.Elem().Kind() == reflect.Struct {
			collectFeatures(v.Elem(), path, add)
			return
		}
		add(path)
	case reflect.Slice:
		if v.Len() == 0 {
			return
		}
		if v.Type().Elem().Kind() != reflect.Struct {
			add(path)
			return
		}
		for i := 0; i < v.Len(); i++ {
			collectFeatures(v.Index(i), path, add)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := tagName(t.Field(i), "json")
			if name == "" {
				continue
			}
			collectFeatures(v.Field(i), path+"."+name, add)
		}
	default:
		add(path)
	}
}

// Unsupported returns the features (see Features) that no entry of supported
// covers. An entry covers a feature equal to it or below it:
// "customizations.user" covers "customizations.user.key", while
// "customizations.services.enabled" leaves "customizations.services.masked"
// unsupported. The service refuses a blueprint for which this is not empty,
// naming what it returned.
func (b *Blueprint) Unsupported(supported []string) []string {
	var out []string
	for _, f := range b.Features() {
		covered := false
		for _, s := range supported {
			if f == s || strings.HasPrefix(f, s+".") {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, f)
		}
	}
	return out
}

// PlaintextPasswords names the users whose password is not a crypt(3) hash.
// The API stores only hashes: the service hashes these before a push or
// refuses them.
func (b *Blueprint) PlaintextPasswords() []string {
	var out []string
	if b.Customizations == nil {
		return nil
	}
	for _, u := range b.Customizations.User {
		if u.Password != "" && !IsCryptHash(u.Password) {
			out = append(out, u.Name)
		}
	}
	return out
}

// tagName is the key a struct field has in the given format ("" = none).
func tagName(f reflect.StructField, format string) string {
	tag := f.Tag.Get(format)
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}
