package extend

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// buildextend-aws --upload sends only the aws image meta.json describes:
// a file that differs, or a path that leads elsewhere, never reaches S3.
func TestUploadAWSVerifiesArtifact(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, f *awsFixture, art build.Artifact)
		want string
	}{
		{"changed after the build", func(t *testing.T, f *awsFixture, art build.Artifact) {
			p := filepath.Join(f.dir.BuildDir(testBuild, "x86_64"), art.Path)
			data, _ := os.ReadFile(p)
			data[len(data)-1] ^= 1
			os.WriteFile(p, data, 0o644)
		}, "but meta.json sha256 is"},
		{"truncated", func(t *testing.T, f *awsFixture, art build.Artifact) {
			os.Truncate(filepath.Join(f.dir.BuildDir(testBuild, "x86_64"), art.Path), 512)
		}, "is 512 bytes but meta.json size is"},
		{"symlink to a file outside", func(t *testing.T, f *awsFixture, art build.Artifact) {
			p := filepath.Join(f.dir.BuildDir(testBuild, "x86_64"), art.Path)
			outside := filepath.Join(t.TempDir(), "outside.vmdk")
			os.Rename(p, outside)
			os.Symlink(outside, p)
		}, "is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAWSFixture(t, fakeVMDK())
			m, err := f.dir.ReadMeta(testBuild, "x86_64")
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(t, f, m.Images["aws"])
			_, err = UploadAWS(ctx, f.opts())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "artifact aws") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if obj, err := f.s3.GetObject(testBucket, "ami/"+m.Images["aws"].Path, nil); err == nil {
				obj.Contents.Close()
				t.Error("the image was uploaded to S3")
			}
			if f.ec2.CallCount("ImportSnapshot") != 0 {
				t.Error("ImportSnapshot called")
			}
		})
	}
}
