// Package remote moves finished builds between a local builds/ directory and
// remote storage: buildupload to S3 (or any S3-compatible server) and
// buildfetch from S3, http(s), file:// URLs or plain paths.
//
// The remote layout mirrors builds/: PREFIX/builds.json and
// PREFIX/<id>/<arch>/<file>. Uploads go artifacts first, then
// commitmeta.json and pkglist.json, then meta.json, and builds.json last, so
// a reader that trusts builds.json never finds a listed build incomplete.
package remote

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosa-build/cosa/pkg/events"
)

// Files every build carries besides its images.
const (
	CommitMetaFile = "commitmeta.json"
	PkgListFile    = "pkglist.json"
)

// Cache-Control values: artifacts never change once a build id exists;
// JSON files (builds.json above all) do.
const (
	CacheControlArtifact = "max-age=31536000"
	CacheControlJSON     = "max-age=300"
)

// ShaMetaKey is the user-metadata key (x-amz-meta-sha256) holding an
// object's sha256, which is how an upload recognises objects already there.
const ShaMetaKey = "sha256"

// transferEvent builds the event for n bytes moved in d. Progress reports
// are pkg/events events: object (one artifact or JSON file: uploaded,
// skipped, would-upload, fetched, kept), index (the remote builds.json:
// uploaded, would-upload, unchanged), info and warning.
func transferEvent(action, object string, n int64, d time.Duration) events.Event {
	secs := d.Seconds()
	var rate float64
	if secs > 0 {
		rate = float64(n) / 1e6 / secs
	}
	return events.Event{Type: events.Object, Action: action, Object: object, Bytes: n, DurationS: secs, MBPerS: rate}
}

// contentTypes maps artifact suffixes to MIME types. A fixed table keeps
// uploads independent of the machine's /etc/mime.types.
var contentTypes = []struct{ suffix, typ string }{
	{".json", "application/json"},
	{".gz", "application/gzip"},
	{".xz", "application/x-xz"},
	{".zst", "application/zstd"},
	{".tar", "application/x-tar"},
	{".iso", "application/x-iso9660-image"},
	{".qcow2", "application/x-qemu-disk"},
	{".txt", "text/plain; charset=utf-8"},
	{".sha256", "text/plain; charset=utf-8"},
}

// ContentType returns the Content-Type for a file name.
func ContentType(name string) string {
	lower := strings.ToLower(name)
	for _, c := range contentTypes {
		if strings.HasSuffix(lower, c.suffix) {
			return c.typ
		}
	}
	return "application/octet-stream"
}

// RedactURL hides the password of a user:password@ URL, as
// url.URL.Redacted does, also for URLs that do not parse (whose parse
// errors would quote them whole).
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	// Up to the last "@" anywhere: an unescaped "/" in the password is
	// one reason such a URL does not parse.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	scheme := raw[:len(raw)-len(rest)]
	return scheme + user + ":xxxxx" + rest[at:]
}

// cleanRel checks that p (a meta.json images path) is a plain relative
// path inside the build directory and returns it slash-separated.
func cleanRel(p string) (string, error) {
	if p == "" || strings.Contains(p, "\\") || path.IsAbs(p) || filepath.IsAbs(p) {
		return "", fmt.Errorf("invalid artifact path %q", p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || c != p {
		return "", fmt.Errorf("invalid artifact path %q: must be a plain relative path", p)
	}
	return c, nil
}
