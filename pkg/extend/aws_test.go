package extend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cosa-build/cosa/internal/ec2double"
	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
)

const (
	testBuild  = "12.20261122.dev.0"
	testBucket = "images"
)

// awsFixture is a builds/ dir holding one build with an aws image, an
// in-process S3 (gofakes3) and the EC2 TEST DOUBLE, with static test
// credentials in the environment (the SDK's default chain reads them).
type awsFixture struct {
	dir   *build.Dir
	s3    *s3mem.Backend
	s3URL string
	ec2   *ec2double.Double // a TEST DOUBLE of EC2: there is no EC2 emulator to run here
}

// fakeVMDK is the start of a streamOptimized vmdk: the sparse header
// magic and an embedded descriptor, padded.
func fakeVMDK() []byte {
	b := append([]byte("KDMV\x03\x00\x00\x00"), make([]byte, 504)...)
	b = append(b, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n")...)
	return append(b, bytes.Repeat([]byte{0}, 6<<20)...) // > one 5 MiB part: a multipart upload
}

func newAWSFixture(t *testing.T, vmdk []byte) *awsFixture {
	t.Helper()
	testutil.IsolateAWS(t, "AKIDCOSATEST", "cosa-test-secret-not-real", "")

	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(s3srv.Close)

	d := &build.Dir{Root: filepath.Join(t.TempDir(), "builds"), LockTimeout: 10 * time.Second}
	arch := d.BuildDir(testBuild, "x86_64")
	if err := os.MkdirAll(arch, 0o755); err != nil {
		t.Fatal(err)
	}
	art := "testos-" + testBuild + "-aws.x86_64.vmdk"
	if err := os.WriteFile(filepath.Join(arch, art), vmdk, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(vmdk)
	m := &build.Meta{
		BuildID: testBuild, Name: "testos", OSTreeCommit: strings.Repeat("a", 64),
		OSTreeTimestamp: "2026-11-22T10:00:00Z", OSTreeVersion: testBuild, BaseArch: "x86_64",
		Images: map[string]build.Artifact{
			"ostree": {Path: "testos-" + testBuild + "-ostree.x86_64.tar", Sha256: strings.Repeat("b", 64), Size: 1},
			"aws":    {Path: art, Sha256: hex.EncodeToString(sum[:]), Size: int64(len(vmdk))},
		},
	}
	if err := d.WriteMeta(testBuild, "x86_64", m); err != nil {
		t.Fatal(err)
	}
	return &awsFixture{dir: d, s3: backend, s3URL: s3srv.URL, ec2: ec2double.Start(t, ec2double.FromS3mem(backend))}
}

func (f *awsFixture) opts() AWSOptions {
	return AWSOptions{
		Dir: f.dir, BuildID: testBuild, Arch: "x86_64",
		AWS:    config.AWS{VolumeType: "gp3", BootMode: "uefi"},
		Region: "us-east-1", Bucket: "s3://" + testBucket + "/ami/",
		S3Endpoint: f.s3URL, EC2Endpoint: f.ec2.URL,
		WaitTimeout: 10 * time.Second, PollInterval: time.Millisecond,
	}
}

func (f *awsFixture) amis(t *testing.T) []build.AMI {
	t.Helper()
	m, err := f.dir.ReadMeta(testBuild, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	return m.AMIs
}

func TestUploadAWS(t *testing.T) {
	vmdk := fakeVMDK()
	f := newAWSFixture(t, vmdk)
	// An entry for another region from an earlier run must survive.
	if err := f.dir.UpdateMeta(context.Background(), testBuild, "x86_64", func(m *build.Meta) error {
		m.AMIs = []build.AMI{{Name: "ap-south-1", HVM: "ami-0old", Snapshot: "snap-0old"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	o := f.opts()
	o.GrantUsers = []string{"123456789012"}
	o.Public = true
	o.Replicate = []string{"us-west-2", "eu-west-1"}
	var out bytes.Buffer
	o.Events = &events.Text{W: &out}
	made, err := UploadAWS(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("upload output:\n%s", out.String())
	if len(made) != 3 {
		t.Fatalf("made %+v", made)
	}

	// The object is in S3 with the vmdk's bytes.
	obj, err := f.s3.GetObject(testBucket, "ami/testos-"+testBuild+"-aws.x86_64.vmdk", nil)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != int64(len(vmdk)) {
		t.Errorf("S3 object is %d bytes, want %d", obj.Size, len(vmdk))
	}
	obj.Contents.Close()

	// The AMI as EC2 recorded it.
	ims := f.ec2.RegionImages("us-east-1")
	if len(ims) != 1 {
		t.Fatalf("us-east-1 images: %+v", ims)
	}
	im := ims[0]
	if im.Name != "testos-"+testBuild+"-x86_64" || im.Arch != "x86_64" || im.Virt != "hvm" || !im.ENA ||
		im.Root != "/dev/xvda" || im.VolumeType != "gp3" || im.BootMode != "uefi" {
		t.Errorf("registered image %+v", im)
	}
	if im.Tags["Name"] != im.Name || im.Tags[TagBuildID] != testBuild {
		t.Errorf("image tags %v", im.Tags)
	}
	if !im.Public || len(im.LaunchUsers) != 1 || im.LaunchUsers[0] != "123456789012" {
		t.Errorf("launch permissions: public %v users %v", im.Public, im.LaunchUsers)
	}
	snap, _ := f.ec2.SnapshotByID(im.Snapshot)
	if snap.Tags[TagBuildID] != testBuild || len(snap.VolumePerms) != 1 {
		t.Errorf("snapshot %+v", snap)
	}
	if n := f.ec2.CallCount("DescribeImportSnapshotTasks"); n < f.ec2.PollsToComplete {
		t.Errorf("import task polled %d times", n)
	}
	for _, r := range []string{"us-west-2", "eu-west-1"} {
		ims := f.ec2.RegionImages(r)
		if len(ims) != 1 || ims[0].CopiedFrom != im.ID || ims[0].CopiedRegion != "us-east-1" || ims[0].State != "available" ||
			!ims[0].Public || ims[0].Tags[TagBuildID] != testBuild {
			t.Errorf("%s images: %+v", r, ims)
		}
	}

	// meta.json: the old region kept, one entry per new region, each
	// with the ids EC2 handed out.
	amis := f.amis(t)
	want := map[string]build.AMI{"ap-south-1": {Name: "ap-south-1", HVM: "ami-0old", Snapshot: "snap-0old"}}
	for _, a := range made {
		want[a.Name] = a
	}
	if len(amis) != 4 {
		t.Fatalf("amis %+v", amis)
	}
	for _, a := range amis {
		if want[a.Name] != a || !strings.HasPrefix(a.HVM, "ami-") || !strings.HasPrefix(a.Snapshot, "snap-") {
			t.Errorf("amis entry %+v, want %+v", a, want[a.Name])
		}
	}
	if amis[1].Name != "us-east-1" || amis[1].HVM != im.ID || amis[1].Snapshot != im.Snapshot {
		t.Errorf("us-east-1 entry %+v, image %s/%s", amis[1], im.ID, im.Snapshot)
	}

	// Again under another name: the upload is skipped (same sha256), the
	// region's entry replaced, not duplicated.
	o.Name, o.Replicate, o.GrantUsers, o.Public = "testos-respin", nil, nil, false
	out.Reset()
	again, err := UploadAWS(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "already uploaded") {
		t.Errorf("second run re-uploaded:\n%s", out.String())
	}
	amis = f.amis(t)
	if len(amis) != 4 || amis[1].Name != "us-east-1" || amis[1].HVM != again[0].HVM || amis[1].HVM == im.ID {
		t.Errorf("after a second upload amis = %+v", amis)
	}
}

func TestUploadAWSDuplicateName(t *testing.T) {
	f := newAWSFixture(t, fakeVMDK())
	o := f.opts()
	if _, err := UploadAWS(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	_, err := UploadAWS(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "InvalidAMIName.Duplicate") {
		t.Fatalf("second registration under one name: %v", err)
	}
	if amis := f.amis(t); len(amis) != 1 {
		t.Errorf("amis %+v", amis)
	}
}

func TestUploadAWSRejectsWhatEC2Would(t *testing.T) {
	ctx := context.Background()
	f := newAWSFixture(t, fakeVMDK())
	o := f.opts()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(o.Region))
	if err != nil {
		t.Fatal(err)
	}
	c := o.ec2Client(cfg, o.Region)
	put := func(key string, data []byte) {
		if _, err := f.s3.PutObject(testBucket, key, nil, bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("raw.vmdk", append([]byte{0xeb, 0x63, 0x90}, make([]byte, 4096)...)) // an MBR, not a vmdk
	put("mono.vmdk", append([]byte("KDMV\x01\x00\x00\x00"), []byte(`createType="monolithicSparse"`)...))

	for _, tc := range []struct{ key, want string }{
		{"missing.vmdk", "Unable to read"},
		{"raw.vmdk", "Unsupported VMDK File Format"},
		{"mono.vmdk", "not streamOptimized"},
	} {
		_, err := o.importSnapshot(ctx, c, testBucket, tc.key, "testos")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("import of %s: %v, want %q", tc.key, err, tc.want)
		}
	}
	// A format EC2 does not know is refused at once.
	_, err = c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &ec2types.SnapshotDiskContainer{
		Format: aws.String("QCOW2"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(testBucket), S3Key: aws.String("raw.vmdk")}}})
	if err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Errorf("QCOW2 import: %v", err)
	}
	// A real vmdk declared as RAW fails validation.
	put("good.vmdk", fakeVMDK()[:4096])
	out, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &ec2types.SnapshotDiskContainer{
		Format: aws.String("RAW"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(testBucket), S3Key: aws.String("good.vmdk")}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < f.ec2.PollsToComplete; i++ {
		d, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{*out.ImportTaskId}})
		if err != nil {
			t.Fatal(err)
		}
		if i == f.ec2.PollsToComplete-1 && aws.ToString(d.ImportSnapshotTasks[0].SnapshotTaskDetail.Status) != "deleted" {
			t.Errorf("RAW import of a vmdk: %+v", d.ImportSnapshotTasks[0].SnapshotTaskDetail)
		}
	}
	// RegisterImage with a snapshot EC2 never made.
	if _, err := o.register(ctx, c, "testos-bogus", "snap-0123456789abcdef0"); err == nil || !strings.Contains(err.Error(), "InvalidSnapshot.NotFound") {
		t.Errorf("register with an unknown snapshot: %v", err)
	}
	// A snapshot of another region is unknown here too.
	snap, err := o.importSnapshot(ctx, c, testBucket, "good.vmdk", "testos")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.register(ctx, o.ec2Client(cfg, "eu-west-1"), "testos-x", snap); err == nil || !strings.Contains(err.Error(), "InvalidSnapshot.NotFound") {
		t.Errorf("register in eu-west-1 with a us-east-1 snapshot: %v", err)
	}
	// Bad boot mode reaches EC2 only if the config check is bypassed.
	bad := o
	bad.AWS.BootMode = "bios"
	if _, err := bad.register(ctx, c, "testos-y", snap); err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Errorf("boot mode bios: %v", err)
	}
	if f.amis(t) != nil {
		t.Errorf("failed calls recorded amis: %+v", f.amis(t))
	}
}

func TestUploadAWSErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("not a vmdk", func(t *testing.T) {
		f := newAWSFixture(t, []byte("QFI\xfb not a vmdk"))
		_, err := UploadAWS(ctx, f.opts())
		if err == nil || !strings.Contains(err.Error(), "not a sparse") {
			t.Fatalf("err = %v", err)
		}
		if f.ec2.CallCount("ImportSnapshot") != 0 {
			t.Error("ImportSnapshot called for a non-vmdk")
		}
	})
	t.Run("import timeout", func(t *testing.T) {
		f := newAWSFixture(t, fakeVMDK())
		f.ec2.PollsToComplete = 1 << 30
		o := f.opts()
		o.WaitTimeout, o.PollInterval = 50*time.Millisecond, 5*time.Millisecond
		_, err := UploadAWS(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v", err)
		}
		if f.amis(t) != nil || f.ec2.CallCount("RegisterImage") != 0 {
			t.Error("registered after a timed-out import")
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		f := newAWSFixture(t, fakeVMDK())
		o := f.opts()
		o.Bucket = "s3://no-such-bucket/x"
		if _, err := UploadAWS(ctx, o); err == nil || !strings.Contains(err.Error(), "uploading") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no aws image", func(t *testing.T) {
		f := newAWSFixture(t, fakeVMDK())
		f.dir.UpdateMeta(ctx, testBuild, "x86_64", func(m *build.Meta) error { delete(m.Images, "aws"); return nil })
		if _, err := UploadAWS(ctx, f.opts()); err == nil || !strings.Contains(err.Error(), "buildextend-aws") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("replicate failure keeps the primary region", func(t *testing.T) {
		f := newAWSFixture(t, fakeVMDK())
		f.ec2.FailCopy = true
		o := f.opts()
		o.Replicate = []string{"us-west-2"}
		made, err := UploadAWS(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "replicating") || !strings.Contains(err.Error(), "failed") {
			t.Fatalf("err = %v", err)
		}
		if len(made) != 1 || len(f.amis(t)) != 1 || f.amis(t)[0].Name != "us-east-1" {
			t.Errorf("made %+v, amis %+v", made, f.amis(t))
		}
	})
	for _, tc := range []struct {
		name string
		edit func(*AWSOptions)
		want string
	}{
		{"bad region", func(o *AWSOptions) { o.Region = "mars" }, "--region"},
		{"bad bucket", func(o *AWSOptions) { o.Bucket = "https://images/ami" }, "--bucket"},
		{"bad grant", func(o *AWSOptions) { o.GrantUsers = []string{"alice"} }, "--grant-user"},
		{"replicate twice", func(o *AWSOptions) { o.Replicate = []string{"us-east-1"} }, "given twice"},
		{"bad name", func(o *AWSOptions) { o.Name = "x" }, "--name"},
		{"bad boot mode", func(o *AWSOptions) { o.AWS.BootMode = "bios" }, "boot-mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := AWSOptions{Region: "us-east-1", Bucket: "s3://b/p"}
			tc.edit(&o)
			if _, err := UploadAWS(ctx, o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseS3URLAndMergeAMI(t *testing.T) {
	// --bucket takes an S3 location the way every command does
	// (remote.ParseS3Location): with or without s3://.
	for _, ok := range []string{"s3://b", "s3://b/p/q/", "b/p", "my.bucket"} {
		o := AWSOptions{Region: "us-east-1", Bucket: ok}
		if err := o.Validate(); err != nil {
			t.Errorf("--bucket %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "s3:///p", "https://b/p"} {
		o := AWSOptions{Region: "us-east-1", Bucket: bad}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--bucket") {
			t.Errorf("--bucket %q: %v, want an error naming --bucket", bad, err)
		}
	}
	l := MergeAMI(nil, build.AMI{Name: "a", HVM: "ami-1"})
	l = MergeAMI(l, build.AMI{Name: "b", HVM: "ami-2"})
	l2 := MergeAMI(l, build.AMI{Name: "a", HVM: "ami-3"})
	if len(l2) != 2 || l2[0].HVM != "ami-3" || l[0].HVM != "ami-1" {
		t.Errorf("MergeAMI: %+v (input %+v)", l2, l)
	}
}
