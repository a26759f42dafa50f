package build

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMetaGet(t *testing.T) {
	m := realisticMeta("12.20261122.dev.1")
	m.Extra = map[string]json.RawMessage{"oscontainer": json.RawMessage(`{"image":"quay.io/a/b"}`)}
	for _, tc := range []struct {
		key  string
		want any
	}{
		{"buildid", "12.20261122.dev.1"},
		{"images.ostree.sha256", hex64("ostree")},
		{"images.qemu.size", json.Number("734003200")},
		{"amis.0.hvm", "ami-0123456789abcdef0"},
		{"coreos-assembler.basearch", "x86_64"}, // key with a dot in it
		{"coreos-assembler.config-dirty", "false"},
		{"pkgdiff.0.2.new.version", "6.11.5-300.fc41"},
		{"oscontainer.image", "quay.io/a/b"},
		{"s3", map[string]any{"bucket": "fcos-builds", "key": "prod/streams/testing-devel/builds/12.20261122.dev.1", "public-url": "https://builds.example.org/12.20261122.dev.1"}},
	} {
		got, err := m.Get(tc.key)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Get(%q) = %#v, %v; want %#v", tc.key, got, err, tc.want)
		}
	}
	for _, key := range []string{"nope", "images.nope", "amis.1", "amis.x", "buildid.x", "images..ostree", ""} {
		if _, err := m.Get(key); err == nil {
			t.Errorf("Get(%q) succeeded", key)
		} else if !strings.Contains(key, "..") && key != "" && !errors.Is(err, ErrNoSuchKey) {
			t.Errorf("Get(%q) error %v does not wrap ErrNoSuchKey", key, err)
		}
	}
}

func TestMetaSet(t *testing.T) {
	m := realisticMeta("12.20261122.dev.1")
	sets := []struct{ key, value string }{
		{"images.ostree.size", "42"},              // JSON number
		{"summary", "hello world"},                // not JSON: string
		{"coreos-assembler.config-dirty", "true"}, // JSON bool rejected, string accepted
		{"ostree-version", "41"},                  // likewise for a number
		{"amis.0.hvm", "ami-1"},                   // list index
		{"images.metal", `{"path":"m.raw","sha256":"` + hex64("metal") + `","size":1}`},
		{"fedora-coreos.parent-version", "12.20261121.dev.0"}, // absent dotted key created whole
		{"s3.bucket", `"quoted"`},
		{"oscontainer.image", "quay.io/x"}, // new object in an unmodelled key
	}
	for _, s := range sets {
		if err := m.Set(s.key, s.value); err != nil {
			t.Fatalf("Set(%q, %q): %v", s.key, s.value, err)
		}
	}
	if m.Images["ostree"].Size != 42 || m.Summary != "hello world" || m.ConfigDirty != "true" ||
		m.OSTreeVersion != "41" || m.AMIs[0].HVM != "ami-1" || m.Images["metal"].Path != "m.raw" ||
		m.S3.Bucket != "quoted" {
		t.Errorf("typed fields not updated: %+v", m)
	}
	if string(m.Extra["fedora-coreos.parent-version"]) != `"12.20261121.dev.0"` {
		t.Errorf("Extra = %s", m.Extra)
	}
	if v, _ := m.Get("oscontainer.image"); v != "quay.io/x" {
		t.Errorf("oscontainer.image = %v", v)
	}
	data, _ := m.Dump()
	if err := ValidateMeta(data); err != nil {
		t.Errorf("after Set: %v", err)
	}
}

func TestMetaSetRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ key, value, wantErr string }{
		{"images.ostree.size", `"big"`, `"/images/ostree/size"`},
		{"images.ostree.size", "-1", `"/images/ostree/size"`},
		{"ostree-n-cache-hits", "many", `"/ostree-n-cache-hits"`},
		{"ostree-commit", "abc", `"/ostree-commit"`},
		{"images.ostree.colour", "red", "additional properties"},
		{"no-such-top-level-key", "1", "additional properties"},
		{"buildid.x", "1", "not an object"},
		{"amis.5.hvm", "x", "out of range"},
		{"name", `""`, `"/name"`},
	} {
		m := realisticMeta("12.20261122.dev.1")
		before, _ := m.Dump()
		err := m.Set(tc.key, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Set(%q, %q) = %v, want error containing %s", tc.key, tc.value, err, tc.wantErr)
		}
		if after, _ := m.Dump(); string(after) != string(before) {
			t.Errorf("Set(%q, %q) changed m despite failing", tc.key, tc.value)
		}
	}
}
