package build

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// IndexSchemaVersion is the builds.json "schema-version" we write; it is the
// value coreos-assembler uses, so its tools accept our index.
const IndexSchemaVersion = "1.0.0"

// Limits on a builds.json. Real ones list hundreds of builds; a remote one
// comes from a bucket cosa may not have written, and reading and merging it
// happens under the builds/ lock, so a huge one is refused rather than
// allowed to hold the lock and the memory it would take.
const (
	MaxIndexBuilds = 50_000
	MaxIndexTags   = 50_000
	MaxIndexBytes  = 32 << 20
)

// BuildsIndex is the content of builds/builds.json. Builds are ordered
// newest first; the order, not any timestamp, defines "newest".
type BuildsIndex struct {
	SchemaVersion string       `json:"schema-version"`
	Builds        []BuildEntry `json:"builds"`
	Timestamp     string       `json:"timestamp"`
	Tags          []Tag        `json:"tags,omitempty"`
}

// BuildEntry is one build and the architectures built for it.
type BuildEntry struct {
	ID     string   `json:"id"`
	Arches []string `json:"arches"`
}

// Tag is a named pointer at a build, e.g. "stable". Tagged builds are
// protected from pruning.
type Tag struct {
	Name        string `json:"name"`
	Target      string `json:"target"`
	Created     string `json:"created"`
	Description string `json:"description,omitempty"`
}

// NewIndex returns an empty index, the state of a fresh builds/ directory.
func NewIndex() *BuildsIndex {
	return &BuildsIndex{SchemaVersion: IndexSchemaVersion, Builds: []BuildEntry{}}
}

// Insert records that arch was built for id. A new id becomes the newest
// build; an existing id keeps its position and gains arch, which is how a
// multi-arch build accumulates its architectures.
func (x *BuildsIndex) Insert(id, arch string) {
	if e := x.Find(id); e != nil {
		if !slices.Contains(e.Arches, arch) {
			e.Arches = append(e.Arches, arch)
		}
		return
	}
	x.Builds = slices.Insert(x.Builds, 0, BuildEntry{ID: id, Arches: []string{arch}})
}

// Remove drops id from the build list and reports whether it was there.
// Tags pointing at id are left for WriteIndex to reject, so that a caller
// cannot silently lose a tag.
func (x *BuildsIndex) Remove(id string) bool {
	i := slices.IndexFunc(x.Builds, func(e BuildEntry) bool { return e.ID == id })
	if i < 0 {
		return false
	}
	x.Builds = slices.Delete(x.Builds, i, i+1)
	return true
}

// Find returns the entry for id, or nil. The pointer aliases the index, so
// changes through it are kept.
func (x *BuildsIndex) Find(id string) *BuildEntry {
	for i := range x.Builds {
		if x.Builds[i].ID == id {
			return &x.Builds[i]
		}
	}
	return nil
}

// IDs returns the build ids, newest first.
func (x *BuildsIndex) IDs() []string {
	ids := make([]string, len(x.Builds))
	for i, e := range x.Builds {
		ids[i] = e.ID
	}
	return ids
}

var tagNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// SetTag creates tag name on target, or moves an existing tag there. Created
// records when the tag was last pointed somewhere, since that is what a
// reader of a moved tag wants to know. An empty desc keeps the previous
// description of a moved tag.
func (x *BuildsIndex) SetTag(name, target, desc string, now time.Time) error {
	if err := ValidTagName(name); err != nil {
		return err
	}
	if x.Find(target) == nil {
		return fmt.Errorf("cannot tag %q as %q: no such build in builds.json", target, name)
	}
	created := now.UTC().Format(time.RFC3339)
	for i := range x.Tags {
		if x.Tags[i].Name == name {
			x.Tags[i].Target = target
			x.Tags[i].Created = created
			if desc != "" {
				x.Tags[i].Description = desc
			}
			return nil
		}
	}
	x.Tags = append(x.Tags, Tag{Name: name, Target: target, Created: created, Description: desc})
	return nil
}

// ValidTagName reports why name cannot be a tag name, or nil.
func ValidTagName(name string) error {
	if !tagNamePattern.MatchString(name) {
		return fmt.Errorf("invalid tag name %q: must match [A-Za-z0-9][A-Za-z0-9._+-]*", name)
	}
	return nil
}

// DeleteTag removes tag name and reports whether it existed.
func (x *BuildsIndex) DeleteTag(name string) bool {
	n := len(x.Tags)
	x.Tags = slices.DeleteFunc(x.Tags, func(t Tag) bool { return t.Name == name })
	return len(x.Tags) != n
}

// TaggedIDs returns the build ids that at least one tag points at, in index
// order (newest first), each once.
func (x *BuildsIndex) TaggedIDs() []string {
	// A set, not TagsOf per build: that would be builds x tags.
	targets := make(map[string]bool, len(x.Tags))
	for _, t := range x.Tags {
		targets[t.Target] = true
	}
	var ids []string
	for _, e := range x.Builds {
		if targets[e.ID] {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// TagsOf returns the names of the tags pointing at id.
func (x *BuildsIndex) TagsOf(id string) []string {
	var names []string
	for _, t := range x.Tags {
		if t.Target == id {
			names = append(names, t.Name)
		}
	}
	return names
}

// Validate checks what WriteIndex refuses to write: more builds or tags
// than the limits, malformed or duplicate build ids, bad arch names, and
// tags that are duplicated or point at a build that is not in the index.
func (x *BuildsIndex) Validate() error {
	if len(x.Builds) > MaxIndexBuilds {
		return fmt.Errorf("%d builds listed; cosa accepts at most %d", len(x.Builds), MaxIndexBuilds)
	}
	if len(x.Tags) > MaxIndexTags {
		return fmt.Errorf("%d tags listed; cosa accepts at most %d", len(x.Tags), MaxIndexTags)
	}
	seen := make(map[string]bool, len(x.Builds))
	for _, e := range x.Builds {
		if err := ValidBuildID(e.ID); err != nil {
			return err
		}
		if seen[e.ID] {
			return fmt.Errorf("build %q listed twice", e.ID)
		}
		seen[e.ID] = true
		if len(e.Arches) == 0 {
			return fmt.Errorf("build %q has no arches", e.ID)
		}
		for _, a := range e.Arches {
			if err := validArch(a); err != nil {
				return fmt.Errorf("build %q: %w", e.ID, err)
			}
		}
	}
	tags := make(map[string]bool, len(x.Tags))
	for _, t := range x.Tags {
		if !tagNamePattern.MatchString(t.Name) {
			return fmt.Errorf("invalid tag name %q", t.Name)
		}
		if tags[t.Name] {
			return fmt.Errorf("tag %q listed twice", t.Name)
		}
		tags[t.Name] = true
		if !seen[t.Target] {
			return fmt.Errorf("tag %q points at build %q, which is not in builds.json", t.Name, t.Target)
		}
	}
	return nil
}

var archPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_]*$`)

// validArch guards the arch path component of builds/<id>/<arch>.
func validArch(arch string) error {
	if !archPattern.MatchString(arch) {
		return fmt.Errorf("invalid arch %q: must match [a-z0-9][a-z0-9_]*", arch)
	}
	return nil
}
