package stress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one cosa invocation, started in its own process group so that a
// kill reaches everything it runs (mmdebstrap, ostree, qemu-img, tar, ...).
type proc struct {
	args    []string
	cmd     *exec.Cmd
	log     string // combined stdout+stderr
	mark    string // COSA_STRESS_RUN value, inherited by every child
	start   time.Time
	done    chan struct{}
	err     error
	elapsed time.Duration
}

// result is how a proc ended.
type result struct {
	Code    int // -1: killed by a signal
	Elapsed time.Duration
	Log     string
}

func (r result) tail(n int) string {
	data, _ := os.ReadFile(r.Log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// start runs cosa with args in the workdir, output to a numbered log file.
func (s *stress) start(args ...string) (*proc, error) {
	s.runs++
	sub := args[0]
	for i := 0; i < len(args); i++ {
		if args[i] == "--lock-timeout" {
			i++
		} else if !strings.HasPrefix(args[i], "-") {
			sub = args[i]
			break
		}
	}
	name := fmt.Sprintf("%03d-%s.log", s.runs, strings.ReplaceAll(sub, "/", "_"))
	logPath := filepath.Join(s.logDir, name)
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ cosa %s\n", strings.Join(args, " "))
	p := &proc{args: args, log: logPath, mark: fmt.Sprintf("%d-%d", os.Getpid(), s.runs), done: make(chan struct{})}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.workdir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Env = append(cmd.Env, "COSA_STRESS_RUN="+p.mark)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		p.elapsed = time.Since(p.start)
		close(p.done)
	}()
	return p, nil
}

func (p *proc) result() result {
	<-p.done
	r := result{Elapsed: p.elapsed, Log: p.log}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
	case errors.As(p.err, &ee):
		r.Code = ee.ExitCode() // -1 when signalled
	default:
		r.Code = 125
	}
	return r
}

// run runs cosa to completion (bounded by limit, after which the group is
// killed and the run counts as failed).
func (s *stress) run(limit time.Duration, args ...string) result {
	p, err := s.start(args...)
	if err != nil {
		return result{Code: 125, Log: err.Error()}
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		p.killGroup()
		s.logf("cosa %s: still running after %s; killed", strings.Join(args, " "), limit)
	}
	return p.result()
}

// killAfter sends SIGKILL to p's whole process group after delay, unless p
// has exited by then. It reports whether the kill happened, and any
// process of this run that outlived its group.
func (p *proc) killAfter(delay time.Duration) (killed bool, survivors []string) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-p.done:
		return false, nil
	case <-t.C:
	}
	survivors = p.killGroup()
	return true, survivors
}

// killGroup kills the process group, reaps the leader and waits until no
// member of the group is left; it returns descriptions of processes that
// carry this run's mark but left the group (they are killed too, by PID).
func (p *proc) killGroup() []string {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	deadline := time.Now().Add(2 * time.Minute)
	for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
		syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond) // polling the kernel for the group to empty
	}
	var out []string
	for _, pid := range marked(p.mark) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		out = append(out, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return out
}

// marked lists live processes whose environment has COSA_STRESS_RUN=mark.
func marked(mark string) []int {
	ents, _ := os.ReadDir("/proc")
	want := []byte("COSA_STRESS_RUN=" + mark + "\x00")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.Contains(append(env, 0), want) {
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && isZombie(st) {
				continue
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// Throwaway credentials for the loopback gateway only.
const (
	s3Access = "cosastressaccess"
	s3Secret = "cosastress-not-a-real-secret"
)

// gateway is versitygw (posix backend) on a loopback port.
type gateway struct {
	cmd     *exec.Cmd
	dataDir string
	url     string
	exited  chan struct{}
	out     bytes.Buffer
}

func findVersitygw() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, "go", "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw is not installed (run .ci/install-versitygw or make test-deps)")
	}
	return p, nil
}

func startGateway(dir string) (*gateway, error) {
	bin, err := findVersitygw()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	g := &gateway{dataDir: filepath.Join(dir, "data"), url: "http://" + addr, exited: make(chan struct{})}
	if err := os.MkdirAll(g.dataDir, 0o755); err != nil {
		return nil, err
	}
	g.cmd = exec.Command(bin, "--port", addr, "posix", g.dataDir)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s3Access, "ROOT_SECRET_ACCESS_KEY="+s3Secret)
	g.cmd.Stdout, g.cmd.Stderr = &g.out, &g.out
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { g.cmd.Wait(); close(g.exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return g, nil
		}
		select {
		case <-g.exited:
			return nil, fmt.Errorf("versitygw exited: %s", g.out.String())
		case <-ctx.Done():
			g.stop()
			return nil, fmt.Errorf("versitygw did not listen on %s: %v", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *gateway) stop() {
	select {
	case <-g.exited:
	default:
		g.cmd.Process.Kill()
		<-g.exited
	}
}

// s3Env is the environment that points cosa's AWS SDK at the throwaway
// credentials and away from any real AWS configuration.
func s3Env(dir string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s3Access,
		"AWS_SECRET_ACCESS_KEY=" + s3Secret,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}
