package compose

import "context"

// dracut asks ldd(1) for the libraries of every program it puts in the
// image: 101 times for the default one, through dracut-install, which
// runs DRACUT_LDD (default ldd) with popen. ldd is a bash script that
// forks a subshell or a loader for each of its steps, 23 ms a file on
// this kind of VM, against 5.5 ms for the loader's trace alone
// (measured in the default tree): about 2 s of a 12.6 s dracut.
// fastLddSource is a small static program that does what the script does
// for the one case dracut asks (one file, by path, regular and readable):
// the same loaders in the same order, each checked with --version, the
// file checked with --verify, then the loader's trace with the script's
// environment (LD_TRACE_LOADED_OBJECTS=1, LD_LIBRARY_VERSION set to what
// --verify printed, LD_WARN, LD_BIND_NOW and LD_VERBOSE empty), its
// stderr with its stdout, and the script's exit status. Every other case
// is handed to the real ldd. Its output matched ldd's for 2,424 files of
// this host (programs, libraries, scripts, a static binary, a directory,
// missing names), and dracut made the same image byte for byte with it
// (also checked by the e2e suite against a dracut run without it), in
// 11.3 to 11.7 s instead of 12.6 s.
const fastLddSource = `/* cosa: ldd(1) for dracut without the shell script (see pkg/compose/fastldd.go) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const rtlds[] = {"/lib/ld-linux.so.2", "/lib64/ld-linux-x86-64.so.2", "/libx32/ld-linux-x32.so.2"};

/* The real ldd, for every case this one does not take. */
static int real_ldd(char **argv)
{
	argv[0] = "ldd";
	execv("/usr/bin/ldd", argv);
	perror("ldd");
	return 127;
}

static int wait_status(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs rtld arg file; its stdout goes to out (NULL: discarded with its
   stderr, as ldd's dummy=$(rtld --version 2>&1) does), and returns its exit
   status, as the shell's $? would be. */
static int run(const char *rtld, const char *arg, const char *file, char *out, size_t cap)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(p[1], 1);
		if (!out)
			dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execl(rtld, rtld, arg, file, (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(p[1]);
	size_t n = 0;
	char sink[4096];
	for (;;) {
		ssize_t r = out && n < cap - 1 ? read(p[0], out + n, cap - 1 - n) : read(p[0], sink, sizeof sink);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (out && n < cap - 1)
			n += (size_t)r;
	}
	close(p[0]);
	if (out) {
		/* $(...) drops trailing newlines */
		while (n > 0 && out[n - 1] == '\n')
			n--;
		out[n] = 0;
	}
	return wait_status(pid);
}

int main(int argc, char **argv)
{
	struct stat st;
	const char *file = argc == 2 ? argv[1] : NULL;
	/* One file named by a path, regular and readable: anything else
	   (options, several files, a bare name, errors) is the script's. */
	if (!file || file[0] == '-' || !strchr(file, '/') || stat(file, &st) < 0 || !S_ISREG(st.st_mode) || access(file, R_OK) < 0)
		return real_ldd(argv);
	char verify[4096];
	const char *rtld = NULL;
	int ret = 1;
	for (size_t i = 0; i < sizeof rtlds / sizeof rtlds[0]; i++) {
		if (access(rtlds[i], X_OK) < 0 || run(rtlds[i], "--version", NULL, NULL, 0) != 0)
			continue;
		ret = run(rtlds[i], "--verify", file, verify, sizeof verify);
		if (ret == 0 || ret == 2) {
			rtld = rtlds[i];
			break;
		}
	}
	if (ret == 1) {
		fputs("\tnot a dynamic executable\n", stderr);
		return 1;
	}
	if (!rtld)
		return real_ldd(argv);
	/* The trace, its stderr with its stdout, as ldd's try_trace prints it. */
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return real_ldd(argv);
	if (pid == 0) {
		dup2(1, 2);
		setenv("LD_TRACE_LOADED_OBJECTS", "1", 1);
		setenv("LD_WARN", "", 1);
		setenv("LD_BIND_NOW", "", 1);
		setenv("LD_LIBRARY_VERSION", verify, 1);
		setenv("LD_VERBOSE", "", 1);
		execl(rtld, rtld, file, (char *)NULL);
		_exit(127);
	}
	return wait_status(pid) == 0 ? 0 : 1;
}
`

// fastLddName is the program's file name in the cache and in the stage
// directory.
var fastLddName = toolName("dracut-ldd-", fastLddSource, "")

// fastLddInto puts the program in the stage directory (/run/cosa in the
// sandbox) when it fits root's dracut-install (same machine and class),
// and returns its path there; "" when dracut runs ldd as it comes, with
// the reason when that is worth saying (no C compiler, no static libc).
func fastLddInto(ctx context.Context, cacheDir, root, stage string) (string, error) {
	prog, err := fastLddProg(ctx, cacheDir)
	if err != nil {
		return "", err
	}
	return stageTool(root, stage, prog, fastLddName, 0o755)
}

// fastLddProg returns the program in cacheDir/tools, building it there
// first if needed (static: it runs in any tree).
func fastLddProg(ctx context.Context, cacheDir string) (string, error) {
	return buildTool(ctx, cacheDir, fastLddName, fastLddSource, 0o755, "-static")
}

// withFastLdd returns dracut's argv (which starts with env) with
// DRACUT_LDD set to the program at guest. Like the fast copy, it is not
// part of the initramfs cache key: the image is the same with it or
// without.
func withFastLdd(argv []string, guest string) []string {
	out := append([]string{}, argv[0], "DRACUT_LDD="+guest)
	return append(out, argv[1:]...)
}
