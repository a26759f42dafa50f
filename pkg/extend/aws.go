package extend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/remote"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

// AWSOptions configure UploadAWS: the build's aws image (a streamOptimized
// vmdk) goes to S3, becomes an EBS snapshot through ImportSnapshot, and is
// registered as an AMI; --replicate copies the AMI to more regions.
// Credentials come from the SDK's default chain (environment, shared
// files, SSO, instance role).
type AWSOptions struct {
	Dir     *build.Dir
	BuildID string
	Arch    string
	AWS     config.AWS // image.yaml aws: volume-type, boot-mode

	Region     string   // where the snapshot and the AMI are made
	Bucket     string   // s3://BUCKET/PREFIX or BUCKET/PREFIX (remote.ParseS3Location)
	Name       string   // AMI name; default <name>-<buildid>-<arch>
	GrantUsers []string // account ids given launch permission
	Public     bool     // launch permission for everyone
	Replicate  []string // more regions to copy the AMI to

	S3Endpoint  string // custom S3 endpoint (path-style addressing)
	EC2Endpoint string // custom EC2 endpoint, for every region
	// Credentials, when set, replace the SDK's default chain (cosa serve
	// passes the ones of a compose's upload profile).
	Credentials aws.CredentialsProvider

	// WaitTimeout bounds the wait for the snapshot import and for each
	// copy (default 1 h); PollInterval is how often their state is asked
	// for (default 10 s).
	WaitTimeout  time.Duration
	PollInterval time.Duration
	// Events gets the progress: info lines, and an object event for the
	// vmdk's upload (or its skipping); nil drops them.
	Events events.Sink
}

var (
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)
	// AMI names: 3-128 characters of letters, digits and ( ) [ ] space . / - ' @ _
	amiNameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)
)

// TagBuildID is the tag carrying the cosa build id on AMIs and snapshots.
const TagBuildID = "cosa-build-id"

// Validate checks the options that need no AWS call or build.
func (o *AWSOptions) Validate() error {
	if !regionRE.MatchString(o.Region) {
		return fmt.Errorf("--region %q is not a region name (e.g. us-east-1)", o.Region)
	}
	seen := map[string]bool{o.Region: true}
	for _, r := range o.Replicate {
		if !regionRE.MatchString(r) {
			return fmt.Errorf("--replicate: %q is not a region name", r)
		}
		if seen[r] {
			return fmt.Errorf("--replicate: region %s given twice (or is --region)", r)
		}
		seen[r] = true
	}
	for _, u := range o.GrantUsers {
		if !accountRE.MatchString(u) {
			return fmt.Errorf("--grant-user %q: want a 12-digit AWS account id", u)
		}
	}
	if o.Name != "" && !amiNameRE.MatchString(o.Name) {
		return fmt.Errorf("--name %q: AMI names are 3-128 characters of letters, digits and ()[] ./-'@_", o.Name)
	}
	if _, err := remote.ParseS3Location(o.Bucket); err != nil {
		return fmt.Errorf("--bucket: %w", err)
	}
	switch o.AWS.BootMode {
	case "", "uefi", "legacy-bios", "uefi-preferred":
	default:
		return fmt.Errorf("aws.boot-mode %q: want uefi, legacy-bios or uefi-preferred", o.AWS.BootMode)
	}
	return nil
}

// prepare validates o and fills in the waits' defaults.
func (o *AWSOptions) prepare() error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = time.Hour
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	return nil
}

// UploadAWS uploads the build's aws image and registers it as an AMI in
// the region and each replicate region, recording every region in
// meta.json's amis as soon as its AMI exists (merged under the lock, so
// other regions' entries stay). It returns the AMIs made.
func UploadAWS(ctx context.Context, o AWSOptions) ([]build.AMI, error) {
	if err := o.prepare(); err != nil {
		return nil, err
	}
	meta, err := o.Dir.ReadMeta(o.BuildID, o.Arch)
	if err != nil {
		return nil, err
	}
	art, ok := meta.Images[platform.AWS]
	if !ok {
		return nil, fmt.Errorf("build %s has no aws image; run cosa buildextend-aws first", o.BuildID)
	}
	// What goes to S3 and becomes an AMI must be the file the build made.
	path, err := o.Dir.VerifyArtifact(ctx, o.BuildID, o.Arch, platform.AWS, art)
	if err != nil {
		return nil, err
	}
	return o.upload(ctx, AWSImage{Path: path, Key: art.Path, Size: art.Size, Sha256: art.Sha256, OSName: meta.Name}, o.record)
}

// AWSImage is a streamOptimized vmdk UploadAWSImage sends, wherever it is.
type AWSImage struct {
	Path   string // the file
	Key    string // object name under the bucket's prefix
	Size   int64
	Sha256 string
	OSName string // for the default AMI name and the descriptions
}

