package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode"

	"github.com/cosa-build/cosa/pkg/platform"
)

var (
	nameRE          = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	refSegmentRE    = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	versionPrefixRE = regexp.MustCompile(`^[0-9A-Za-z]+$`)
	streamRE        = regexp.MustCompile(`^[a-z0-9]+$`)
	packageRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	suiteRE         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	componentRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	// userRE is Debian's useradd NAME_REGEX without the trailing '$' of
	// machine accounts, capped at 32 characters like utmp.
	userRE         = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	hostLabelRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	passwordHashRE = regexp.MustCompile(`^(\$[A-Za-z0-9]+\$[./A-Za-z0-9$=,+-]+|!|\*)$`)
	shellRE        = regexp.MustCompile(`^/[A-Za-z0-9._+/-]+$`)
	base64RE       = regexp.MustCompile(`^[A-Za-z0-9+/]{16,}={0,2}$`)
)

// archValues are the basearches per-architecture keys name.
var archValues = []string{"x86_64", "aarch64", "ppc64le", "s390x"}

// maxUID is the highest uid users may ask for: 65534 is nobody and 65535
// is (uid_t)-1 to 16-bit tools.
const maxUID = 65533

// Allowed values of enumerated keys, in the order they are listed in
// messages. The first entry of a defaulted key is not necessarily its
// default; see the defaults in manifest() and image().
var (
	familyValues     = []string{"debian"}
	variantValues    = []string{"minbase", "required", "important", "standard"}
	rootfsValues     = []string{"ext4"} // xfs needs a mount-free way to fill it (mkfs.xfs -p) first
	bootloaderValues = []string{"grub"}
	compressorValues = []string{"gzip", "xz", "zstd"}
	qcow2CompValues  = []string{"zstd", "zlib", "none"}
	volumeTypeValues = []string{"gp2", "gp3", "io1", "io2", "standard"}
	bootModeValues   = []string{"uefi", "legacy-bios", "uefi-preferred"}
)

// Numeric limits, in GiB.
const (
	minImageSize = 2
	maxImageSize = 2048
	minCacheSize = 1
	maxCacheSize = 65536
)

// validator applies defaults and checks values after decoding. It keeps
// the first problem found in v.err.
type validator struct {
	l    *loader
	d    *decoder
	file string // display path of the top-level file being validated
	err  error
}

func (v *validator) set(err error) {
	if v.err == nil && err != nil {
		v.err = err
	}
}

// present reports whether path was given a non-null value.
func (v *validator) present(path string) bool {
	e, ok := v.d.rec[path]
	return ok && !isNull(e.val)
}

// fail reports a problem with the value at path.
func (v *validator) fail(path, msg string) {
	if v.err != nil {
		return
	}
	e, ok := v.d.rec[path]
	if !ok {
		v.set(&Error{File: v.file, Line: 1, Key: path, Msg: msg})
		return
	}
	v.set(v.l.errAt(e.val, path, msg))
}

// failKey reports a problem with the key at path (rather than its value).
func (v *validator) failKey(path, msg string) {
	if e, ok := v.d.rec[path]; ok && e.key != nil {
		v.set(v.l.errAt(e.key, path, msg))
		return
	}
	v.fail(path, msg)
}

// require reports path as missing when it has no value. A missing key is
// reported at the key of the enclosing mapping, or at line 1 of the file
// for top-level keys.
func (v *validator) require(path string) bool {
	if v.present(path) {
		return true
	}
	if e, ok := v.d.rec[path]; ok {
		v.set(v.l.errAt(e.val, path, "required key has no value"))
		return false
	}
	parent := ""
	if i := strings.LastIndex(path, "."); i >= 0 {
		parent = path[:i]
	}
	if e, ok := v.d.rec[parent]; ok && parent != "" {
		// Name the missing key by the parent's file-local path, at the
		// parent's key, or at the list item for an item of a list.
		n := e.key
		if n == nil {
			n = e.val
		}
		at := &Error{Key: path, Msg: "required key is missing", Line: n.Line}
		if o := v.l.origin[n]; o != nil {
			at.File = o.file
			if o.path != "" {
				at.Key = o.path + path[len(parent):]
			}
		}
		v.set(at)
		return false
	}
	v.set(&Error{File: v.file, Line: 1, Key: path, Msg: "required key is missing"})
	return false
}

