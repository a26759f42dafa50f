package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/remote"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

type builduploadOptions struct {
	Build          string
	All            bool
	Artifacts      []string
	Force          bool
	DryRun         bool
	SkipBuildsJSON bool

	ACL           string
	EndpointURL   string
	AWSConfigFile string
}

func newBuilduploadCmd(g *globals) *cobra.Command {
	o := &builduploadOptions{}
	c := &cobra.Command{
		Use:   "buildupload [--build ID|--all] [--artifact NAME]... [--force] [--dry-run] [--skip-builds-json] s3 [flags] s3://BUCKET/PREFIX",
		Short: "Upload builds to remote storage",
		Long: `Upload builds to remote storage. Artifacts go first, then commitmeta.json,
pkglist.json and meta.json, and the remote builds.json is merged and written
last with a conditional write, so it never lists a build that is not
completely uploaded. Objects already present with the same sha256 are
skipped unless --force.`,
		Example: `  cosa buildupload s3 s3://my-bucket/fedora-like/builds
  cosa buildupload --all --dry-run s3 s3://my-bucket/builds
  cosa buildupload --artifact qemu s3 --endpoint-url http://127.0.0.1:7070 s3://test/builds`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return usageError{fmt.Errorf("give a target: cosa buildupload s3 s3://BUCKET/PREFIX")}
		},
	}
	pf := c.PersistentFlags()
	pf.StringVar(&o.Build, "build", "latest", "build id or tag to upload")
	pf.BoolVar(&o.All, "all", false, "upload every build on disk")
	pf.StringArrayVar(&o.Artifacts, "artifact", nil, "upload only this image (repeatable); a build is added to builds.json only once all its images are in the bucket")
	pf.BoolVar(&o.Force, "force", false, "upload even objects already present with the same sha256")
	pf.BoolVar(&o.DryRun, "dry-run", false, "print what would be uploaded, upload nothing")
	pf.BoolVar(&o.SkipBuildsJSON, "skip-builds-json", false, "do not update the remote builds.json")
	c.MarkFlagsMutuallyExclusive("build", "all")

	s3c := &cobra.Command{
		Use:   "s3 [--acl ACL] [--endpoint-url URL] [--aws-config-file FILE] s3://BUCKET/PREFIX",
		Short: "Upload to s3://BUCKET/PREFIX (builds.json and <id>/<arch>/<file>); the s3:// may be left out",
		Example: `  cosa buildupload s3 s3://my-bucket/builds
  cosa buildupload --build 12.20261122.dev.1 s3 --acl public-read s3://my-bucket/builds`,
		Args: maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("give the destination: s3://BUCKET/PREFIX")}
			}
			if !slices.Contains(remote.CannedACLs, o.ACL) {
				return usageError{fmt.Errorf("invalid --acl %q: want one of %s", o.ACL, strings.Join(remote.CannedACLs, ", "))}
			}
			dest, err := remote.ParseS3Location(args[0])
			if err != nil {
				return usageError{err}
			}
			_, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			var ids []string
			if o.All {
				idx, err := d.ReadIndex()
				if err != nil {
					return err
				}
				// Oldest first, so an interrupted --all has published
				// the older builds.
				for i := len(idx.Builds) - 1; i >= 0; i-- {
					if d.HasBuild(idx.Builds[i].ID) {
						ids = append(ids, idx.Builds[i].ID)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("there are no builds on disk to upload")
				}
			} else {
				id, err := resolveBuild(d, o.Build)
				if err != nil {
					return err
				}
				ids = []string{id}
			}
			client, err := remote.NewS3Client(c.Context(), remote.S3Config{EndpointURL: o.EndpointURL, ConfigFile: o.AWSConfigFile})
			if err != nil {
				return err
			}
			sent := collectObjects(g.events(), "uploaded", "would-upload")
			res, err := remote.Upload(c.Context(), remote.UploadOptions{
				Client: client, Dest: dest, Dir: d, Builds: ids, Artifacts: o.Artifacts,
				Force: o.Force, DryRun: o.DryRun, SkipIndex: o.SkipBuildsJSON, ACL: o.ACL,
				Events: sent,
			})
			if err != nil {
				return err
			}
			verb := "Uploaded"
			if o.DryRun {
				verb = "Dry run: nothing uploaded;"
			}
			indexed := res.Indexed
			if indexed == nil {
				indexed = []string{}
			}
			g.result(commandName(c), map[string]any{
				"destination": dest.String(), "builds": ids, "dry_run": o.DryRun,
				"uploaded": res.Uploaded, "skipped": res.Skipped, "bytes": res.Bytes,
				"duration_s": res.Elapsed.Seconds(), "mb_per_s": events.Round1(res.Rate()), "objects": sent.objects,
				"indexed": indexed, "builds_json_written": res.IndexWritten,
			}, fmt.Sprintf("%s %s to %s: %d objects uploaded (%s, %.1f MB/s), %d unchanged",
				verb, strings.Join(ids, ", "), dest, res.Uploaded, events.DecimalBytes(res.Bytes), res.Rate(), res.Skipped))
			return nil
		},
	}
	f := s3c.Flags()
	f.StringVar(&o.ACL, "acl", "private", "canned ACL for the uploaded objects ("+strings.Join(remote.CannedACLs, ", ")+")")
	f.StringVar(&o.EndpointURL, "endpoint-url", "", "S3-compatible endpoint, e.g. http://127.0.0.1:7070 (path-style addressing)")
	f.StringVar(&o.AWSConfigFile, "aws-config-file", "", "AWS shared config file to use instead of ~/.aws/config (like AWS_CONFIG_FILE)")
	s3c.RegisterFlagCompletionFunc("acl", completeWords(remote.CannedACLs...))
	c.AddCommand(s3c)
	return c
}

