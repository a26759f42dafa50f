package compose

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// aptState is a private apt root under cache/apt: its own sources, lists,
// empty dpkg status and archive dir, so resolving never reads or changes the
// host's apt state and an empty status makes apt resolve the whole closure.
type aptState struct {
	Root     string // cache/apt
	Archives string // cache/debs: downloaded .debs land here
	Arch     string // Debian arch
	conf     string
	// stderr of the last run, for callers that look for one complaint in
	// all of apt's output.
	lastStderr string
}

func newAptState(root, archives, debArch string, sources []Source) (*aptState, error) {
	a := &aptState{Root: root, Archives: archives, Arch: debArch, conf: filepath.Join(root, "apt.conf")}
	for _, d := range []string{
		"etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg",
	} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(archives, "partial"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		return nil, err
	}
	var list strings.Builder
	for _, s := range sources {
		// apt uses a file: archive's .debs where they are; copy: puts
		// them in the package cache as downloads are.
		if rest, ok := strings.CutPrefix(s.URI, "file:"); ok {
			s.URI = "copy:" + rest
		}
		list.WriteString(s.String() + "\n")
	}
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	// Trust what the host's apt trusts (Debian's archive keys live in
	// trusted.gpg.d); per-source signed-by keys are honoured as well.
	conf := fmt.Sprintf(`Dir "%[1]s/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Etc::TrustedParts "%[3]s/trusted.gpg.d/";
Dir::Etc::Trusted "%[3]s/trusted.gpg";
Dir::Cache::archives "%[2]s/";
APT::Architecture "%[4]s";
APT::Architectures "%[4]s";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Retries "3";
Debug::NoLocking "true";
`, root, archives, HostAptDir, debArch)
	if err := os.WriteFile(a.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return a, nil
}

// run runs an apt tool with the private config and returns stdout.
func (a *aptState) run(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := hostcmd.Command(tool, args...)
	cmd.Env = []string{"APT_CONFIG=" + a.conf, "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8"}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output(ctx)
	a.lastStderr = errb.String()
	return out, err
}

// indexFiles lists the downloaded Packages indexes.
func (a *aptState) indexFiles() ([]string, error) {
	return filepath.Glob(filepath.Join(a.Root, "var/lib/apt/lists", "*_Packages"))
}
