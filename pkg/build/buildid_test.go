package build

import (
	"strings"
	"testing"
	"time"
)

func TestValidBuildID(t *testing.T) {
	for _, tc := range []struct {
		id      string
		wantErr string // substring; "" means valid
	}{
		{"12.20261122.dev.3", ""},
		{"41.20250101.3.0", ""},
		{"my-build_1+local", ""},
		{"A", ""},
		{strings.Repeat("a", 128), ""},
		{"", "must not be empty"},
		{"../../etc", `invalid build id "../../etc": must match [A-Za-z0-9][A-Za-z0-9._+-]*`},
		{"a/b", "must match"},
		{".", "must match"},
		{"..", "must match"},
		{".hidden", "must match"},
		{"a..b", `must not contain ".."`},
		{"latest", "reserved"},
		{"has space", "must match"},
		{strings.Repeat("a", 129), "longer than 128"},
	} {
		err := ValidBuildID(tc.id)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidBuildID(%q) = %v, want nil", tc.id, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ValidBuildID(%q) = %v, want error containing %q", tc.id, err, tc.wantErr)
		}
	}
}

func TestNextBuildID(t *testing.T) {
	day := time.Date(2026, 11, 22, 23, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		now      time.Time
		existing []string
		want     string
	}{
		{"first of day", day, nil, "12.20261122.dev.0"},
		{"increments", day, []string{"12.20261122.dev.0", "12.20261122.dev.1"}, "12.20261122.dev.2"},
		{"uses max not count", day, []string{"12.20261122.dev.5"}, "12.20261122.dev.6"},
		{"different day resets", day.Add(time.Hour), []string{"12.20261122.dev.4"}, "12.20261123.dev.0"},
		{"date is UTC", time.Date(2026, 11, 23, 1, 0, 0, 0, time.FixedZone("UTC+3", 3*3600)), []string{"12.20261122.dev.0"}, "12.20261122.dev.1"},
		{"ignores other prefix and stream", day, []string{"13.20261122.dev.7", "12.20261122.prod.9", "112.20261122.dev.3", "12.20261122.dev.2x"}, "12.20261122.dev.0"},
		{"numeric beyond 9", day, []string{"12.20261122.dev.9", "12.20261122.dev.10", "12.20261122.dev.2"}, "12.20261122.dev.11"},
	} {
		if got := NextBuildID("12", "dev", tc.now, tc.existing); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := NextBuildID("12", "", day, nil); got != "12.20261122.0" {
		t.Errorf("empty stream: got %q", got)
	}
	if err := ValidBuildID(NextBuildID("12", "dev", day, nil)); err != nil {
		t.Errorf("NextBuildID produced an invalid id: %v", err)
	}
}

func TestCompareBuildIDs(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"12.20261122.dev.10", "12.20261122.dev.9", 1},
		{"12.20261122.dev.2", "12.20261122.dev.2", 0},
		{"12.20261121.dev.9", "12.20261122.dev.0", -1},
		{"9.20261122.dev.0", "12.20261122.dev.0", -1},
		{"12.20261122.dev", "12.20261122.dev.0", -1},
		{"12.20261122.dev.0", "12.20261122.prod.0", -1},
		{"007", "7", 0},
	} {
		if got := CompareBuildIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareBuildIDs(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareBuildIDs(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareBuildIDs(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}
