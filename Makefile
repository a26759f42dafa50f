SHELL := /bin/bash
# cosa: build OSTree-based OS images. `make run` builds the default config,
# `make test` runs every test (unit + end-to-end). Both install what they
# need on Debian 12 (as root).

GO       ?= go
PREFIX   ?= /usr/local
BIN      := bin/cosa
# Host tools cosa runs. Keep in sync with README.md.
APT_DEPS := ostree mmdebstrap git tar ca-certificates util-linux fdisk e2fsprogs dosfstools mtools \
            grub-efi-amd64-bin grub-pc-bin grub2-common qemu-utils qemu-system-x86 ovmf \
            openssh-client xz-utils zstd gzip eatmydata gcc libc6-dev


.PHONY: all build deps test-deps bench-deps bench run test test-unit test-e2e vet fmt clean install docs stress

all: build

build:
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/cosa

deps:
	@missing=""; for p in $(APT_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The repository root is itself a cosa working directory: src/config is the
# default config, and cache/ tmp/ builds/ (git-ignored) are created here.
run: deps build
	./$(BIN) fetch
	./$(BIN) build
	./$(BIN) list

vet:
	@test -z "$$(gofmt -l cmd pkg src tests)" || { gofmt -l cmd pkg src tests; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test-unit:
	$(GO) test -short -count=1 ./...

# Fuzzing: each target runs on its own for FUZZTIME (`make fuzz
# FUZZTIME=200000x` for a longer run). The seed corpora in testdata/fuzz/
# also run as plain tests in test-unit. A crash is saved under
# testdata/fuzz/. The budget is a count of executions, not a duration: Go
# before 1.27 can fail a duration-bounded run with a bare "context deadline
# exceeded" at the deadline when a worker is slow to stop (golang/go#75804;
# seen here in CI on go1.26.8, with no crasher written). 10000 executions
# are about 10 s per target on 2 cores.
FUZZTIME    ?= 10000x
FUZZTARGETS := config:FuzzLoad build:FuzzReadIndex build:FuzzReadMeta images:FuzzParseManifest
.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZTARGETS); do \
		echo "fuzz $${t#*:} (pkg/$${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) ./pkg/$${t%%:*}/; \
	done

# End-to-end: runs the real binary through init, fetch, build, list, meta,
# tag and prune with the real tools (several full builds; ~15 min on 2 cores),
# and `cosa serve` through a compose, a boot and a restart (TestServe, ~10 min).
test-e2e: build
	$(GO) test -count=1 -timeout 95m -v ./tests/

# The S3 end-to-end tests need a real S3 server (versitygw, built with go install).
# busybox-static: the sandbox's unit tests chroot into a one-binary tree.
# uidmap: newuidmap/newgidmap for the rootless end-to-end test.
# gnupg: throwaway keys signing the local apt repos of the repos tests.
TEST_APT := busybox-static uidmap gnupg
test-deps: deps
	@missing=""; for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	bash .ci/install-versitygw

test: test-deps vet test-unit fuzz test-e2e

# Benchmark: cosa against mmdebstrap, mkosi, the compression CLIs and awscli,
# each reference measured in the same run. Writes bench/results.json and
# bench/results.md (git-ignored); about an hour on 2 cores.
# The bootable mkosi reference writes its ESP with mkfs.fat (dosfstools) and
# mcopy (mtools), and is booted under qemu-system-x86 with OVMF (also in deps).
BENCH_APT := mkosi awscli dosfstools mtools qemu-system-x86 ovmf
bench-deps: deps test-deps
	@missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

bench: bench-deps
	$(GO) run ./tests/bench

# Crash safety (not part of `make test`): SIGKILLs build, buildextend-metal,
# compress, decompress and buildupload at random points, 50 times, checking
# builds/ after each kill and that the next run needs no clean-up; plus two
# builds and four buildextend-* at once; then every fuzz target for 200000
# executions (2 to 3 min each).
# ~1 h on 2 cores. COSA_STRESS_KILLS, COSA_STRESS_SEED: see
# tests/stress/stress_test.go.
stress: deps test-deps build
	COSA_STRESS=1 $(GO) test -count=1 -timeout 120m -v ./tests/stress/
	$(MAKE) fuzz FUZZTIME=200000x

# Man pages and completion scripts are generated from the command tree by
# the binary just built (a hidden command), so they always match it.
# `make install DESTDIR=/tmp/stage PREFIX=/usr` for packaging.
DESTDIR     ?=
BINDIR      := $(PREFIX)/bin
MANDIR      := $(PREFIX)/share/man/man1
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  := $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR := $(PREFIX)/share/fish/vendor_completions.d

docs: build
	rm -rf bin/man bin/completion
	./$(BIN) gen-docs --man bin/man --completion bin/completion

install: docs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/cosa
	install -m 0644 bin/man/*.1 $(DESTDIR)$(MANDIR)/
	install -m 0644 bin/completion/cosa.bash $(DESTDIR)$(BASHCOMPDIR)/cosa
	install -m 0644 bin/completion/_cosa $(DESTDIR)$(ZSHCOMPDIR)/_cosa
	install -m 0644 bin/completion/cosa.fish $(DESTDIR)$(FISHCOMPDIR)/cosa.fish

clean:
	rm -rf bin