// UploadAWSImage is UploadAWS for a vmdk outside a builds dir (cosa serve's
// compose outputs): the same S3, ImportSnapshot and AMI steps; o.Dir is not
// used and no meta.json is updated.
func UploadAWSImage(ctx context.Context, o AWSOptions, img AWSImage) ([]build.AMI, error) {
	if err := o.prepare(); err != nil {
		return nil, err
	}
	if img.Key == "" || img.Key != filepath.Base(img.Key) {
		return nil, fmt.Errorf("object name %q is not a file name", img.Key)
	}
	return o.upload(ctx, img, nil)
}

// upload runs the steps after the checks: record, when set, is called with
// each region's AMI as soon as it exists.
func (o *AWSOptions) upload(ctx context.Context, img AWSImage, record func(context.Context, build.AMI) error) ([]build.AMI, error) {
	if err := checkVMDK(img.Path); err != nil {
		return nil, err
	}
	if record == nil {
		record = func(context.Context, build.AMI) error { return nil }
	}
	name := o.Name
	if name == "" {
		name = fmt.Sprintf("%s-%s-%s", img.OSName, o.BuildID, o.Arch)
	}
	if !amiNameRE.MatchString(name) {
		return nil, fmt.Errorf("AMI name %q is not valid; pass --name", name)
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(o.Region)}
	if o.Credentials != nil {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	loc, _ := remote.ParseS3Location(o.Bucket)
	bucket, key := loc.Bucket, loc.Key(img.Key)
	art := build.Artifact{Path: img.Key, Size: img.Size, Sha256: img.Sha256}
	if err := o.uploadS3(ctx, cfg, img.Path, bucket, key, art); err != nil {
		return nil, err
	}

	primary := o.ec2Client(cfg, o.Region)
	snap, err := o.importSnapshot(ctx, primary, bucket, key, img.OSName)
	if err != nil {
		return nil, err
	}
	ami, err := o.register(ctx, primary, name, snap)
	if err != nil {
		return nil, err
	}
	if err := o.finish(ctx, primary, name, ami, snap); err != nil {
		return nil, err
	}
	made := []build.AMI{{Name: o.Region, HVM: ami, Snapshot: snap}}
	if err := record(ctx, made[0]); err != nil {
		return made, err
	}
	o.infof("Registered %s (%s) in %s", ami, snap, o.Region)

	for _, r := range o.Replicate {
		c := o.ec2Client(cfg, r)
		a, err := o.copyTo(ctx, c, r, name, ami)
		if err != nil {
			return made, fmt.Errorf("replicating %s to %s: %w", ami, r, err)
		}
		if err := o.finish(ctx, c, name, a.HVM, a.Snapshot); err != nil {
			return made, fmt.Errorf("replicating %s to %s: %w", ami, r, err)
		}
		made = append(made, a)
		if err := record(ctx, a); err != nil {
			return made, err
		}
		o.infof("Copied %s to %s as %s (%s)", ami, r, a.HVM, a.Snapshot)
	}
	return made, nil
}

// infof reports a step of the upload. Ids and status text are the
// server's: the sink escapes what a terminal would act on.
func (o *AWSOptions) infof(format string, args ...any) {
	events.Emit(o.Events, events.Event{Type: events.Info, Message: fmt.Sprintf(format, args...)})
}

// checkVMDK refuses to upload anything but a sparse vmdk: ImportSnapshot
// would take the upload and fail minutes later.
func checkVMDK(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "KDMV" {
		return fmt.Errorf("%s is not a sparse (streamOptimized) vmdk", filepath.Base(path))
	}
	return nil
}

func (o *AWSOptions) ec2Client(cfg aws.Config, region string) *ec2.Client {
	return ec2.NewFromConfig(cfg, func(opt *ec2.Options) {
		opt.Region = region
		if o.EC2Endpoint != "" {
			opt.BaseEndpoint = aws.String(o.EC2Endpoint)
		}
	})
}

// uploadS3 puts the vmdk at bucket/key unless an object of the same size
// recorded with the same sha256 is already there.
func (o *AWSOptions) uploadS3(ctx context.Context, cfg aws.Config, path, bucket, key string, art build.Artifact) error {
	client := s3.NewFromConfig(cfg, func(opt *s3.Options) {
		if o.S3Endpoint != "" {
			opt.BaseEndpoint = aws.String(o.S3Endpoint)
			opt.UsePathStyle = true
		}
	})
	if h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err == nil &&
		aws.ToInt64(h.ContentLength) == art.Size && h.Metadata["sha256"] == art.Sha256 {
		events.Emit(o.Events, events.Event{Type: events.Object, Action: "skipped", Object: "s3://" + bucket + "/" + key,
			Bytes: art.Size, Message: "already uploaded"})
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	o.infof("Uploading %s (%d MiB) to s3://%s/%s", art.Path, art.Size>>20, bucket, key)
	t0 := time.Now()
	up := manager.NewUploader(client)
	if _, err := up.Upload(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: &key, Body: f,
		ContentType: aws.String("application/octet-stream"),
		Metadata:    map[string]string{"sha256": art.Sha256},
	}); err != nil {
		return fmt.Errorf("uploading to s3://%s/%s: %w", bucket, key, err)
	}
	d := time.Since(t0)
	events.Emit(o.Events, events.Event{Type: events.Object, Action: "uploaded", Object: "s3://" + bucket + "/" + key,
		Bytes: art.Size, DurationS: d.Seconds(), MBPerS: events.Rate(art.Size, d)})
	return nil
}

// waitFor calls poll every PollInterval until it reports done or an
// error, or WaitTimeout passes.
func (o *AWSOptions) waitFor(ctx context.Context, what string, poll func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, o.WaitTimeout)
	defer cancel()
	tick := time.NewTicker(o.PollInterval)
	defer tick.Stop()
	for {
		done, err := poll(ctx)
		if err != nil || done {
			if ctx.Err() != nil && err != nil {
				return fmt.Errorf("waiting for %s: timed out after %s", what, o.WaitTimeout)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: timed out after %s", what, o.WaitTimeout)
		case <-tick.C:
		}
	}
}

func (o *AWSOptions) importSnapshot(ctx context.Context, c *ec2.Client, bucket, key, osName string) (string, error) {
	desc := fmt.Sprintf("%s %s %s", osName, o.BuildID, o.Arch)
	out, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		Description: aws.String(desc),
		DiskContainer: &ec2types.SnapshotDiskContainer{
			Description: aws.String(desc),
			Format:      aws.String("VMDK"),
			UserBucket:  &ec2types.UserBucket{S3Bucket: aws.String(bucket), S3Key: aws.String(key)},
		},
	})
	if err != nil {
		return "", fmt.Errorf("ImportSnapshot: %w", err)
	}
	task := aws.ToString(out.ImportTaskId)
	events.Emit(o.Events, events.Event{Type: events.Info, ID: task, Message: "Importing snapshot (task " + task + ")"})
	var snap string
	lastProgress := ""
	err = o.waitFor(ctx, "import task "+task, func(ctx context.Context) (bool, error) {
		d, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return false, fmt.Errorf("DescribeImportSnapshotTasks: %w", err)
		}
		if len(d.ImportSnapshotTasks) != 1 || d.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return false, fmt.Errorf("DescribeImportSnapshotTasks: task %s not found", task)
		}
		det := d.ImportSnapshotTasks[0].SnapshotTaskDetail
		switch st := aws.ToString(det.Status); st {
		case "completed":
			snap = aws.ToString(det.SnapshotId)
			if snap == "" {
				return false, fmt.Errorf("import task %s completed without a snapshot id", task)
			}
			return true, nil
		case "deleting", "deleted":
			return false, fmt.Errorf("import task %s failed: %s", termsafe.String(task), termsafe.String(aws.ToString(det.StatusMessage)))
		default:
			if p := aws.ToString(det.Progress); p != lastProgress {
				// Status, progress and message are the server's text.
				events.Emit(o.Events, events.Event{Type: events.Info, ID: task,
					Message: fmt.Sprintf("  %s %s%% %s", st, p, aws.ToString(det.StatusMessage))})
				lastProgress = p
			}
			return false, nil
		}
	})
	return snap, err
}

