# partfs developer commands.
#
#   make run     build partfs, start a local MinIO, mount a bucket at ./mnt
#   make stop    unmount ./mnt and stop the local MinIO
#   make ls      list the objects in the local bucket (make uploads: uploads in progress)
#   make test    make check, then unit and integration tests, race detector
#                on (first installs rsync and sqlite3 when missing, as root)
#   make check   fails listing the files gofmt would change, then runs go vet
#   make bench   write and read throughput through the mount vs direct S3,
#                and cp -r / rsync -a of small files with a latency added to
#                every S3 request (make bench LATENCY=50ms; default 20ms;
#                WAN_FILES=300 copies only the first 300 files of each tree)
#                (make bench PROFILE=1 also writes partfs.cpu.prof)
#   make install copy partfs to $(PREFIX)/bin and link /sbin/mount.fuse.partfs
#                to it, so that mount -t fuse.partfs and fstab lines work
#   make posix PJDFSTEST=path/to/pjdfstest(.tar.gz)
#                build pjdfstest, run its POSIX groups against a fresh mount
#                on a MinIO of its own (as root), print passed/planned per group
#   make fio     the fio jobs of bench/fio/ (sequential and random reads, a
#                sequential write, time to first byte and creation of small
#                files), each on a fresh mount on a MinIO of its own; prints
#                one table (first installs fio when missing, as root)
#
# MinIO is installed into .bin/ at a pinned version when missing. Its data,
# log and pid file live in .run/. .bin/, .run/ and mnt/ are git-ignored.

GO       ?= go
GOFMT    ?= gofmt
BIN      := $(CURDIR)/.bin
RUNDIR   := $(CURDIR)/.run
MNT      := $(CURDIR)/mnt
PARTFS   := $(BIN)/partfs
S3UTIL   := $(BIN)/s3util
MINIO    := $(BIN)/minio
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c

# What `partfs --version` reports: the nearest tag (with the commits since
# and -dirty for a modified tree) and the commit. Override on the command
# line, e.g. make build VERSION=v1.2.0.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# The local server of `make run`. Override on the command line, e.g.
# make run MINIO_PORT=9100.
MINIO_HOST ?= 127.0.0.1
MINIO_PORT ?= 9000
MINIO_CONSOLE_PORT ?= 9001
ENDPOINT   := http://$(MINIO_HOST):$(MINIO_PORT)
BUCKET     ?= partfs
DEV_USER   := partfs-dev
DEV_SECRET := partfs-dev-secret
DEV_ENV    := AWS_ACCESS_KEY_ID=$(DEV_USER) AWS_SECRET_ACCESS_KEY=$(DEV_SECRET) AWS_REGION=us-east-1

# The pid file of the MinIO started by `make run`.
MINIO_PID := $(RUNDIR)/minio.pid

PROFILE   ?=
LATENCY   ?=
WAN_FILES ?=
BENCH_ENV := $(if $(PROFILE),PARTFS_BENCH_CPUPROFILE=$(CURDIR)/partfs.cpu.prof) \
	$(if $(LATENCY),PARTFS_BENCH_LATENCY=$(LATENCY)) \
	$(if $(WAN_FILES),PARTFS_BENCH_WAN_FILES=$(WAN_FILES))

.PHONY: all build install run stop ls uploads test check test-deps bench posix fio minio FORCE

all: build

build: $(PARTFS)

# go build is incremental; always asking it keeps the binary current.
$(PARTFS): FORCE
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/partfs

$(S3UTIL): FORCE
	@mkdir -p $(BIN)
	$(GO) build -o $@ ./internal/cmd/s3util

minio: $(MINIO)

$(MINIO):
	@mkdir -p $(BIN)
	@echo "installing MinIO $(MINIO_VERSION) into $(BIN) (a one-time build of a few minutes)"
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

run: $(PARTFS) $(S3UTIL) $(MINIO)
	@mkdir -p $(RUNDIR)/data $(MNT)
	@if [ -f $(MINIO_PID) ] && kill -0 $$(cat $(MINIO_PID)) 2>/dev/null; then \
		echo "MinIO already running (pid $$(cat $(MINIO_PID)))"; \
	else \
		echo "starting MinIO on $(ENDPOINT), data in $(RUNDIR)/data, log in $(RUNDIR)/minio.log"; \
		MINIO_ROOT_USER=$(DEV_USER) MINIO_ROOT_PASSWORD=$(DEV_SECRET) MINIO_BROWSER=off MINIO_UPDATE=off \
			nohup $(MINIO) server --quiet --address $(MINIO_HOST):$(MINIO_PORT) \
			--console-address $(MINIO_HOST):$(MINIO_CONSOLE_PORT) $(RUNDIR)/data \
			>$(RUNDIR)/minio.log 2>&1 </dev/null & echo $$! >$(MINIO_PID); \
	fi
	@$(DEV_ENV) $(S3UTIL) -endpoint $(ENDPOINT) wait || { cat $(RUNDIR)/minio.log; exit 1; }
	@$(DEV_ENV) $(S3UTIL) -endpoint $(ENDPOINT) mb $(BUCKET)
	@if mountpoint -q $(MNT); then \
		echo "$(MNT) is already mounted"; \
	else \
		$(DEV_ENV) $(PARTFS) --endpoint $(ENDPOINT) $(BUCKET) $(MNT); \
	fi
	@echo
	@echo "Bucket '$(BUCKET)' on $(ENDPOINT) is mounted at ./mnt. Try:"
	@echo "  cp some-big-file mnt/                          # streams to S3 as numbered parts while cp runs"
	@echo "  dd if=/dev/urandom of=mnt/random.bin bs=1M count=256"
	@echo "  ls -l mnt/ && cat mnt/random.bin | md5sum"
	@echo "  rsync -a --inplace some-dir/ mnt/some-dir/"
	@echo "  make ls                                        # the objects, as S3 lists them"
	@echo "  make uploads                                   # multipart uploads in progress"
	@echo "  make stop                                      # unmount and stop MinIO"