func (v *validator) defaultString(p *string, path, def string) {
	if !v.present(path) {
		*p = def
	}
}

func (v *validator) match(path, what, s string, re *regexp.Regexp) {
	if !re.MatchString(s) {
		v.fail(path, fmt.Sprintf("invalid %s %q (must match %s)", what, clip(s), re.String()))
	}
}

func (v *validator) enum(path, s string, allowed []string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	msg := fmt.Sprintf("unsupported value %q (", clip(s))
	if sug := suggest(s, allowed); sug != "" && len(allowed) > 1 {
		msg += fmt.Sprintf("did you mean %q? ", sug)
	}
	v.fail(path, msg+"allowed: "+allowedList(allowed)+")")
}

func (v *validator) intRange(path string, n, lo, hi int, unit string) {
	if n < lo || n > hi {
		v.fail(path, fmt.Sprintf("must be between %d and %d%s, got %d", lo, hi, unit, n))
	}
}

func (v *validator) each(path string, items []string, check func(item string) string) {
	for i, it := range items {
		if msg := check(it); msg != "" {
			v.fail(fmt.Sprintf("%s[%d]", path, i), msg)
		}
	}
}

func (v *validator) manifest(m *Manifest) {
	if v.require("name") {
		v.match("name", "name", m.Name, nameRE)
	}
	if v.require("ref") {
		if msg := checkRef(m.Ref); msg != "" {
			v.fail("ref", msg)
		}
	}
	v.defaultString(&m.VersionPrefix, "version-prefix", "1")
	v.match("version-prefix", "version-prefix", m.VersionPrefix, versionPrefixRE)
	v.defaultString(&m.Stream, "stream", "dev")
	v.match("stream", "stream", m.Stream, streamRE)

	v.defaultString(&m.Distro.Family, "distro.family", "debian")
	v.enum("distro.family", m.Distro.Family, familyValues)
	if v.require("distro.suite") {
		v.match("distro.suite", "suite", m.Distro.Suite, suiteRE)
	}
	if m.Distro.Mirror != "" {
		if msg := checkMirror(m.Distro.Mirror); msg != "" {
			v.fail("distro.mirror", msg)
		}
	}
	if !v.present("distro.components") {
		m.Distro.Components = []string{"main"}
	} else if len(m.Distro.Components) == 0 {
		v.fail("distro.components", "must list at least one component")
	}
	v.each("distro.components", m.Distro.Components, func(s string) string {
		return regexMsg("component", s, componentRE)
	})
	v.defaultString(&m.Distro.Variant, "distro.variant", "minbase")
	v.enum("distro.variant", m.Distro.Variant, variantValues)

	if v.require("packages") && len(m.Packages) == 0 {
		v.fail("packages", "must list at least one package")
	}
	v.each("packages", m.Packages, func(s string) string {
		return regexMsg("package name", s, packageRE)
	})
	v.each("exclude-packages", m.ExcludePackages, func(s string) string {
		return regexMsg("package name", s, packageRE)
	})

	for _, arch := range archValues {
		key := "packages-" + arch
		v.each(key, map[string][]string{
			"x86_64": m.PackagesX86_64, "aarch64": m.PackagesAarch64,
			"ppc64le": m.PackagesPpc64le, "s390x": m.PackagesS390x,
		}[arch], func(s string) string {
			return regexMsg("package name", s, packageRE)
		})
	}
	v.repos(m.Repos)
	if v.present("hostname") {
		if msg := checkHostname(m.Hostname); msg != "" {
			v.fail("hostname", msg)
		}
	}
	v.users(m.Users)

	v.each("units.enable", m.Units.Enable, checkUnit)
	v.each("units.disable", m.Units.Disable, checkUnit)
	v.each("units.mask", m.Units.Mask, checkUnit)

	v.each("kernel-args", m.KernelArgs, checkKarg)

	v.each("postprocess", m.Postprocess, func(s string) string {
		_, _, msg := v.l.checkPath(".", s, "the config dir")
		return msg
	})
	v.each("remove-files", m.RemoveFiles, checkRootPath)

	m.Include = nil
}

func (v *validator) image(im *Image) {
	if !v.present("size") {
		im.Size = 10
	}
	v.intRange("size", im.Size, minImageSize, maxImageSize, " GiB")
	v.defaultString(&im.Rootfs, "rootfs", "ext4")
	v.enum("rootfs", im.Rootfs, rootfsValues)
	v.defaultString(&im.Bootloader, "bootloader", "grub")
	v.enum("bootloader", im.Bootloader, bootloaderValues)
	v.each("extra-kargs", im.ExtraKargs, checkKarg)
	v.defaultString(&im.Compressor, "compressor", "gzip")
	v.enum("compressor", im.Compressor, compressorValues)
	v.defaultString(&im.Qcow2Compression, "qcow2-compression", "zstd")
	v.enum("qcow2-compression", im.Qcow2Compression, qcow2CompValues)
	if !v.present("cache-size") {
		im.CacheSize = 20
	}
	v.intRange("cache-size", im.CacheSize, minCacheSize, maxCacheSize, " GiB")

	// Read when validating, not at init: the table is pkg/platform's.
	platformNames := platform.Names()
	for _, name := range sortedKeys(im.Platforms) {
		p := "platforms." + name
		if !contains(platformNames, name) {
			msg := "unknown platform ("
			if s := suggest(name, platformNames); s != "" {
				msg += fmt.Sprintf("did you mean %q? ", s)
			}
			v.failKey(p, msg+"allowed: "+allowedList(platformNames)+")")
			continue
		}
		o := im.Platforms[name]
		if o.Size != 0 && (o.Size < minImageSize || o.Size > maxImageSize) {
			v.fail(p+".size", fmt.Sprintf("must be 0 (inherit) or between %d and %d GiB, got %d", minImageSize, maxImageSize, o.Size))
		}
		v.each(p+".extra-kargs", o.ExtraKargs, checkKarg)
	}

	v.defaultString(&im.AWS.VolumeType, "aws.volume-type", "gp3")
	v.enum("aws.volume-type", im.AWS.VolumeType, volumeTypeValues)
	v.defaultString(&im.AWS.BootMode, "aws.boot-mode", "uefi-preferred")
	v.enum("aws.boot-mode", im.AWS.BootMode, bootModeValues)
}

// listName checks the required name of a list entry at path against re
// and against the names of the entries before it; seen maps each name to
// where it first stood, so a duplicate points back at the first.
func (v *validator) listName(path, what, name string, re *regexp.Regexp, seen map[string]string, dupWhat string) {
	if !v.require(path) {
		return
	}
	v.match(path, what, name, re)
	if first, dup := seen[name]; dup {
		v.fail(path, fmt.Sprintf("duplicate %s %q (first defined at %s)", dupWhat, clip(name), first))
	}
	seen[name] = v.where(path)
}