func (o *AWSOptions) register(ctx context.Context, c *ec2.Client, name, snap string) (string, error) {
	vol := o.AWS.VolumeType
	if vol == "" {
		vol = "gp3"
	}
	mode := o.AWS.BootMode
	if mode == "" {
		mode = "uefi-preferred"
	}
	const root = "/dev/xvda"
	out, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               aws.String(name),
		Description:        aws.String(fmt.Sprintf("%s (cosa build %s)", name, o.BuildID)),
		Architecture:       ec2types.ArchitectureValuesX8664,
		VirtualizationType: aws.String("hvm"),
		EnaSupport:         aws.Bool(true),
		SriovNetSupport:    aws.String("simple"),
		BootMode:           ec2types.BootModeValues(mode),
		RootDeviceName:     aws.String(root),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{
			DeviceName: aws.String(root),
			Ebs: &ec2types.EbsBlockDevice{
				SnapshotId:          aws.String(snap),
				VolumeType:          ec2types.VolumeType(vol),
				DeleteOnTermination: aws.Bool(true),
			},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("RegisterImage: %w", err)
	}
	return aws.ToString(out.ImageId), nil
}

// finish tags an AMI and its snapshot and grants launch permissions.
func (o *AWSOptions) finish(ctx context.Context, c *ec2.Client, name, ami, snap string) error {
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{ami, snap},
		Tags: []ec2types.Tag{
			{Key: aws.String("Name"), Value: aws.String(name)},
			{Key: aws.String(TagBuildID), Value: aws.String(o.BuildID)},
		},
	}); err != nil {
		return fmt.Errorf("CreateTags: %w", err)
	}
	var perms []ec2types.LaunchPermission
	for _, u := range o.GrantUsers {
		perms = append(perms, ec2types.LaunchPermission{UserId: aws.String(u)})
	}
	if o.Public {
		perms = append(perms, ec2types.LaunchPermission{Group: ec2types.PermissionGroupAll})
	}
	if len(perms) > 0 {
		if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId:          aws.String(ami),
			LaunchPermission: &ec2types.LaunchPermissionModifications{Add: perms},
		}); err != nil {
			return fmt.Errorf("ModifyImageAttribute: %w", err)
		}
	}
	// Granted accounts also get the snapshot, so they can copy the AMI.
	if len(o.GrantUsers) > 0 {
		var vp []ec2types.CreateVolumePermission
		for _, u := range o.GrantUsers {
			vp = append(vp, ec2types.CreateVolumePermission{UserId: aws.String(u)})
		}
		if _, err := c.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
			SnapshotId:             aws.String(snap),
			Attribute:              ec2types.SnapshotAttributeNameCreateVolumePermission,
			CreateVolumePermission: &ec2types.CreateVolumePermissionModifications{Add: vp},
		}); err != nil {
			return fmt.Errorf("ModifySnapshotAttribute: %w", err)
		}
	}
	return nil
}