stop:
	@if mountpoint -q $(MNT); then \
		echo "unmounting $(MNT)"; \
		fusermount3 -u $(MNT) 2>/dev/null || umount $(MNT) || { echo "$(MNT) is busy: close what uses it and run make stop again"; exit 1; }; \
	fi
	@if [ -f $(MINIO_PID) ]; then \
		pid=$$(cat $(MINIO_PID)); \
		if kill -0 $$pid 2>/dev/null; then \
			echo "stopping MinIO (pid $$pid)"; kill $$pid; \
			for i in $$(seq 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
		fi; \
		rm -f $(MINIO_PID); \
	fi

# What the local MinIO of `make run` holds.
ls: $(S3UTIL)
	@$(DEV_ENV) $(S3UTIL) -endpoint $(ENDPOINT) ls $(BUCKET)

uploads: $(S3UTIL)
	@$(DEV_ENV) $(S3UTIL) -endpoint $(ENDPOINT) uploads $(BUCKET)

# The integration tests find MinIO in .bin/ and build partfs themselves.
# The import layers are checked by the test of internal/layering.
test: check test-deps $(MINIO)
	$(GO) test -race -timeout 20m ./...

check:
	@files=$$(find . -name '*.go' -not -path './.*' -not -path './mnt/*' | xargs $(GOFMT) -l); \
	if [ -n "$$files" ]; then echo "gofmt -w these files:" >&2; echo "$$files" >&2; exit 1; fi
	$(GO) vet ./...

# Tools the integration tests run against the mount, with their Debian
# packages. As root they are installed when missing; otherwise make stops
# and names them, as the tests would fail without them.
TEST_TOOLS := rsync:rsync sqlite3:sqlite3
test-deps:
	@missing=""; \
	for t in $(TEST_TOOLS); do \
		command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing the integration tests' tools:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "the integration tests need:$$missing; install them (apt-get install$$missing) or run make test as root" >&2; \
			exit 1; \
		fi; \
	fi

# The benchmark builds partfs without the race detector and runs once.
# BenchmarkWAN sends every request through a proxy that waits LATENCY first,
# so its durable rsync of the whole tree is the longest part of the run;
# WAN_FILES shortens it.
bench: $(MINIO)
	$(BENCH_ENV) $(GO) test -run '^$$' -bench '^Benchmark(Write|Read|WAN)$$' -benchtime 1x -timeout 90m ./integration/
	@$(if $(PROFILE),echo "CPU profile of partfs: partfs.cpu.prof (go tool pprof -top partfs.cpu.prof)")

# pjdfstest, the POSIX system call suite, against a fresh mount: a
# developer check, not part of make test. It builds the suite from
# PJDFSTEST (a source tree or its .tar.gz) in .run/posix/, starts a MinIO of
# its own on POSIX_PORT (and POSIX_PORT+1) with its data there, mounts with
# --allow-other, runs the groups and prints passed/planned for each, then
# unmounts and stops that MinIO. Needs root, autoconf, automake, cc, prove.
PJDFSTEST  ?=
POSIX_PORT ?= 9010
posix: $(PARTFS) $(S3UTIL) $(MINIO)
	@if [ -z "$(PJDFSTEST)" ]; then echo "usage: make posix PJDFSTEST=path/to/pjdfstest or pjdfstest.tar.gz" >&2; exit 1; fi
	@scripts/posix.sh "$(abspath $(PJDFSTEST))" $(RUNDIR)/posix $(PARTFS) $(S3UTIL) $(MINIO) $(MINIO_HOST) $(POSIX_PORT)

# fio, the I/O benchmark, against fresh mounts: the job files of bench/fio/
# (which also run by hand against any mount, AWS S3 included; see README)
# on a MinIO of its own on FIO_PORT (and FIO_PORT+1) with its data in
# .run/fio/. The sizes are fio's: make fio FIO_SIZE=4G FIO_NRFILES=2000.
FIO_PORT       ?= 9020
FIO_SIZE       ?= 1G
FIO_RUNTIME    ?= 30s
FIO_NRFILES    ?= 500
FIO_SMALL_SIZE ?= 4k
FIOTABLE       := $(BIN)/fiotable

$(FIOTABLE): FORCE
	@mkdir -p $(BIN)
	$(GO) build -o $@ ./internal/cmd/fiotable

fio: $(PARTFS) $(S3UTIL) $(FIOTABLE) $(MINIO)
	@if ! command -v fio >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing fio"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio; \
		else \
			echo "make fio needs fio; install it (apt-get install fio) or run make fio as root" >&2; \
			exit 1; \
		fi; \
	fi
	@SIZE=$(FIO_SIZE) RUNTIME=$(FIO_RUNTIME) NRFILES=$(FIO_NRFILES) SMALL_SIZE=$(FIO_SMALL_SIZE) \
		scripts/fio.sh $(RUNDIR)/fio $(PARTFS) $(S3UTIL) $(FIOTABLE) $(MINIO) $(MINIO_HOST) $(FIO_PORT)

# mount(8) looks for fuse.TYPE helpers in /sbin only.
PREFIX ?= /usr/local
install: $(PARTFS)
	install -D -m 755 $(PARTFS) $(DESTDIR)$(PREFIX)/bin/partfs
	ln -sf $(PREFIX)/bin/partfs $(DESTDIR)/sbin/mount.fuse.partfs

FORCE:
