package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/platform"
)

type buildextendOptions struct {
	Build string
	Force bool

	// aws only: --upload and what it needs.
	Upload       bool
	Region       string
	Bucket       string
	Name         string
	GrantUsers   []string
	Public       bool
	Replicate    []string
	S3Endpoint   string
	EC2Endpoint  string
	WaitTimeout  time.Duration
	PollInterval time.Duration
}

// awsUploadFlags are the flags that only mean something with --upload.
var awsUploadFlags = []string{"region", "bucket", "name", "grant-user", "public", "replicate", "endpoint-url", "ec2-endpoint-url", "wait-timeout", "poll-interval"}

// newBuildextendCmds makes one buildextend-<platform> command per entry
// of the platform table.
func newBuildextendCmds(g *globals) []*cobra.Command {
	var cmds []*cobra.Command
	for _, p := range platform.All() {
		o := &buildextendOptions{}
		c := &cobra.Command{
			Use:     "buildextend-" + p.Name + " [--build ID] [--force]",
			Short:   "Add the " + p.Name + " disk image (" + p.Format + ") to a build",
			Aliases: p.Aliases,
			Example: fmt.Sprintf(`  cosa buildextend-%[1]s
  cosa buildextend-%[1]s --build 12.20261122.dev.1 --force`, p.Name),
			Args: maxArgs(0),
			RunE: func(c *cobra.Command, args []string) error {
				if p.Upload == platform.UploadAMI {
					if err := checkAWSFlags(c, o); err != nil {
						return err
					}
				}
				w, cfg, err := g.openConfig()
				if err != nil {
					return err
				}
				if err := needTools("ostree"); err != nil {
					return err
				}
				d, id, err := g.resolveIn(w, o.Build)
				if err != nil {
					return err
				}
				logf := &lazyLog{path: filepath.Join(w.TmpDir(), "logs", "buildextend-"+p.Name+".log")}
				defer logf.Close()
				// Without --force an existing image is kept, so --upload
				// builds the vmdk only when the build has none.
				arch := compose.BaseArch()
				res, err := extend.BuildExtend(c.Context(), extend.Options{
					Workdir: w, Config: cfg, Dir: d, BuildID: id, Arch: arch, Platform: p, Force: o.Force,
					Events: g.events(), Log: logf, Out: g.summaryOut(),
				})
				if err != nil {
					return err
				}
				payload := map[string]any{"build": id, "arch": arch, "platform": p.Name, "changed": res.Added,
					"artifacts": []artifactRef{newArtifactRef(id, arch, p.Name, res.Artifact)}}
				if res.Added {
					payload["stages_run"], payload["pipelines_cached"] = res.Ran, res.Cached
				}
				if o.Upload {
					ao := o.awsOptions()
					ao.Dir, ao.BuildID, ao.Arch, ao.AWS, ao.Events = d, id, arch, cfg.Image.AWS, g.events()
					amis, err := extend.UploadAWS(c.Context(), *ao)
					if err != nil {
						return err
					}
					payload["amis"] = amis
				}
				g.result(c.Name(), payload, "")
				return nil
			},
		}
		c.Flags().StringVar(&o.Build, "build", "latest", "build id or tag")
		c.Flags().BoolVar(&o.Force, "force", false, "rebuild the image even if the build has one")
		if p.Upload == platform.UploadAMI {
			c.Use = "buildextend-" + p.Name + " [--build ID] [--force] [--upload --region REGION --bucket s3://BUCKET/PREFIX [--name NAME] [--grant-user ID]... [--public] [--replicate REGION,...]]"
			c.Example = fmt.Sprintf(`  cosa buildextend-%[1]s
  cosa buildextend-%[1]s --upload --region us-east-1 --bucket s3://my-bucket/vmdk
  cosa buildextend-%[1]s --upload --region eu-west-1 --bucket s3://my-bucket/vmdk --replicate eu-central-1,us-east-1 --public`, p.Name)
			c.Short += "; --upload makes it an AMI"
			f := c.Flags()
			f.BoolVar(&o.Upload, "upload", false, "upload the vmdk to S3, import it as an EBS snapshot and register an AMI (recorded in meta.json amis)")
			f.StringVar(&o.Region, "region", "", "AWS region of the snapshot and AMI")
			f.StringVar(&o.Bucket, "bucket", "", "s3://BUCKET/PREFIX to upload the vmdk to, in --region (the s3:// may be left out)")
			f.StringVar(&o.Name, "name", "", "AMI name (default <name>-<build id>-<arch>)")
			f.StringArrayVar(&o.GrantUsers, "grant-user", nil, "AWS account id to give launch permission (repeatable)")
			f.BoolVar(&o.Public, "public", false, "make the AMI public")
			f.StringSliceVar(&o.Replicate, "replicate", nil, "more regions to copy the AMI to (comma-separated)")
			f.StringVar(&o.S3Endpoint, "endpoint-url", "", "S3 endpoint URL (path-style addressing), e.g. a local S3 server")
			f.StringVar(&o.EC2Endpoint, "ec2-endpoint-url", "", "EC2 endpoint URL used for every region")
			f.DurationVar(&o.WaitTimeout, "wait-timeout", time.Hour, "how long to wait for the snapshot import and each copy")
			f.DurationVar(&o.PollInterval, "poll-interval", 10*time.Second, "how often to ask EC2 about the import and copies")
			c.MarkFlagsRequiredTogether("upload", "region", "bucket")
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// checkAWSFlags refuses upload flags without --upload, before anything is
// built. (--upload, --region and --bucket are a cobra flag group.)
func checkAWSFlags(c *cobra.Command, o *buildextendOptions) error {
	if !o.Upload {
		for _, name := range awsUploadFlags {
			if c.Flags().Changed(name) {
				return usageError{fmt.Errorf("--%s needs --upload", name)}
			}
		}
		return nil
	}
	if err := o.awsOptions().Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

func (o *buildextendOptions) awsOptions() *extend.AWSOptions {
	return &extend.AWSOptions{Region: o.Region, Bucket: o.Bucket, Name: o.Name, GrantUsers: o.GrantUsers, Public: o.Public,
		Replicate: o.Replicate, S3Endpoint: o.S3Endpoint, EC2Endpoint: o.EC2Endpoint, WaitTimeout: o.WaitTimeout,
		PollInterval: o.PollInterval}
}