func (v *validator) repos(repos []Repo) {
	seen := map[string]string{}
	for i := range repos {
		r := &repos[i]
		p := fmt.Sprintf("repos[%d]", i)
		v.listName(p+".name", "repo name", r.Name, nameRE, seen, "repo name")
		if v.require(p + ".uri") {
			if msg := checkMirror(r.URI); msg != "" {
				v.fail(p+".uri", strings.Replace(msg, "mirror URL", "repo URI", 1))
			}
		}
		flat := strings.HasSuffix(r.Suite, "/")
		if v.require(p + ".suite") {
			if flat {
				if s := strings.TrimSuffix(r.Suite, "/"); s != "." && (!suiteRE.MatchString(s) || hasDotDot(s)) {
					v.fail(p+".suite", fmt.Sprintf("invalid flat repository path %q (\"./\" or a relative path ending in \"/\")", clip(r.Suite)))
				}
			} else {
				v.match(p+".suite", "suite", r.Suite, suiteRE)
			}
		}
		switch {
		case flat && len(r.Components) > 0:
			v.fail(p+".components", "a flat repository (suite ending in \"/\") takes no components")
		case !flat && v.require(p+".components") && len(r.Components) == 0:
			v.fail(p+".components", "must list at least one component")
		}
		v.each(p+".components", r.Components, func(s string) string {
			return regexMsg("component", s, componentRE)
		})
		if v.require(p + ".signed-by") {
			ext := path.Ext(r.SignedBy)
			if _, real, msg := v.l.checkPath(".", r.SignedBy, "the config dir"); msg != "" {
				v.fail(p+".signed-by", msg)
			} else if ext != ".gpg" && ext != ".asc" {
				v.fail(p+".signed-by", fmt.Sprintf("keyring %q must end in .gpg (binary) or .asc (armored): apt tells them apart by name", clip(r.SignedBy)))
			} else if sum, err := fileSHA256(real); err != nil {
				v.fail(p+".signed-by", "cannot read keyring: "+errText(err))
			} else {
				r.KeyringSHA256 = sum
			}
		}
		v.each(p+".arch", r.Arch, func(s string) string {
			if contains(archValues, s) {
				return ""
			}
			return fmt.Sprintf("unknown architecture %q (allowed: %s)", clip(s), allowedList(archValues))
		})
	}
}

func (v *validator) users(users []User) {
	seen := map[string]string{}
	for i := range users {
		u := &users[i]
		p := fmt.Sprintf("users[%d]", i)
		v.listName(p+".name", "user name", u.Name, userRE, seen, "user")
		if v.present(p + ".uid") {
			switch {
			case u.UID == 0:
				v.fail(p+".uid", "uid 0 is root's; leave uid out to pick a free one")
			case u.UID < 1 || u.UID > maxUID:
				v.fail(p+".uid", fmt.Sprintf("must be between 1 and %d, got %d", maxUID, u.UID))
			}
		}
		v.each(p+".groups", u.Groups, func(s string) string {
			return regexMsg("group name", s, userRE)
		})
		v.each(p+".ssh-authorized-keys", u.SSHAuthorizedKeys, checkAuthorizedKey)
		if v.present(p+".password-hash") && !passwordHashRE.MatchString(u.PasswordHash) {
			v.fail(p+".password-hash", "must be a crypt(3) hash such as \"$y$...\" or \"$6$...\" (make one with mkpasswd), or \"!\" or \"*\" for no password")
		}
		if v.present(p + ".shell") {
			if !shellRE.MatchString(u.Shell) || hasDotDot(u.Shell) {
				v.fail(p+".shell", fmt.Sprintf("invalid shell %q (an absolute path such as /bin/bash)", clip(u.Shell)))
			}
		}
	}
}

// where names the file and line of the value at path, for messages that
// point at a second place.
func (v *validator) where(path string) string {
	e, ok := v.d.rec[path]
	if !ok {
		return v.file
	}
	at := v.l.errAt(e.val, path, "")
	return fmt.Sprintf("%s:%d", at.File, at.Line)
}

// checkHostname validates a hostname as systemd does: dot-separated
// labels of letters, digits and '-', not starting or ending with '-', at
// most 64 characters in all.
func checkHostname(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("hostname %q is longer than 64 characters", clip(s))
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabelRE.MatchString(l) {
			return fmt.Sprintf("invalid hostname %q (dot-separated labels of letters, digits and '-', not starting or ending with '-')", clip(s))
		}
	}
	return ""
}

// sshKeyTypeRE matches the key type field of an authorized_keys line.
var sshKeyTypeRE = regexp.MustCompile(`^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(-cert-v01@openssh\.com)?$`)

