package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/extend"
)

// AWSUploader makes the uploads of composes started with an aws upload
// profile (a composer.Uploader): the image build's streamOptimized vmdk
// goes through cosa's own S3 -> ImportSnapshot -> AMI path
// (extend.UploadAWSImage), with the profile's credentials when it has
// them, else the service's own (the SDK's default chain).
type AWSUploader struct {
	// S3Endpoint and EC2Endpoint replace AWS's endpoints (tests, S3 and
	// EC2 compatible clouds).
	S3Endpoint, EC2Endpoint string
	// WaitTimeout and PollInterval bound the waits for the snapshot
	// import (defaults: extend's).
	WaitTimeout, PollInterval time.Duration
}

var _ composer.Uploader = (*AWSUploader)(nil)

// awsSettings are the keys of composer-cli's aws profile; the secret ones
// are composer.SecretSettings.
var awsSettings = []string{"region", "bucket", "key", "accessKeyID", "secretAccessKey", "sessionToken"}

// uploadTypes are the image types whose image is a streamOptimized vmdk.
var uploadTypes = []string{"ami", "vmdk"}

// Check refuses an upload before its compose is queued.
func (u *AWSUploader) Check(up composer.Upload, imageType string) error {
	if up.Provider != "aws" {
		return fmt.Errorf("unknown provider %q: cosa uploads to aws", up.Provider)
	}
	if !slices.Contains(uploadTypes, imageType) {
		return fmt.Errorf("provider aws takes image type %s, not %s", strings.Join(uploadTypes, " or "), imageType)
	}
	_, _, err := u.options(up, "")
	return err
}

// options maps a profile onto extend's options; only setting names, never
// values of secrets, appear in its errors.
func (u *AWSUploader) options(up composer.Upload, defaultKey string) (extend.AWSOptions, string, error) {
	s := up.Settings
	var unknown []string
	for k := range s {
		if !slices.Contains(awsSettings, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return extend.AWSOptions{}, "", fmt.Errorf("unknown aws setting(s) %s: the settings are %s",
			strings.Join(unknown, ", "), strings.Join(awsSettings, ", "))
	}
	for _, k := range []string{"region", "bucket"} {
		if s[k] == "" {
			return extend.AWSOptions{}, "", fmt.Errorf("aws setting %s is missing", k)
		}
	}
	if up.ImageName == "" {
		return extend.AWSOptions{}, "", errors.New("no image name: it is the AMI's name")
	}
	o := extend.AWSOptions{
		Region: s["region"], Bucket: s["bucket"], Name: up.ImageName,
		S3Endpoint: u.S3Endpoint, EC2Endpoint: u.EC2Endpoint,
		WaitTimeout: u.WaitTimeout, PollInterval: u.PollInterval,
	}
	id, secret, token := s["accessKeyID"], s["secretAccessKey"], s["sessionToken"]
	switch {
	case id != "" && secret != "":
		o.Credentials = credentials.NewStaticCredentialsProvider(id, secret, token)
	case id != "" || secret != "":
		return extend.AWSOptions{}, "", errors.New("aws settings accessKeyID and secretAccessKey go together")
	case token != "":
		return extend.AWSOptions{}, "", errors.New("aws setting sessionToken needs accessKeyID and secretAccessKey")
	}
	key := s["key"]
	if key == "" {
		key = defaultKey
	}
	if key != "" && (key != filepath.Base(key) || key == "." || key == "..") {
		return extend.AWSOptions{}, "", fmt.Errorf("aws setting key %q: want an object name without /; put a prefix in bucket (BUCKET/PREFIX)", key)
	}
	if err := o.Validate(); err != nil {
		// extend's messages name the command's flags.
		msg := strings.NewReplacer("--region", "aws setting region", "--bucket", "aws setting bucket", "--name", "image name").Replace(err.Error())
		return extend.AWSOptions{}, "", errors.New(msg)
	}
	return o, key, nil
}

// Upload sends the image build's vmdk and returns the AMI id per region.
func (u *AWSUploader) Upload(ctx context.Context, job composer.UploadJob) (map[string]string, error) {
	o, key, err := u.options(job.Upload, job.ImageBuildID+"-disk.vmdk")
	if err != nil {
		return nil, err
	}
	var img *composer.Artifact
	for i, a := range job.Artifacts {
		if strings.HasSuffix(a.Name, ".vmdk") {
			img = &job.Artifacts[i]
			break
		}
	}
	if img == nil {
		return nil, fmt.Errorf("image build %s (%s) made no vmdk to upload", job.ImageBuildID, job.Type)
	}
	o.BuildID, o.Arch = job.BuildID, "x86_64"
	if o.BuildID == "" {
		o.BuildID = job.ImageBuildID
	}
	// The SDK's and the servers' texts go to the log; a credential echoed
	// in one of them never does.
	o.Events = &events.Text{W: &redactor{w: job.Log, secrets: secrets(job.Upload.Settings)}}
	amis, err := extend.UploadAWSImage(ctx, o, extend.AWSImage{
		Path: filepath.Join(job.OutputDir, img.Name), Key: key, Size: img.Size, Sha256: img.SHA256, OSName: job.Blueprint,
	})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range amis {
		out[a.Name] = a.HVM
	}
	return out, nil
}

func secrets(settings map[string]string) [][]byte {
	var out [][]byte
	for _, k := range composer.SecretSettings {
		if v := settings[k]; len(v) >= 4 {
			out = append(out, []byte(v))
		}
	}
	return out
}

// redactor masks secrets in what is written through it. The event sink
// writes whole lines, so a secret is never split across two writes.
type redactor struct {
	w       io.Writer
	secrets [][]byte
}

func (r *redactor) Write(p []byte) (int, error) {
	q := p
	for _, s := range r.secrets {
		q = bytes.ReplaceAll(q, s, []byte("[redacted]"))
	}
	if _, err := r.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
