package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/images"
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

// newBuildextendCmds makes one buildextend-<platform> command per platform.
func newBuildextendCmds(g *globals) []*cobra.Command {
	var cmds []*cobra.Command
	for _, p := range images.Platforms() {
		p := p
		o := &buildextendOptions{}
		c := &cobra.Command{
			Use:   "buildextend-" + string(p) + " [--build ID] [--force]",
			Short: "Add the " + string(p) + " disk image to a build",
			Args:  maxArgs(0),
			RunE: func(c *cobra.Command, args []string) error {
				if p == images.PlatformAWS {
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
				logf := &lazyLog{path: filepath.Join(w.TmpDir(), "logs", "buildextend-"+string(p)+".log")}
				defer logf.Close()
				// Without --force an existing image is kept, so --upload
				// builds the vmdk only when the build has none.
				if err := extend.BuildExtend(c.Context(), extend.Options{
					Workdir: w, Config: cfg, Dir: d, BuildID: id, Arch: compose.BaseArch(), Platform: p, Force: o.Force,
					Events: g.events(), Log: logf, Out: g.Stdout,
				}); err != nil || !o.Upload {
					return err
				}
				ao := o.awsOptions()
				ao.Dir, ao.BuildID, ao.Arch, ao.AWS, ao.Out = d, id, compose.BaseArch(), cfg.Image.AWS, g.Stdout
				_, err = extend.UploadAWS(c.Context(), *ao)
				return err
			},
		}
		c.Flags().StringVar(&o.Build, "build", "latest", "build id")
		c.Flags().BoolVar(&o.Force, "force", false, "rebuild the image even if the build has one")
		if p == images.PlatformAWS {
			c.Use = "buildextend-aws [--build ID] [--force] [--upload --region R --bucket s3://B/P [--name N] [--grant-user ID]... [--public] [--replicate R2,R3]]"
			c.Short = "Add the aws disk image (streamOptimized vmdk) to a build; --upload makes it an AMI"
			c.Aliases = []string{"buildextend-ec2"}
			f := c.Flags()
			f.BoolVar(&o.Upload, "upload", false, "upload the vmdk to S3, import it as an EBS snapshot and register an AMI (recorded in meta.json amis)")
			f.StringVar(&o.Region, "region", "", "AWS region of the snapshot and AMI")
			f.StringVar(&o.Bucket, "bucket", "", "s3://BUCKET[/PREFIX] to upload the vmdk to (in --region)")
			f.StringVar(&o.Name, "name", "", "AMI name (default <name>-<build id>-<arch>)")
			f.StringArrayVar(&o.GrantUsers, "grant-user", nil, "AWS account id to give launch permission (repeatable)")
			f.BoolVar(&o.Public, "public", false, "make the AMI public")
			f.StringSliceVar(&o.Replicate, "replicate", nil, "more regions to copy the AMI to (comma-separated)")
			f.StringVar(&o.S3Endpoint, "endpoint-url", "", "S3 endpoint URL (path-style addressing), e.g. a local S3 server")
			f.StringVar(&o.EC2Endpoint, "ec2-endpoint-url", "", "EC2 endpoint URL used for every region")
			f.DurationVar(&o.WaitTimeout, "wait-timeout", time.Hour, "how long to wait for the snapshot import and each copy")
			f.DurationVar(&o.PollInterval, "poll-interval", 10*time.Second, "how often to ask EC2 about the import and copies")
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// checkAWSFlags refuses upload flags without --upload and an upload
// without --region or --bucket, before anything is built.
func checkAWSFlags(c *cobra.Command, o *buildextendOptions) error {
	if !o.Upload {
		for _, name := range awsUploadFlags {
			if c.Flags().Changed(name) {
				return usageError{fmt.Errorf("--%s needs --upload", name)}
			}
		}
		return nil
	}
	if o.Region == "" || o.Bucket == "" {
		return usageError{fmt.Errorf("--upload needs --region and --bucket s3://BUCKET[/PREFIX]")}
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

func (g *globals) events() *images.Printer {
	if g.JSON {
		return &images.Printer{W: g.Stdout, JSON: true}
	}
	return &images.Printer{W: g.Stderr}
}
