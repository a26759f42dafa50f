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

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/termsafe"
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

// Event is one progress report. The JSON form is what `--json` prints.
type Event struct {
	Event   string  `json:"event"`            // "object", "index", "info", "warning"
	Action  string  `json:"action,omitempty"` // uploaded, skipped, would-upload, fetched, kept, written, unchanged
	Object  string  `json:"object,omitempty"` // s3://bucket/key, URL or path
	Bytes   int64   `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	MBps    float64 `json:"mb_per_s,omitempty"`
	Message string  `json:"message,omitempty"`
}

// String renders e as one human-readable line. Objects and messages carry
// names and error text from the remote side, so control characters in them
// are shown escaped rather than sent to the terminal.
func (e Event) String() string { return termsafe.String(e.line()) }

func (e Event) line() string {
	switch {
	case e.Event == "warning":
		return "warning: " + e.Message
	case e.Event == "info":
		return e.Message
	case e.Action == "uploaded" || e.Action == "fetched":
		return fmt.Sprintf("%s %s (%s in %s, %.1f MB/s)", e.Action, e.Object, fileutil.HumanBytes(e.Bytes),
			(time.Duration(e.Seconds * float64(time.Second))).Round(time.Millisecond), e.MBps)
	case e.Action == "would-upload":
		return fmt.Sprintf("would upload %s (%s)", e.Object, fileutil.HumanBytes(e.Bytes))
	case e.Message != "":
		return fmt.Sprintf("%s %s (%s)", e.Action, e.Object, e.Message)
	}
	return fmt.Sprintf("%s %s", e.Action, e.Object)
}

// transferEvent builds the event for n bytes moved in d.
func transferEvent(action, object string, n int64, d time.Duration) Event {
	secs := d.Seconds()
	var rate float64
	if secs > 0 {
		rate = float64(n) / 1e6 / secs
	}
	return Event{Event: "object", Action: action, Object: object, Bytes: n, Seconds: secs, MBps: rate}
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