// checkAuthorizedKey validates one authorized_keys line: a single line
// holding a known key type followed by its base64 blob (options before it
// and a comment after it are allowed).
func checkAuthorizedKey(s string) string {
	if strings.TrimSpace(s) == "" {
		return "key is empty"
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "key must be one line with no control characters (list each key separately)"
	}
	f := strings.Fields(s)
	for i := 0; i+1 < len(f); i++ {
		if sshKeyTypeRE.MatchString(f[i]) && base64RE.MatchString(f[i+1]) {
			return ""
		}
	}
	return fmt.Sprintf("not an authorized_keys line %q (want \"ssh-ed25519 AAAA... comment\")", clip(s))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func regexMsg(what, s string, re *regexp.Regexp) string {
	if re.MatchString(s) {
		return ""
	}
	return fmt.Sprintf("invalid %s %q (must match %s)", what, clip(s), re.String())
}

// checkRef validates an OSTree ref: segments of [A-Za-z0-9._-]+ separated
// by single slashes.
func checkRef(ref string) string {
	bad := func(why string) string { return fmt.Sprintf("invalid OSTree ref %q: %s", clip(ref), why) }
	if strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") {
		return bad("must not start or end with '/'")
	}
	for _, seg := range strings.Split(ref, "/") {
		switch {
		case seg == "":
			return bad("empty path segment")
		case seg == "." || seg == "..":
			return bad(fmt.Sprintf("segment %q is not allowed", clip(seg)))
		case !refSegmentRE.MatchString(seg):
			return bad(fmt.Sprintf("segment %q must match %s", clip(seg), refSegmentRE.String()))
		}
	}
	return ""
}

// checkMirror validates distro.mirror: an http, https or file URL.
func checkMirror(s string) string {
	bad := func(why string) string { return fmt.Sprintf("invalid mirror URL %q: %s", clip(s), why) }
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return bad("must not contain whitespace")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("cannot be parsed")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return bad("missing host")
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return bad("file URLs must not name a host")
		}
		if !strings.HasPrefix(u.Path, "/") {
			return bad("file URLs need an absolute path (file:///path)")
		}
	default:
		return bad("scheme must be http, https or file")
	}
	return ""
}

// checkUnit validates a systemd unit name.
func checkUnit(s string) string {
	bad := func(why string) string { return fmt.Sprintf("invalid unit name %q: %s", clip(s), why) }
	switch {
	case s == "":
		return "unit name is empty"
	case strings.Contains(s, "/"):
		return bad("must not contain '/'")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return bad("must not contain whitespace")
	case !strings.Contains(s, ".") || strings.HasPrefix(s, "."):
		return bad("must have a type suffix such as \".service\"")
	}
	return ""
}

// checkKarg validates one kernel argument. Whitespace is only allowed
// inside double quotes (param="a b"), since each list item must be one
// argument.
func checkKarg(s string) string {
	if s == "" {
		return "kernel argument is empty"
	}
	inQuote := false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
		case unicode.IsControl(r):
			return fmt.Sprintf("kernel argument %q contains a control character", clip(s))
		case unicode.IsSpace(r) && !inQuote:
			return fmt.Sprintf("kernel argument %q contains whitespace; list each argument separately", clip(s))
		}
	}
	if inQuote {
		return fmt.Sprintf("kernel argument %q has an unterminated quote", clip(s))
	}
	return ""
}

// checkRootPath validates a path relative to the OS root (remove-files).
func checkRootPath(s string) string {
	switch {
	case s == "":
		return "path is empty"
	case strings.HasPrefix(s, "/"):
		return fmt.Sprintf("absolute path %q is not allowed; use a path relative to the OS root", clip(s))
	case hasDotDot(s):
		return fmt.Sprintf("path %q must not contain \"..\" components", clip(s))
	case path.Clean(s) == ".":
		return fmt.Sprintf("path %q refers to the OS root itself", clip(s))
	}
	return ""
}
