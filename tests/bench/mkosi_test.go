package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/config"
)

func defaultConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "src", "config"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// iniValue is what mkosi 14 reads for key: the ini value, split the way
// its list options split it.
func iniValue(t *testing.T, text, key, sep string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^`+key+`=(.*)$`).FindAllStringSubmatch(text, -1)
	if len(m) != 1 {
		t.Fatalf("%s appears %d times in:\n%s", key, len(m), text)
	}
	var out []string
	for _, v := range strings.Split(m[0][1], sep) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func TestMkosiConfigFromDefaultConfig(t *testing.T) {
	cfg := defaultConfig(t)
	trees := []string{"/b/extra/10-network", "/b/extra/20-grub-bls"}
	spec, leftOut := mkosiSpecFrom(cfg, "x86_64", trees)
	spec.Output, spec.Cache, spec.Postinst = "/b/out/image.qcow2", "/b/cache", "/b/mkosi.postinst"
	text, err := spec.config()
	if err != nil {
		t.Fatal(err)
	}
	// Every package of the config that is not excluded, and nothing else.
	var want []string
	for _, p := range cfg.Manifest.PackagesFor("x86_64") {
		if !contains(cfg.Manifest.ExcludePackages, p) {
			want = append(want, p)
		}
	}
	if got := iniValue(t, text, "Packages", ","); !reflect.DeepEqual(got, want) {
		t.Errorf("Packages = %v, want %v", got, want)
	}
	// cosa's kernel arguments replace mkosi's defaults.
	kargs := append([]string{"!*"}, cfg.Manifest.KernelArgs...)
	kargs = append(kargs, cfg.Image.ForPlatform("qemu").ExtraKargs...)
	if got := iniValue(t, text, "KernelCommandLine", " "); !reflect.DeepEqual(got, kargs) {
		t.Errorf("KernelCommandLine = %v, want %v", got, kargs)
	}
	if got := iniValue(t, text, "ExtraTrees", ","); !reflect.DeepEqual(got, trees) {
		t.Errorf("ExtraTrees = %v, want %v", got, trees)
	}
	for key, val := range map[string]string{"Bootable": "yes", "Format": "gpt_ext4", "QCow2": "yes", "NspawnKeepUnit": "yes",
		"Incremental": "no", "Release": cfg.Manifest.Distro.Suite, "Hostname": cfg.Manifest.Hostname,
		"Output": "/b/out/image.qcow2", "Cache": "/b/cache", "PostInstallationScript": "/b/mkosi.postinst"} {
		if got := iniValue(t, text, key, "\x00"); len(got) != 1 || got[0] != val {
			t.Errorf("%s = %v, want %q", key, got, val)
		}
	}
	for _, f := range iniValue(t, text, "RemoveFiles", ",") {
		if !strings.HasPrefix(f, "/") {
			t.Errorf("RemoveFiles entry %q is not absolute (mkosi matches absolute globs)", f)
		}
	}
	if len(cfg.Manifest.ExcludePackages) > 0 && !strings.Contains(strings.Join(leftOut, "\n"), "exclude-packages") {
		t.Errorf("left out does not mention exclude-packages: %v", leftOut)
	}
	spec.Incremental = true
	text, _ = spec.config()
	if got := iniValue(t, text, "Incremental", "\x00"); got[0] != "yes" {
		t.Errorf("Incremental = %v with spec.Incremental", got)
	}
}

func TestMkosiConfigRefusesWhatMkosiWouldSplit(t *testing.T) {
	base := mkosiSpec{Suite: "bookworm", Output: "/o/image.qcow2", Packages: []string{"systemd"}}
	for name, mod := range map[string]func(*mkosiSpec){
		"comma in a tree":       func(s *mkosiSpec) { s.ExtraTrees = []string{"/a,b"} },
		"space in a karg":       func(s *mkosiSpec) { s.KernelArgs = []string{"a b"} },
		"comment in a karg":     func(s *mkosiSpec) { s.KernelArgs = []string{"x=#1"} },
		"negated package":       func(s *mkosiSpec) { s.Packages = []string{"!systemd"} },
		"newline in hostname":   func(s *mkosiSpec) { s.Hostname = "a\nb" },
		"no output":             func(s *mkosiSpec) { s.Output = "" },
		"empty package name":    func(s *mkosiSpec) { s.Packages = []string{""} },
		"quote in remove-files": func(s *mkosiSpec) { s.RemoveFiles = []string{`/usr/"x"`} },
	} {
		s := base
		mod(&s)
		if text, err := s.config(); err == nil {
			t.Errorf("%s: accepted:\n%s", name, text)
		}
	}
	if _, err := base.config(); err != nil {
		t.Errorf("the base spec: %v", err)
	}
}

// fakeBin writes executable shell scripts into a new directory.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMkosiPostinst(t *testing.T) {
	scripts := map[string][]byte{
		"postprocess/10-shebang.sh": []byte("#!/bin/sh\necho \"shebang $0\" >>\"$OUT\"\n"),
		"postprocess/20-plain.sh":   []byte("echo 'plain $HOME' >>\"$OUT\""), // no newline at the end, no expansion
	}
	units := config.Units{Enable: []string{"ssh.service", "a.path"}, Mask: []string{"b.timer"}}
	text, err := mkosiPostinst(units, scripts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	post := filepath.Join(dir, "postinst")
	if err := os.WriteFile(post, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	bin := fakeBin(t, map[string]string{"systemctl": `echo "systemctl $*" >>"$OUT"` + "\n"})
	cmd := exec.Command(post)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "OUT="+out, "TMPDIR="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postinst: %v\n%s\n%s", err, b, text)
	}
	got, _ := os.ReadFile(out)
	want := "systemctl enable ssh.service a.path\nsystemctl mask b.timer\nshebang " + filepath.Join(dir, "cosa-postprocess-0") + "\nplain $HOME\n"
	if string(got) != want {
		t.Errorf("postinst did:\n%s\nwant:\n%s", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "cosa-postprocess-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	// A script without #! runs under sh -e, as cosa runs it: a failing
	// command stops it and the postinst.
	text, err = mkosiPostinst(config.Units{}, map[string][]byte{"p.sh": []byte("false\necho ran >>\"$OUT\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(post, []byte(text), 0o755)
	os.Remove(out)
	cmd = exec.Command(post)
	cmd.Env = append(os.Environ(), "OUT="+out, "TMPDIR="+dir)
	if err := cmd.Run(); err == nil {
		t.Error("postinst succeeded though its postprocess script failed")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the postprocess script went on after a failed command")
	}

	if _, err := mkosiPostinst(config.Units{}, map[string][]byte{"x.sh": []byte("a\nCOSA_POSTPROCESS_0_EOF\nb\n")}); err == nil {
		t.Error("a script holding the here-document's end line was accepted")
	}
	if _, err := mkosiPostinst(config.Units{Enable: []string{"a.service;reboot"}}, nil); err == nil {
		t.Error("a unit name with a shell metacharacter was accepted")
	}
}

// The mount/umount wrappers, with fake mount, umount, blkid, mcopy and
// mkfs.fat that log what they are asked to do.
func TestMkosiESPWrappers(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	bin := fakeBin(t, map[string]string{
		"mount":    `echo "mount $*" >>"$LOG"` + "\n",
		"umount":   `echo "umount $*" >>"$LOG"` + "\n",
		"blkid":    `case $5 in *p1) echo vfat ;; *p2) echo ext4 ;; *) exit 2 ;; esac` + "\n",
		"mkfs.fat": `echo "mkfs.fat $*" >>"$LOG"` + "\n",
		// Copying out of the partition: it holds EFI/old.efi.
		"mcopy": `if [ "$7" = '::*' ]; then mkdir -p "$8/EFI" && echo old >"$8/EFI/old.efi"; else echo "mcopy $*" >>"$LOG"; fi` + "\n",
	})
	wrappers := t.TempDir()
	for name, text := range map[string]string{"mount": mkosiMountWrapper, "umount": mkosiUmountWrapper, "systemd-nspawn": mkosiNspawnWrapper} {
		if err := exec.Command("sh", "-n", "-c", text).Run(); err != nil {
			t.Fatalf("%s wrapper: syntax: %v", name, err)
		}
		os.WriteFile(filepath.Join(wrappers, name), []byte(text), 0o755)
	}
	stage := filepath.Join(dir, "stage")
	os.Mkdir(stage, 0o755)
	root := filepath.Join(dir, "root")
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "LOG="+log, "MKOSI_ESP_STAGE="+stage, "MKOSI_REAL_BIN="+bin)
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(wrappers, name), args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	readLog := func() string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return string(b)
	}

	// Anything but a vfat partition goes to the real mount as it is.
	run("mount", "--no-mtab", "/dev/loop9p2", root, "--options", "discard")
	run("mount", "--no-mtab", "--bind", "/x", "/y")
	run("mount", "--no-mtab", "tmpfs", root+"/run", "--types", "tmpfs")
	want := "mount --no-mtab /dev/loop9p2 " + root + " --options discard\nmount --no-mtab --bind /x /y\nmount --no-mtab tmpfs " + root + "/run --types tmpfs\n"
	if got := readLog(); got != want {
		t.Errorf("pass-through:\n%s\nwant:\n%s", got, want)
	}

	// The ESP: staged with what the partition held, bind-mounted.
	esp := filepath.Join(root, "efi")
	run("mount", "--no-mtab", "/dev/loop9p1", esp, "--options", "discard")
	staged := filepath.Join(stage, "loop9p1")
	if got, want := readLog(), "mount --bind "+staged+" "+esp+"\n"; got != want {
		t.Errorf("ESP mount:\n%s\nwant:\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(staged, "EFI", "old.efi")); err != nil {
		t.Errorf("the partition's files were not staged: %v", err)
	}
	os.WriteFile(filepath.Join(staged, "loader.conf"), []byte("x"), 0o644)

	// Unmounting something else writes nothing back.
	run("umount", "--no-mtab", "--recursive", filepath.Join(root, "run"))
	if got := readLog(); strings.Contains(got, "mkfs") || strings.Contains(got, "mcopy") {
		t.Errorf("unrelated umount wrote the ESP:\n%s", got)
	}
	// Unmounting the root recursively writes the ESP under it back.
	run("umount", "--no-mtab", "--recursive", root)
	want = "umount --no-mtab --recursive " + root + "\nmkfs.fat -F 32 -n EFI /dev/loop9p1\n" +
		"mcopy -s -p -m -Q -D o -i /dev/loop9p1 " + staged + "/EFI ::/\n" +
		"mcopy -s -p -m -Q -D o -i /dev/loop9p1 " + staged + "/loader.conf ::/\n"
	if got := readLog(); got != want {
		t.Errorf("ESP umount:\n%s\nwant:\n%s", got, want)
	}
	if left, _ := os.ReadDir(stage); len(left) > 0 {
		t.Errorf("stage not cleaned: %v", left)
	}
	// Once written back, a second umount has nothing to write.
	run("umount", "--no-mtab", "--recursive", root)
	if got := readLog(); got != "umount --no-mtab --recursive "+root+"\n" {
		t.Errorf("second umount: %q", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLoginPromptRE(t *testing.T) {
	for s, want := range map[string]bool{
		"\r\nDebian GNU/Linux 12 debian-ostree ttyS0\r\n\r\ndebian-ostree login: ": true,
		"debian-ostree login: [  340.73] rcu: stall":                               true,
		"Starting serial-getty@ttyS0.service - Serial Getty on ttyS0...":           false,
		"[  OK  ] Reached target getty.target - Login Prompts.":                    false,
		"login: ": false, // no host name: not getty's prompt
	} {
		if got := loginPromptRE.MatchString(s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{30, 21, 25}, 25}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("median reordered its input: %v", c.in)
			}
		}
	}
}
