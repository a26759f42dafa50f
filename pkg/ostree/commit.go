package ostree

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CommitOptions describe one `ostree commit` of a directory tree.
type CommitOptions struct {
	Branch  string // ref to move to the new commit; empty = orphan commit
	Subject string
	// Metadata is added as string metadata (a{sv} with s values); keys sorted
	// so the command line, and so the commit, is reproducible.
	Metadata map[string]string
	Bootable bool // record the kernel/initramfs checksums (ostree.linux etc.)
	// Consume moves files into the repo instead of copying them; the tree is
	// gone afterwards. Worth it for a throwaway composed root.
	Consume   bool
	Timestamp time.Time // zero = now
	// Parallel, with Consume in a bare-user repo, hashes the tree's files
	// on that many cores (see commitPrelinked); the commit is the same.
	Parallel int
	// Prehash, with Consume in a bare-user repo, has read the tree's files
	// ahead (see Prehash); the commit takes its checksums where they still
	// hold and finishes it. The commit is the same.
	Prehash *Prehash

	trees   []string // --tree arguments before dir's (CommitOver)
	speedup bool     // --link-checkout-speedup (commitPrelinked)
}

// CommitStats is what `ostree commit --table-output` reports.
type CommitStats struct {
	Commit              string
	MetadataTotal       int64
	MetadataWritten     int64
	ContentTotal        int64
	ContentWritten      int64
	ContentBytesWritten int64
	ContentCacheHits    int64
	// Prelinked is how many files were hashed and linked into the repo
	// before `ostree commit` (commitPrelinked).
	Prelinked int
	// Prehashed of them were hashed ahead (Prehash), not at the commit;
	// PrehashCompressed files went into the export cache on the way.
	Prehashed, PrehashCompressed int
}

// CommitDir commits the directory tree at dir.
func (r *Repo) CommitDir(ctx context.Context, dir string, o CommitOptions) (*CommitStats, error) {
	if o.Consume {
		if m, err := r.mode(); err == nil && m == ModeBareUser {
			return r.commitPrelinked(ctx, dir, o)
		}
	}
	return r.commitOnce(ctx, dir, o)
}

func (r *Repo) commitOnce(ctx context.Context, dir string, o CommitOptions) (*CommitStats, error) {
	// No --generate-sizes: it adds nothing to a bare-user repo's commit.
	args := append([]string{"--table-output"}, o.trees...)
	if dir != "" {
		args = append(args, "--tree=dir="+dir)
	}
	if o.Branch != "" {
		args = append(args, "--branch="+o.Branch)
	} else {
		args = append(args, "--orphan")
	}
	if o.Subject != "" {
		args = append(args, "--subject="+o.Subject)
	}
	if o.Bootable {
		args = append(args, "--bootable")
	}
	if o.Consume {
		args = append(args, "--consume")
	}
	if o.speedup {
		args = append(args, "--link-checkout-speedup")
	}
	if !o.Timestamp.IsZero() {
		args = append(args, "--timestamp="+o.Timestamp.UTC().Format(time.RFC3339))
	}
	keys := make([]string, 0, len(o.Metadata))
	for k := range o.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--add-metadata-string="+k+"="+o.Metadata[k])
	}
	out, err := r.run(ctx, "commit", args...)
	if err != nil {
		return nil, err
	}
	return parseCommitTable(out)
}

func parseCommitTable(out string) (*CommitStats, error) {
	s := &CommitStats{}
	ints := map[string]*int64{
		"Metadata Total":        &s.MetadataTotal,
		"Metadata Written":      &s.MetadataWritten,
		"Content Total":         &s.ContentTotal,
		"Content Written":       &s.ContentWritten,
		"Content Bytes Written": &s.ContentBytesWritten,
		"Content Cache Hits":    &s.ContentCacheHits,
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "Commit" {
			s.Commit = v
			continue
		}
		if p, ok := ints[k]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("ostree commit: bad %q value %q", k, v)
			}
			*p = n
		}
	}
	if len(s.Commit) != 64 {
		return nil, fmt.Errorf("ostree commit: no commit checksum in output %q", out)
	}
	return s, nil
}

// RevParse resolves a ref or partial checksum to a full commit checksum.
func (r *Repo) RevParse(ctx context.Context, rev string) (string, error) {
	out, err := r.run(ctx, "rev-parse", "--", rev)
	return strings.TrimSpace(out), err
}

// MetadataString returns the string value of a commit metadata key.
func (r *Repo) MetadataString(ctx context.Context, rev, key string) (string, error) {
	out, err := r.run(ctx, "show", "--print-metadata-key="+key, "--", rev)
	if err != nil {
		return "", err
	}
	// ostree prints GVariant text: 'value'
	return strings.Trim(strings.TrimSpace(out), "'"), nil
}

// CommitInfo is what cosa records about a commit in meta.json.
type CommitInfo struct {
	Checksum        string
	ContentChecksum string
	Timestamp       time.Time
	Version         string
}

// Show reads the commit's timestamp, version and content checksum.
func (r *Repo) Show(ctx context.Context, rev string) (*CommitInfo, error) {
	csum, err := r.RevParse(ctx, rev)
	if err != nil {
		return nil, err
	}
	info := &CommitInfo{Checksum: csum}
	// --raw would need a GVariant parser; the plain `show` header carries the
	// date, content checksum and version as "Key:  value" lines.
	out, err := r.run(ctx, "show", "--", csum)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Date":
			t, err := time.Parse("2006-01-02 15:04:05 -0700", v)
			if err != nil {
				return nil, fmt.Errorf("ostree show %s: bad date %q", csum, v)
			}
			info.Timestamp = t.UTC()
		case "ContentChecksum":
			info.ContentChecksum = v
		case "Version":
			info.Version = v
		}
	}
	if info.Timestamp.IsZero() {
		return nil, fmt.Errorf("ostree show %s: no Date line", csum)
	}
	return info, nil
}

// SetRef points ref at commit (creating or moving it).
func (r *Repo) SetRef(ctx context.Context, ref, commit string) error {
	_, err := r.run(ctx, "refs", "--force", "--create="+ref, "--", commit)
	return err
}

// DeleteRef removes ref; a missing ref is not an error.
func (r *Repo) DeleteRef(ctx context.Context, ref string) error {
	refs, err := r.Refs(ctx)
	if err != nil {
		return err
	}
	for _, x := range refs {
		if x == ref {
			_, err := r.run(ctx, "refs", "--delete", "--", ref)
			return err
		}
	}
	return nil
}

// Refs lists all refs.
func (r *Repo) Refs(ctx context.Context) ([]string, error) {
	out, err := r.run(ctx, "refs")
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			refs = append(refs, l)
		}
	}
	return refs, nil
}

// PruneRefsOnly deletes objects not reachable from any ref. Depth 0 keeps
// only the commits refs point at, not their parents: every build has its
// own ref, and the branch's history would otherwise keep every old build
// alive through parent links.
func (r *Repo) PruneRefsOnly(ctx context.Context) error {
	_, err := r.run(ctx, "prune", "--refs-only", "--depth=0")
	return err
}

// PullLocal copies commit (and its objects) from another local repo.
func (r *Repo) PullLocal(ctx context.Context, src *Repo, commit string) error {
	_, err := r.run(ctx, "pull-local", "--", src.Path, commit)
	return err
}