// copyTo copies the AMI from the primary region with the destination
// region's client and waits until the copy is available, which is when
// its snapshot id is known.
func (o *AWSOptions) copyTo(ctx context.Context, c *ec2.Client, region, name, ami string) (build.AMI, error) {
	out, err := c.CopyImage(ctx, &ec2.CopyImageInput{
		Name:          aws.String(name),
		Description:   aws.String(fmt.Sprintf("%s (cosa build %s)", name, o.BuildID)),
		SourceImageId: aws.String(ami),
		SourceRegion:  aws.String(o.Region),
	})
	if err != nil {
		return build.AMI{}, fmt.Errorf("CopyImage: %w", err)
	}
	id := aws.ToString(out.ImageId)
	o.infof("Copying %s to %s as %s", ami, region, id)
	var snap string
	err = o.waitFor(ctx, "copy "+id, func(ctx context.Context) (bool, error) {
		d, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if err != nil {
			var ae smithy.APIError
			// A fresh copy can be briefly unknown to DescribeImages.
			if errors.As(err, &ae) && ae.ErrorCode() == "InvalidAMIID.NotFound" {
				return false, nil
			}
			return false, fmt.Errorf("DescribeImages: %w", err)
		}
		if len(d.Images) != 1 {
			return false, nil
		}
		img := d.Images[0]
		switch img.State {
		case ec2types.ImageStateAvailable:
			for _, b := range img.BlockDeviceMappings {
				if aws.ToString(b.DeviceName) == aws.ToString(img.RootDeviceName) && b.Ebs != nil {
					snap = aws.ToString(b.Ebs.SnapshotId)
				}
			}
			if snap == "" {
				return false, fmt.Errorf("%s has no root EBS snapshot", id)
			}
			return true, nil
		case ec2types.ImageStateFailed, ec2types.ImageStateError, ec2types.ImageStateInvalid, ec2types.ImageStateDeregistered:
			msg := ""
			if img.StateReason != nil {
				msg = termsafe.String(aws.ToString(img.StateReason.Message))
			}
			return false, fmt.Errorf("%s is %s: %s", id, img.State, msg)
		}
		return false, nil
	})
	return build.AMI{Name: region, HVM: id, Snapshot: snap}, err
}

// record merges one region's AMI into meta.json's amis.
func (o *AWSOptions) record(ctx context.Context, a build.AMI) error {
	return o.Dir.UpdateMeta(ctx, o.BuildID, o.Arch, func(m *build.Meta) error {
		m.AMIs = MergeAMI(m.AMIs, a)
		return nil
	})
}

// MergeAMI replaces the entry for a's region or appends it.
func MergeAMI(list []build.AMI, a build.AMI) []build.AMI {
	out := append([]build.AMI(nil), list...)
	for i := range out {
		if out[i].Name == a.Name {
			out[i] = a
			return out
		}
	}
	return append(out, a)
}
