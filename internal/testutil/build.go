package testutil

import (
	"context"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// PublishBuild writes m as the meta.json of build id for arch in d and then,
// under the builds/ lock as cosa does, lists the build in builds.json and,
// if latest, points latest at it. The build's other files are the caller's.
func PublishBuild(t testing.TB, d *build.Dir, id, arch string, m *build.Meta, latest bool) {
	t.Helper()
	if err := d.WriteMeta(id, arch, m); err != nil {
		t.Fatal(err)
	}
	err := d.WithLock(context.Background(), "test", func() error {
		idx, err := d.ReadIndex()
		if err != nil {
			return err
		}
		idx.Insert(id, arch)
		if err := d.WriteIndex(idx); err != nil {
			return err
		}
		if latest {
			return d.SetLatest(id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