type buildfetchOptions struct {
	URL           string
	Build         string
	Arch          string
	Artifacts     []string
	Force         bool
	EndpointURL   string
	AWSConfigFile string
}

func newBuildfetchCmd(g *globals) *cobra.Command {
	o := &buildfetchOptions{}
	c := &cobra.Command{
		Use: "buildfetch --url URL [--build ID] [--artifact NAME|all]... [--force]",
		Example: `  cosa buildfetch --url s3://my-bucket/builds
  cosa buildfetch --url https://example.com/builds --build 12.20261122.dev.1 --artifact qemu
  cosa buildfetch --url /srv/builds --artifact all`,
		Short: "Fetch a build's metadata (and chosen artifacts) from remote storage",
		Long: `Fetch a build from s3://BUCKET/PREFIX, http(s)://..., file://... or a local
path laid out like builds/. By default only meta.json, commitmeta.json and
pkglist.json are fetched, which is enough for the next build to continue the
numbering and diff its packages; --artifact NAME fetches images too
(--artifact all for every one). Every artifact is verified against the
sha256 in meta.json. The remote builds.json is merged into the local one.`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if o.URL == "" {
				return usageError{fmt.Errorf("--url is required (s3://BUCKET/PREFIX, https://..., file://... or a path)")}
			}
			if o.Build != "" && o.Build != "latest" {
				if err := build.ValidBuildID(o.Build); err != nil {
					return usageError{err}
				}
			}
			src, err := remote.NewSource(c.Context(), o.URL, remote.S3Config{EndpointURL: o.EndpointURL, ConfigFile: o.AWSConfigFile})
			if err != nil {
				return usageError{err}
			}
			idle, err := fetchIdleTimeout()
			if err != nil {
				return usageError{err}
			}
			_, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			got := collectObjects(g.events(), "fetched")
			res, err := remote.Fetch(c.Context(), remote.FetchOptions{
				Source: src, Dir: d, Build: o.Build, Arch: o.Arch, Artifacts: o.Artifacts, Force: o.Force,
				IdleTimeout: idle, Events: got,
			})
			if err != nil {
				return err
			}
			g.result("buildfetch", map[string]any{
				"build": res.BuildID, "arch": res.Arch, "source": src.URL(""), "fetched": res.Fetched,
				"kept": res.Kept, "bytes": res.Bytes, "duration_s": res.Elapsed.Seconds(), "objects": got.objects,
			}, fmt.Sprintf("Fetched build %s (%s): %d files (%s), %d already present",
				termsafe.String(res.BuildID), termsafe.String(res.Arch), res.Fetched, events.DecimalBytes(res.Bytes), res.Kept))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.URL, "url", "", "where to fetch from: s3://BUCKET/PREFIX, http(s)://..., file://... or a path")
	f.StringVar(&o.Build, "build", "latest", "build id, or latest for the newest in the remote builds.json")
	f.StringVar(&o.Arch, "arch", compose.BaseArch(), "architecture")
	f.StringArrayVar(&o.Artifacts, "artifact", nil, "also fetch this image (repeatable), or \"all\"")
	f.BoolVar(&o.Force, "force", false, "overwrite a local build whose meta.json differs; re-download present artifacts")
	f.StringVar(&o.EndpointURL, "endpoint-url", "", "S3-compatible endpoint for s3:// URLs (path-style addressing)")
	f.StringVar(&o.AWSConfigFile, "aws-config-file", "", "AWS shared config file to use instead of ~/.aws/config")
	return c
}

// fetchIdleTimeout reads COSA_FETCH_IDLE_TIMEOUT: how long a download may
// receive nothing before buildfetch gives up (a duration such as "90s", or
// seconds); unset means remote.DefaultIdleTimeout.
func fetchIdleTimeout() (time.Duration, error) {
	v := os.Getenv("COSA_FETCH_IDLE_TIMEOUT")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil {
			return 0, fmt.Errorf("COSA_FETCH_IDLE_TIMEOUT=%q: want a duration such as 90s", v)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("COSA_FETCH_IDLE_TIMEOUT=%q: must be more than 0", v)
	}
	return d, nil
}
